// Native program for the --native symbolisation tests (native-inline, native-moved), built with
// -g -O2. Its distinctive allocations happen in a static inline function that the compiler
// inlines into its caller, so the stack must show an inlined frame: grab_buffer at the malloc
// line, then fill_slots at the line of the call. The driver finds those lines by the markers in
// the comments and checks (with nm) that grab_buffer really has no symbol of its own.
// Announces "EXPECT MAIN MALLOC <size> <count>" on stdout; the buffers are kept to the end (they
// are the capture's leaks, exactly count x size bytes).
// NATIVE_INLINE_VARIANT (another -D) makes a build of the same source with another build-id.
#include <stdio.h>
#include <stdlib.h>

#ifndef NATIVE_INLINE_VARIANT
#define NATIVE_INLINE_VARIANT 0
#endif

enum { k_size = 12345 + NATIVE_INLINE_VARIANT, k_count = 7 };

static void* volatile g_sink;

static inline void* grab_buffer(size_t size) {
    void* p = malloc(size); /* ALLOC_SITE */
    if (p == NULL) exit(2);
    ((volatile char*)p)[0] = 1;
    return p;
}

// External linkage and noinline: it keeps its own name (no .constprop/.isra clone) and frame.
__attribute__((noinline)) void fill_slots(void** slots, int n) {
    for (int i = 0; i < n; ++i) {
        slots[i] = grab_buffer(k_size); /* CALL_SITE */
        g_sink = slots[i];
    }
}

int main(void) {
    static void* slots[k_count];
    fill_slots(slots, k_count); /* MAIN_SITE */
    printf("EXPECT MAIN MALLOC %d %d\n", (int)k_size, (int)k_count);
    return 0;
}
