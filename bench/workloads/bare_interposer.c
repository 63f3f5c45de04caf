// The floor of bench/bench_hotpath.py's table: an LD_PRELOAD interposer of malloc, calloc,
// realloc and free that only counts calls in thread-local counters and forwards to the next
// definition (glibc's). No stacks, no clock, no writer: what any interposing profiler pays before
// it records anything. The counts go to stderr at exit (so a run shows it was really in use).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef void* (*MallocFn)(size_t);
typedef void* (*CallocFn)(size_t, size_t);
typedef void* (*ReallocFn)(void*, size_t);
typedef void (*FreeFn)(void*);

static MallocFn real_malloc;
static CallocFn real_calloc;
static ReallocFn real_realloc;
static FreeFn real_free;
static __thread unsigned long t_calls;
static unsigned long g_calls_main;  // the main thread's count, reported at exit

// dlsym itself may call calloc before real_calloc is known: serve that from a static buffer.
static char g_early[4096];
static size_t g_early_used;

static void resolve(void) {
    real_malloc = (MallocFn)dlsym(RTLD_NEXT, "malloc");
    real_free = (FreeFn)dlsym(RTLD_NEXT, "free");
    real_realloc = (ReallocFn)dlsym(RTLD_NEXT, "realloc");
    real_calloc = (CallocFn)dlsym(RTLD_NEXT, "calloc");
}

static int is_early(void* p) { return (char*)p >= g_early && (char*)p < g_early + sizeof g_early; }

void* malloc(size_t size) {
    if (!real_malloc) resolve();
    ++t_calls;
    return real_malloc(size);
}

void* calloc(size_t n, size_t size) {
    if (!real_calloc) {
        size_t bytes = (n * size + 15) & ~(size_t)15;
        if (g_early_used + bytes > sizeof g_early) return NULL;
        void* p = g_early + g_early_used;
        g_early_used += bytes;
        return p;  // static storage: already zero
    }
    ++t_calls;
    return real_calloc(n, size);
}

void* realloc(void* p, size_t size) {
    if (!real_realloc) resolve();
    ++t_calls;
    if (is_early(p)) {
        void* q = real_malloc(size);
        if (q) memcpy(q, p, size);
        return q;
    }
    return real_realloc(p, size);
}

void free(void* p) {
    if (!p || is_early(p)) return;
    if (!real_free) resolve();
    ++t_calls;
    real_free(p);
}

__attribute__((constructor)) static void start(void) {
    if (!real_malloc) resolve();
}

__attribute__((destructor)) static void report(void) {
    g_calls_main = t_calls;
    fprintf(stderr, "bare interposer: %lu calls on the main thread\n", g_calls_main);
}
