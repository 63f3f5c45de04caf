// Four threads hammer malloc/free (mixed sizes, contents checked) so that, with
// MALLOC_ARENA_MAX=1, some thread almost always holds the single arena's lock. An injector that
// calls into the loader or the allocator while a stopped thread holds that lock deadlocks here.
// Commands on stdin: "count" -> "count <total operations>"; "quit" -> stops the threads, prints
// "finished <total> corrupt=<n>" and exits 0. Prints "ready <pid>" once all threads run.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { k_threads = 4, k_slots = 64 };

static atomic_int g_stop;
static atomic_long g_ops[k_threads];
static atomic_long g_corrupt;

static void* hammer(void* arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "hammer-%ld", id);
    pthread_setname_np(pthread_self(), name);
    unsigned char* slots[k_slots] = {0};
    size_t sizes[k_slots] = {0};
    unsigned seed = 12345u + (unsigned)id;
    long ops = 0;
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        int i = rand_r(&seed) % k_slots;
        if (slots[i]) {
            // The fill byte encodes the slot: a block handed out twice would show up here.
            if (slots[i][0] != (unsigned char)(i + id) ||
                slots[i][sizes[i] - 1] != (unsigned char)(i + id))
                atomic_fetch_add(&g_corrupt, 1);
            free(slots[i]);
            slots[i] = NULL;
        } else {
            size_t size = 16 + (size_t)(rand_r(&seed) % 4096);
            if (rand_r(&seed) % 64 == 0) size += 200000;  // sometimes above the mmap threshold
            slots[i] = malloc(size);
            if (!slots[i]) abort();
            sizes[i] = size;
            slots[i][0] = slots[i][size - 1] = (unsigned char)(i + id);
        }
        if ((++ops & 1023) == 0) atomic_store_explicit(&g_ops[id], ops, memory_order_relaxed);
    }
    for (int i = 0; i < k_slots; ++i) free(slots[i]);
    atomic_store(&g_ops[id], ops);
    return NULL;
}

static long total_ops(void) {
    long t = 0;
    for (int i = 0; i < k_threads; ++i) t += atomic_load(&g_ops[i]);
    return t;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_t threads[k_threads];
    for (long i = 0; i < k_threads; ++i)
        if (pthread_create(&threads[i], NULL, hammer, (void*)i) != 0) return 2;
    printf("ready %d\n", (int)getpid());
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "count", 5) == 0) printf("count %ld\n", total_ops());
        if (strncmp(line, "quit", 4) == 0) break;
    }
    atomic_store(&g_stop, 1);
    for (int i = 0; i < k_threads; ++i) pthread_join(threads[i], NULL);
    printf("finished %ld corrupt=%ld\n", total_ops(), atomic_load(&g_corrupt));
    return 0;
}
