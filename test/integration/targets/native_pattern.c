// Known native allocations in two named threads, plus strdup inside libc.
// Every distinctive request is announced on stdout as
//   EXPECT <thread name> <KIND> <size> <count>
// so the test driver derives its expectations from what this program really did.
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

struct plan {
    const char* name;
    size_t base;  // distinctive sizes: base + small odd offsets
    int reps;
};

static void* volatile g_sink;

static void expect(const char* thread, const char* kind, size_t size, int count) {
    printf("EXPECT %s %s %zu %d\n", thread, kind, size, count);
}

static void die(const char* what) {
    perror(what);
    exit(2);
}

// Runs the plan's allocations `reps` times; frees everything it allocates.
static void* run_plan(void* arg) {
    const struct plan* p = arg;
    if (pthread_setname_np(pthread_self(), p->name) != 0) die("pthread_setname_np");
    size_t b = p->base;
    for (int i = 0; i < p->reps; ++i) {
        void* m = malloc(b + 3);
        void* c = calloc(1, b + 5);
        void* r = malloc(b + 7);
        g_sink = r;
        void* r2 = realloc(r, b + 9);
        void* pm = NULL;
        if (posix_memalign(&pm, 64, b + 11) != 0) die("posix_memalign");
        void* aa = aligned_alloc(64, b + 64 * 3);
        void* ma = memalign(128, b + 13);
        void* va = valloc(b + PAGE * 2);
        void* mm = mmap(NULL, b + PAGE * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
        if (!m || !c || !r2 || !aa || !ma || !va || mm == MAP_FAILED) die("allocation");
        // Publish every pointer so the compiler cannot elide an allocation/free pair.
        g_sink = m, g_sink = c, g_sink = r2, g_sink = pm, g_sink = aa, g_sink = ma, g_sink = va;
        ((volatile char*)mm)[0] = 1;
        munmap(mm, b + PAGE * 3);
        free(va);
        free(ma);
        free(aa);
        free(pm);
        free(r2);
        free(c);
        free(m);
    }
    return NULL;
}

static void announce(const struct plan* p) {
    size_t b = p->base;
    expect(p->name, "MALLOC", b + 3, p->reps);
    expect(p->name, "CALLOC", b + 5, p->reps);
    expect(p->name, "MALLOC", b + 7, p->reps);
    expect(p->name, "REALLOC", b + 9, p->reps);
    expect(p->name, "POSIX_MEMALIGN", b + 11, p->reps);
    expect(p->name, "ALIGNED_ALLOC", b + 64 * 3, p->reps);
    expect(p->name, "MEMALIGN", b + 13, p->reps);
    expect(p->name, "VALLOC", b + PAGE * 2, p->reps);
    expect(p->name, "MMAP", b + PAGE * 3, p->reps);
    expect(p->name, "MUNMAP", b + PAGE * 3, p->reps);
}

int main(void) {
    // Bases are page multiples so that the mmap and valloc sizes above are page multiples too.
    static const struct plan alpha = {"mr-alpha", 1100 * PAGE, 3};
    static const struct plan beta = {"mr-beta", 1300 * PAGE, 5};
    pthread_t ta, tb;
    if (pthread_create(&ta, NULL, run_plan, (void*)&alpha) != 0) die("pthread_create");
    if (pthread_join(ta, NULL) != 0) die("pthread_join");
    if (pthread_create(&tb, NULL, run_plan, (void*)&beta) != 0) die("pthread_create");
    if (pthread_join(tb, NULL) != 0) die("pthread_join");

    // strdup allocates inside libc (through libc's own reference to malloc).
    size_t len = 1234566;
    char* src = mmap(NULL, len + 1 + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (src == MAP_FAILED) die("mmap");
    memset(src, 'x', len);
    src[len] = '\0';
    char* dup = strdup(src);
    if (!dup) die("strdup");
    g_sink = dup;
    free(dup);
    munmap(src, len + 1 + PAGE);

    announce(&alpha);
    announce(&beta);
    expect("MAIN", "MALLOC", len + 1, 1);
    fflush(stdout);
    return 0;
}
