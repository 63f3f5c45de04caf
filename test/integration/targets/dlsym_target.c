// Target of test_dlsym.py: allocates through malloc/calloc/free pointers looked up at runtime
// with dlsym (RTLD_DEFAULT and a dlopen handle of libc) and dlvsym, never through its own GOT.
// Prints "SIZE ADDRESS via" per block, then "done".
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef void* (*malloc_fn)(size_t);
typedef void* (*calloc_fn)(size_t, size_t);
typedef void (*free_fn)(void*);

static void* must(void* p, const char* what) {
    if (!p) {
        fprintf(stderr, "%s: %s\n", what, dlerror());
        exit(2);
    }
    return p;
}

int main(void) {
    void* libc = must(dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD), "dlopen libc");
    malloc_fn by_default = (malloc_fn)must(dlsym(RTLD_DEFAULT, "malloc"), "dlsym malloc");
    malloc_fn by_handle = (malloc_fn)must(dlsym(libc, "malloc"), "dlsym(libc) malloc");
    malloc_fn by_version = (malloc_fn)must(dlvsym(RTLD_DEFAULT, "malloc", "GLIBC_2.2.5"), "dlvsym");
    calloc_fn zeroed = (calloc_fn)must(dlsym(RTLD_DEFAULT, "calloc"), "dlsym calloc");
    free_fn release = (free_fn)must(dlvsym(libc, "free", "GLIBC_2.2.5"), "dlvsym free");
    // A name we do not hook resolves exactly as before.
    if (dlsym(RTLD_DEFAULT, "getpid") != (void*)&getpid) {
        fprintf(stderr, "dlsym(getpid) changed\n");
        return 3;
    }
    // RTLD_NEXT is resolved relative to the caller (here: the objects after this executable).
    malloc_fn next = (malloc_fn)must(dlsym(RTLD_NEXT, "malloc"), "dlsym RTLD_NEXT malloc");

    struct { void* p; size_t size; const char* via; } blocks[] = {
        {by_default(1111111), 1111111, "dlsym"},
        {by_handle(2222222), 2222222, "dlsym-handle"},
        {by_version(3333333), 3333333, "dlvsym"},
        {zeroed(1, 4444444), 4444444, "dlsym-calloc"},
        {next(5555555), 5555555, "rtld-next"},
    };
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; ++i) {
        if (!blocks[i].p) return 4;
        printf("%zu %p %s\n", blocks[i].size, blocks[i].p, blocks[i].via);
    }
    for (size_t i = 0; i < 3; ++i) release(blocks[i].p);
    printf("done\n");
    fflush(stdout);
    return 0;
}
