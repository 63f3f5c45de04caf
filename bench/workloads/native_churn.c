// Native benchmark workload: N small allocations (default 10 million) with mixed lifetimes,
// freed through a ring, from one function chain a few frames deep.
#include <stdio.h>
#include <stdlib.h>

static void* volatile g_sink;

__attribute__((noinline)) static void* make(size_t size) {
    void* p = malloc(size);
    g_sink = p;
    return p;
}

__attribute__((noinline)) static unsigned long long churn(long n) {
    enum { k_ring = 4096 };
    static void* ring[k_ring];
    unsigned long long total = 0;
    unsigned x = 2463534242u;
    for (long i = 0; i < n; ++i) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        unsigned slot = x & (k_ring - 1);
        free(ring[slot]);
        size_t size = 8 + (x >> 20) % 512;
        ring[slot] = make(size);
        total += size;
    }
    for (int i = 0; i < k_ring; ++i) free(ring[i]);
    return total;
}

int main(int argc, char** argv) {
    long n = argc > 1 ? atol(argv[1]) : 10 * 1000 * 1000;
    printf("allocations %ld bytes %llu\n", n, churn(n));
    return 0;
}
