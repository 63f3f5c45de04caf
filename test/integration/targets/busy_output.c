// Many varied allocations, then a fixed result on stdout and a distinctive exit code: the
// disk-full test checks that a failing capture changes neither.
#include <stdio.h>
#include <stdlib.h>

static void* volatile g_sink;

int main(int argc, char** argv) {
    const long n = argc > 1 ? atol(argv[1]) : 2000000;
    void* ring[256] = {0};
    unsigned long long checksum = 0;
    unsigned x = 12345;
    for (long i = 0; i < n; ++i) {
        x = x * 1103515245u + 12345u;  // varied sizes and lifetimes defeat compression
        unsigned slot = (x >> 8) & 255;
        free(ring[slot]);
        size_t size = 16 + ((x >> 16) & 4095);
        ring[slot] = malloc(size);
        g_sink = ring[slot];
        checksum += size;
    }
    for (int i = 0; i < 256; ++i) free(ring[i]);
    printf("RESULT %ld %llu\n", n, checksum);
    return 7;
}
