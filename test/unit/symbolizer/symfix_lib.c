// Shared library of the symbolizer fixture: records the return addresses of its callers (what a
// native unwinder records for an allocation) and has an inlined helper of its own.
#include <stdint.h>
#include <stdlib.h>

uintptr_t symfix_recorded[8];
int symfix_count;
void* volatile symfix_sink;

__attribute__((noinline)) void symfix_record(void) {
    symfix_recorded[symfix_count++ & 7] = (uintptr_t)__builtin_return_address(0);
    __asm__ volatile("" ::: "memory");
}

static inline __attribute__((always_inline)) void* lib_helper(size_t n) {
    symfix_record(); /* LIB_RECORD */
    return malloc(n);
}

__attribute__((noinline)) void* symfix_lib_alloc(size_t n) {
    void* p = lib_helper(n); /* LIB_CALL */
    symfix_sink = p;
    return p;
}
