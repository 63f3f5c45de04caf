// A small native "service" for the attach tests: the main thread reads commands on stdin and
// hands requests to two named worker threads that were started (and are blocked in read())
// before any attach. Each request leaks a known number of bytes in a known function and makes
// one temporary allocation that it frees, so the driver can check exact counts per function and
// thread. Commands (one per line), each answered with one line once it is fully handled:
//   a N   -> N requests on thread "svc-alpha" (leak_alpha + temp_work)   "done a N"
//   b N   -> N requests on thread "svc-beta"  (leak_beta, calloc)        "done b N"
//   m N   -> N leaks on the main thread (leak_main)                        "done m N"
//   ping  -> "pong"
//   quit  -> exit 0
// At start it prints "SIZES alpha=.. beta=.. main=.. temp=.." and "ready <pid>".
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { k_alpha_size = 40009, k_beta_size = 50021, k_main_size = 60013, k_temp_size = 70001 };
enum { k_max_leaks = 100000 };

static void* g_leaked[k_max_leaks];
static int g_n_leaked;
static pthread_mutex_t g_leak_lock = PTHREAD_MUTEX_INITIALIZER;
static void* volatile g_sink;

struct worker {
    const char* name;
    int request_fd[2];  // main -> worker: one byte per request
    int done_fd[2];     // worker -> main: one byte per finished request
    void (*handle)(void);
};

static void die(const char* what) {
    fprintf(stderr, "native_service: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void keep(void* p) {
    if (!p) die("allocation");
    pthread_mutex_lock(&g_leak_lock);
    if (g_n_leaked < k_max_leaks) g_leaked[g_n_leaked++] = p;
    pthread_mutex_unlock(&g_leak_lock);
}

__attribute__((noinline)) void leak_alpha(void) { keep(malloc(k_alpha_size)); }
__attribute__((noinline)) void leak_beta(void) { keep(calloc(1, k_beta_size)); }
__attribute__((noinline)) void leak_main(void) { keep(malloc(k_main_size)); }

__attribute__((noinline)) void temp_work(void) {
    char* p = malloc(k_temp_size);
    if (!p) die("malloc");
    memset(p, 1, 64);
    g_sink = p;
    free(p);
}

static void handle_alpha(void) {
    temp_work();
    leak_alpha();
}

static void handle_beta(void) { leak_beta(); }

// Blocks in read() between requests: attach happens while every worker sits in this syscall.
__attribute__((noinline)) void* worker_loop(void* arg) {
    struct worker* w = arg;
    pthread_setname_np(pthread_self(), w->name);
    char c;
    for (;;) {
        ssize_t n = read(w->request_fd[0], &c, 1);
        if (n < 0) die("worker read");  // EINTR included: a ptrace stop must not leak into read
        if (n == 0) return NULL;
        w->handle();
        if (write(w->done_fd[1], &c, 1) != 1) die("worker write");
    }
}

static void dispatch(struct worker* w, int n) {
    char c = 'r';
    for (int i = 0; i < n; ++i) {
        if (write(w->request_fd[1], &c, 1) != 1) die("dispatch write");
        if (read(w->done_fd[0], &c, 1) != 1) die("dispatch read");
    }
}

int main(void) {
    static struct worker workers[2] = {{"svc-alpha", {0}, {0}, handle_alpha},
                                       {"svc-beta", {0}, {0}, handle_beta}};
    pthread_t threads[2];
    for (int i = 0; i < 2; ++i) {
        if (pipe(workers[i].request_fd) != 0 || pipe(workers[i].done_fd) != 0) die("pipe");
        if (pthread_create(&threads[i], NULL, worker_loop, &workers[i]) != 0) die("thread");
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("SIZES alpha=%d beta=%d main=%d temp=%d\n", k_alpha_size, k_beta_size, k_main_size,
           k_temp_size);
    printf("ready %d\n", (int)getpid());
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        char cmd = 0;
        int n = 0;
        if (strncmp(line, "ping", 4) == 0) {
            printf("pong\n");
            continue;
        }
        if (strncmp(line, "quit", 4) == 0) break;
        if (sscanf(line, "%c %d", &cmd, &n) != 2 || n < 0) {
            printf("bad command\n");
            continue;
        }
        if (cmd == 'a') {
            dispatch(&workers[0], n);
        } else if (cmd == 'b') {
            dispatch(&workers[1], n);
        } else if (cmd == 'm') {
            for (int i = 0; i < n; ++i) leak_main();
        } else {
            printf("bad command\n");
            continue;
        }
        printf("done %c %d\n", cmd, n);
    }
    if (ferror(stdin)) die("stdin");
    for (int i = 0; i < 2; ++i) close(workers[i].request_fd[1]);
    for (int i = 0; i < 2; ++i) pthread_join(threads[i], NULL);
    return 0;
}
