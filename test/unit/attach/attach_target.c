// Target for the attach tests. Prints the addresses the test needs, then runs:
// - a reader thread blocked in read(0) with live values in xmm8-xmm15 across the system call
//   (it answers commands written to stdin and says whether its xmm values survived),
// - a heartbeat thread measuring the longest gap between its wake-ups (the stall we cause),
// - optional threads hammering malloc/free (--hammer N) or idling in nanosleep/poll (--idle N).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static atomic_long g_usr1, g_rt, g_flag, g_calls, g_max_gap_us;
static atomic_ullong g_hammer;
static void* g_kept[4096];
static atomic_int g_kept_n;
static atomic_int g_reader_tid;

static void on_usr1(int sig) { (void)sig; atomic_fetch_add(&g_usr1, 1); }
static void on_rt(int sig) { (void)sig; atomic_fetch_add(&g_rt, 1); }

// ---- functions the tests call remotely ----
__attribute__((noinline, used)) long add6(long a, long b, long c, long d, long e, long f) {
    atomic_fetch_add(&g_calls, 1);
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f;
}
__attribute__((noinline, used)) long set_flag(long v) {
    atomic_store(&g_flag, v);
    return v * 2;
}
__attribute__((noinline, used)) void* alloc_fill(size_t n) {
    unsigned char* p = malloc(n);
    if (!p) return 0;
    memset(p, 0xAB, n);
    int i = atomic_fetch_add(&g_kept_n, 1);
    if (i < 4096) g_kept[i] = p;
    return p;
}
// Clobbers every vector register, like any libc function might: the tracer must restore them.
__attribute__((noinline, used)) long clobber_xmm(void) {
    __asm__ volatile(
        "pcmpeqd %%xmm0, %%xmm0\n\t"
        "movdqa %%xmm0, %%xmm1\n\tmovdqa %%xmm0, %%xmm2\n\tmovdqa %%xmm0, %%xmm3\n\t"
        "movdqa %%xmm0, %%xmm4\n\tmovdqa %%xmm0, %%xmm5\n\tmovdqa %%xmm0, %%xmm6\n\t"
        "movdqa %%xmm0, %%xmm7\n\tmovdqa %%xmm0, %%xmm8\n\tmovdqa %%xmm0, %%xmm9\n\t"
        "movdqa %%xmm0, %%xmm10\n\tmovdqa %%xmm0, %%xmm11\n\tmovdqa %%xmm0, %%xmm12\n\t"
        "movdqa %%xmm0, %%xmm13\n\tmovdqa %%xmm0, %%xmm14\n\tmovdqa %%xmm0, %%xmm15\n\t" ::
            : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
              "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    return 42;
}
__attribute__((noinline, used)) long crash_fn(void) {
    volatile int* volatile bad = (volatile int*)16;  // volatile pointer: no compile-time warning
    *bad = 1;
    return 0;
}
__attribute__((noinline, used)) long block_fn(void) {
    for (;;) pause();
}
// Ends the whole process from the calling thread (exit_group), as a remote call may.
__attribute__((noinline, used)) long exit_fn(long code) {
    _exit((int)code);
}

static long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

static void* heartbeat(void* arg) {
    (void)arg;
    long last = now_us();
    for (;;) {
        struct timespec d = {0, 200000};
        nanosleep(&d, 0);
        long now = now_us();
        long gap = now - last;
        last = now;
        if (gap > atomic_load(&g_max_gap_us)) atomic_store(&g_max_gap_us, gap);
    }
    return 0;
}

static void* hammer(void* arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    void* slots[64] = {0};
    for (unsigned long long n = 0;; ++n) {
        unsigned i = rand_r(&seed) % 64;
        free(slots[i]);
        slots[i] = malloc(16 + rand_r(&seed) % 4096);
        if (slots[i]) ((char*)slots[i])[0] = 1;
        if ((n & 255) == 0) atomic_fetch_add(&g_hammer, 256);
    }
    return 0;
}

static void* idler(void* arg) {
    for (long i = 0;; ++i) {
        if (((long)(uintptr_t)arg + i) % 2) {
            struct timespec d = {0, 10 * 1000 * 1000};
            nanosleep(&d, 0);
        } else {
            poll(0, 0, 10);
        }
    }
    return 0;
}

// read(0, buf, n) with xmm8..xmm15 holding known values across the system call.
static long read_keeping_xmm(char* buf, long n, int* xmm_ok) {
    static const uint32_t pattern[32] __attribute__((aligned(16))) = {
        0x11111111, 0x22222222, 0x33333333, 0x44444444, 0x55555555, 0x66666666, 0x77777777, 0x88888888,
        0x99999999, 0xaaaaaaaa, 0xbbbbbbbb, 0xcccccccc, 0xdddddddd, 0xeeeeeeee, 0x12345678, 0x9abcdef0,
        0x0badf00d, 0xdeadbeef, 0xcafebabe, 0xfeedface, 0x01020304, 0x05060708, 0x090a0b0c, 0x0d0e0f10,
        0x31415926, 0x27182818, 0x16180339, 0x14142135, 0x17320508, 0x22360679, 0x26457513, 0x28284271};
    uint32_t out[32] __attribute__((aligned(16)));
    long ret;
    __asm__ volatile(
        "movdqa 0(%[p]), %%xmm8\n\tmovdqa 16(%[p]), %%xmm9\n\tmovdqa 32(%[p]), %%xmm10\n\t"
        "movdqa 48(%[p]), %%xmm11\n\tmovdqa 64(%[p]), %%xmm12\n\tmovdqa 80(%[p]), %%xmm13\n\t"
        "movdqa 96(%[p]), %%xmm14\n\tmovdqa 112(%[p]), %%xmm15\n\t"
        "syscall\n\t"
        "movdqa %%xmm8, 0(%[o])\n\tmovdqa %%xmm9, 16(%[o])\n\tmovdqa %%xmm10, 32(%[o])\n\t"
        "movdqa %%xmm11, 48(%[o])\n\tmovdqa %%xmm12, 64(%[o])\n\tmovdqa %%xmm13, 80(%[o])\n\t"
        "movdqa %%xmm14, 96(%[o])\n\tmovdqa %%xmm15, 112(%[o])\n\t"
        : "=a"(ret)
        : "a"((long)SYS_read), "D"(0L), "S"(buf), "d"(n), [p] "r"(pattern), [o] "r"(out)
        : "rcx", "r11", "memory", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
          "xmm15");
    *xmm_ok = memcmp(out, pattern, sizeof out) == 0;
    return ret;
}

static void* reader(void* arg) {
    (void)arg;
    atomic_store(&g_reader_tid, (int)syscall(SYS_gettid));
    char buf[512];
    size_t have = 0;
    for (;;) {
        int ok = 0;
        long n = read_keeping_xmm(buf + have, (long)(sizeof buf - 1 - have), &ok);
        if (n == -4 /* EINTR */) continue;
        if (n <= 0) exit(n == 0 ? 0 : 3);
        have += (size_t)n;
        buf[have] = 0;
        char* nl;
        while ((nl = strchr(buf, '\n'))) {
            *nl = 0;
            if (strncmp(buf, "echo ", 5) == 0) {
                printf("echo %s xmm=%s\n", buf + 5, ok ? "ok" : "bad");
            } else if (strcmp(buf, "stats") == 0) {
                printf("stats usr1=%ld rt=%ld flag=%ld calls=%ld maxgap=%ld hammer=%llu kept=%d\n",
                       atomic_load(&g_usr1), atomic_load(&g_rt), atomic_load(&g_flag),
                       atomic_load(&g_calls), atomic_load(&g_max_gap_us),
                       (unsigned long long)atomic_load(&g_hammer), atomic_load(&g_kept_n));
            } else if (strcmp(buf, "reset") == 0) {
                atomic_store(&g_max_gap_us, 0);
                printf("reset\n");
            } else if (strcmp(buf, "check") == 0) {
                // Every block handed out by alloc_fill is still intact and freeable.
                int n_kept = atomic_load(&g_kept_n), bad = 0;
                for (int i = 0; i < n_kept && i < 4096; ++i)
                    if (g_kept[i] && ((unsigned char*)g_kept[i])[0] != 0xAB) ++bad;
                printf("check kept=%d bad=%d\n", n_kept, bad);
            } else if (strcmp(buf, "quit") == 0) {
                fflush(stdout);
                _exit(0);
            }
            fflush(stdout);
            size_t rest = have - (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, rest);
            have = rest;
            buf[have] = 0;
        }
    }
    return 0;
}

int main(int argc, char** argv) {
    int hammers = 0, idlers = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--hammer") == 0) hammers = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--idle") == 0) idlers = atoi(argv[i + 1]);
    }
    mallopt(M_ARENA_MAX, 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, 0);
    sa.sa_handler = on_rt;
    sigaction(SIGRTMIN + 1, &sa, 0);

    pthread_t t;
    pthread_create(&t, 0, heartbeat, 0);
    pthread_create(&t, 0, reader, 0);
    for (int i = 0; i < hammers; ++i) pthread_create(&t, 0, hammer, (void*)(uintptr_t)(i + 1));
    for (int i = 0; i < idlers; ++i) pthread_create(&t, 0, idler, (void*)(uintptr_t)i);
    while (atomic_load(&g_reader_tid) == 0) usleep(100);

    printf("info pid=%d reader=%d add6=%p set_flag=%p alloc=%p clobber=%p crash=%p block=%p "
           "exit=%p malloc=%p free=%p\n",
           (int)getpid(), atomic_load(&g_reader_tid), (void*)add6, (void*)set_flag,
           (void*)alloc_fill, (void*)clobber_xmm, (void*)crash_fn, (void*)block_fn,
           (void*)exit_fn,
           dlsym(RTLD_DEFAULT, "malloc"), dlsym(RTLD_DEFAULT, "free"));
    fflush(stdout);
    for (;;) pause();
}
