// Workload of test_compress_flags.py: N mallocs of random sizes (8 to 16391 bytes), freed in
// random order through a ring, so that the capture's events (random address deltas and sizes)
// are what lz4 cannot shrink by a fifth, block after block. Nothing else allocates: the one line
// of output is formatted on the stack and written without stdio's buffer.
//   random_churn N
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void* volatile g_sink;

int main(int argc, char** argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    enum { k_ring = 4096 };
    static void* ring[k_ring];
    unsigned x = 2463534242u;
    unsigned long long total = 0;
    for (long i = 0; i < n; ++i) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        unsigned slot = x & (k_ring - 1);
        free(ring[slot]);
        size_t size = 8 + (x >> 12) % 16384;
        ring[slot] = malloc(size);
        g_sink = ring[slot];
        total += size;
    }
    for (int i = 0; i < k_ring; ++i) free(ring[i]);
    char line[64];
    int len = snprintf(line, sizeof line, "allocations %ld bytes %llu\n", n, total);
    return write(1, line, (size_t)len) == len ? 0 : 1;
}
