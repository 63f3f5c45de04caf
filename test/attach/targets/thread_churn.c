// The C variant of thread_churn.py, faster: CHURNERS threads each create BATCH threads that
// malloc/free a little and exit at once, join them, and start again, so at any moment threads
// are being created (PTRACE_EVENT_CLONE while we seize) and others are exiting (gone between
// the /proc/PID/task scan and the seize, or between the seize and the interrupt).
// Commands on stdin: "count" -> "count <workers finished>"; "quit" -> "finished <n>", exit 0.
// Prints "ready <pid>" once the churn runs.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { k_churners = 2, k_batch = 4 };

static atomic_int g_stop;
static atomic_long g_finished;

static void* worker(void* arg) {
    size_t n = (size_t)arg;
    void* blocks[16];
    for (int i = 0; i < 16; ++i) {
        blocks[i] = malloc(64 + (n + (size_t)i) % 4000);
        if (!blocks[i]) abort();
        memset(blocks[i], 1, 64);
    }
    for (int i = 0; i < 16; ++i) free(blocks[i]);
    return NULL;
}

static void* churn(void* arg) {
    (void)arg;
    size_t n = 0;
    while (!atomic_load(&g_stop)) {
        pthread_t batch[k_batch];
        int made = 0;
        for (int i = 0; i < k_batch; ++i)
            if (pthread_create(&batch[made], NULL, worker, (void*)(n + (size_t)i)) == 0) ++made;
        for (int i = 0; i < made; ++i) pthread_join(batch[i], NULL);
        n += (size_t)made;
        atomic_fetch_add(&g_finished, made);
    }
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_t churners[k_churners];
    for (int i = 0; i < k_churners; ++i)
        if (pthread_create(&churners[i], NULL, churn, NULL) != 0) return 2;
    while (atomic_load(&g_finished) == 0) usleep(1000);
    printf("ready %d\n", (int)getpid());
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "count", 5) == 0) printf("count %ld\n", atomic_load(&g_finished));
        if (strncmp(line, "quit", 4) == 0) break;
    }
    atomic_store(&g_stop, 1);
    for (int i = 0; i < k_churners; ++i) pthread_join(churners[i], NULL);
    printf("finished %ld\n", atomic_load(&g_finished));
    return 0;
}
