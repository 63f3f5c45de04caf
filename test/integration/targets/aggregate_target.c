// Deterministic allocations for comparing reports of a full and an aggregated capture of the
// same run: nested call paths, a peak that is later freed, leaks, realloc/calloc, an mmap cut
// in two by munmap, a second thread run to completion while the main one waits, and (argument
// "forever") a steady loop that only a kill ends, for the checkpoint test.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void* volatile g_sink;
static void* g_keep[64];

__attribute__((noinline)) static void* leaf_alloc(size_t n) { return malloc(n); }

__attribute__((noinline)) static void build_peak(void** out, int n, size_t size) {
    for (int i = 0; i < n; ++i) out[i] = leaf_alloc(size + (size_t)i);
}

__attribute__((noinline)) static void churn(int rounds) {
    for (int i = 0; i < rounds; ++i) {
        void* p = calloc(1, 1000 + (size_t)(i % 7));
        p = realloc(p, 3000 + (size_t)(i % 5));
        g_sink = p;
        free(p);
    }
}

__attribute__((noinline)) static void leak_some(void) {
    for (int i = 0; i < 8; ++i) g_keep[i] = leaf_alloc(4096 * (size_t)(i + 1));
}

static void* thread_main(void* arg) {
    (void)arg;
    void* blocks[16];
    build_peak(blocks, 16, 20000);
    for (int i = 0; i < 8; ++i) free(blocks[i]);
    for (int i = 8; i < 16; ++i) g_keep[16 + i] = blocks[i];  // leaked
    return NULL;
}

__attribute__((noinline)) static void map_and_cut(void) {
    long page = sysconf(_SC_PAGESIZE);
    char* m = mmap(NULL, (size_t)page * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (m == MAP_FAILED) return;
    m[0] = 1;
    munmap(m + page * 2, (size_t)page * 2);  // split: pages [0, 2) and [4, 8) stay mapped
    munmap(m + page * 6, (size_t)page * 2);  // the right piece shrinks to [4, 6); both leak
}

int main(int argc, char** argv) {
    int forever = argc > 1 && strcmp(argv[1], "forever") == 0;
    void* peak[200];
    churn(500);
    build_peak(peak, 200, 50000);  // ~10 MB: the high-water mark
    map_and_cut();
    for (int i = 0; i < 200; ++i) free(peak[i]);
    churn(300);
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, NULL) == 0) pthread_join(t, NULL);
    leak_some();
    if (forever) {
        // One allocation kept every 10 ms; "TICK n" after each, so the driver knows the count.
        const struct timespec tick = {0, 10 * 1000 * 1000};
        for (long i = 0;; ++i) {
            void* p = leaf_alloc(1000);
            g_sink = p;
            if (i % 2 == 0) free(p);
            printf("TICK %ld\n", i);
            fflush(stdout);
            nanosleep(&tick, NULL);
        }
    }
    printf("done\n");
    return 0;
}
