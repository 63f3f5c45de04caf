// Loaded with dlopen by dlopen_target after tracking started; allocates a distinctive size.
#include <stdlib.h>

void* mr_dl_alloc(size_t size) {
    void* p = malloc(size);
    if (p) ((volatile char*)p)[0] = 1;
    return p;
}
