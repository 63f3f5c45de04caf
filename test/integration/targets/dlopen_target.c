// dlopen()s the library given as argv[1] by path, after start, and allocates through it.
// Announces "EXPECT MAIN MALLOC <size> <count>".
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s LIBRARY\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    void* (*alloc)(size_t) = (void* (*)(size_t))dlsym(lib, "mr_dl_alloc");
    if (!alloc) {
        fprintf(stderr, "dlsym: %s\n", dlerror());
        return 2;
    }
    const size_t size = 1234573;
    const int reps = 2;
    for (int i = 0; i < reps; ++i) free(alloc(size));
    printf("EXPECT MAIN MALLOC %zu %d\n", size, reps);
    return 0;
}
