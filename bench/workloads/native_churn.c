// Native benchmark workload: N small allocations (default 10 million) with mixed lifetimes,
// freed through a ring, from one function chain a few frames deep.
//   native_churn [N] [THREADS]
// With THREADS > 1 each thread makes N allocations of its own, mixed sizes (mostly small, some
// pages, a few 64 KiB and more), the "two-thread mixed-size" workload of bench/bench_hotpath.py.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void* volatile g_sink;

__attribute__((noinline)) static void* make(size_t size) {
    void* p = malloc(size);
    g_sink = p;
    return p;
}

enum { k_ring = 4096 };

struct Job {
    long n;
    int mixed;
    unsigned seed;
    unsigned long long total;
};

__attribute__((noinline)) static unsigned long long churn(long n, int mixed, unsigned x) {
    void** ring = calloc(k_ring, sizeof *ring);
    unsigned long long total = 0;
    for (long i = 0; i < n; ++i) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        unsigned slot = x & (k_ring - 1);
        free(ring[slot]);
        size_t size = 8 + (x >> 20) % 512;
        if (mixed) {
            unsigned pick = (x >> 12) & 255;
            if (pick == 0) size = 65536 + (x >> 16) % 65536;  // 1 in 256: beyond mmap's threshold
            else if (pick < 16) size = 1024 + (x >> 18) % 8192;  // 1 in 17: a few pages
        }
        ring[slot] = make(size);
        total += size;
    }
    for (int i = 0; i < k_ring; ++i) free(ring[i]);
    free(ring);
    return total;
}

static void* run_job(void* arg) {
    struct Job* job = arg;
    job->total = churn(job->n, job->mixed, job->seed);
    return NULL;
}

int main(int argc, char** argv) {
    long n = argc > 1 ? atol(argv[1]) : 10 * 1000 * 1000;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (threads <= 1) {
        printf("allocations %ld bytes %llu\n", n, churn(n, 0, 2463534242u));
        return 0;
    }
    if (threads > 64) threads = 64;
    pthread_t tids[64];
    struct Job jobs[64];
    unsigned long long total = 0;
    for (int t = 0; t < threads; ++t) {
        jobs[t] = (struct Job){n, 1, 2463534242u + 7919u * (unsigned)t, 0};
        pthread_create(&tids[t], NULL, run_job, &jobs[t]);
    }
    for (int t = 0; t < threads; ++t) {
        pthread_join(tids[t], NULL);
        total += jobs[t].total;
    }
    printf("allocations %ld bytes %llu\n", n * threads, total);
    return 0;
}
