// Threads that are blocked or busy while the driver attaches and detaches, each checking for
// itself that nothing it can observe was disturbed:
//  - "reader": blocked in libc read() on a pipe (fd given as argv[1]); prints "reader got <data>"
//    for every chunk. EINTR or a short/garbled read is reported as an error.
//  - "xmm-block" and the main thread: load xmm0-xmm15 with known values, then block in a raw
//    read syscall (on the fds argv[2] and argv[3]) inside the same asm block, and compare the
//    registers when it returns. The kernel preserves them across a syscall; an injector that
//    runs code on this thread and does not restore the extended state would not.
//  - "xmm-sleep": the same around a raw nanosleep(200 us), in a loop, so attach very likely
//    catches it inside the syscall or between two of them.
//  - "xmm-spin": keeps values in xmm8-xmm15 in a pure register loop (no syscall), checking them
//    on every iteration.
// The xmm threads print "xmm <name> ok <iterations>" or "xmm <name> CORRUPT ..." when they end.
// Every byte the driver writes to the reader's pipe must come back in a "reader got" line.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile int g_stop;

static void die(const char* what) {
    fprintf(stderr, "blocked_io: %s: %s\n", what, strerror(errno));
    exit(2);
}

// 16 distinct 128-bit patterns, one per xmm register.
static uint64_t g_pattern[16][2] __attribute__((aligned(16)));
static void init_patterns(void) {
    for (int i = 0; i < 16; ++i) {
        g_pattern[i][0] = 0x0123456789abcdefull ^ ((uint64_t)i * 0x1111111111111111ull);
        g_pattern[i][1] = 0xfedcba9876543210ull + (uint64_t)i * 0x0101010101010101ull;
    }
}

// Loads the patterns, makes one syscall, stores the registers back into `after`.
// Returns the syscall result.
static long syscall_keeping_xmm(long nr, long a0, long a1, long a2, uint64_t after[16][2]) {
    long ret;
    register long r10 __asm__("r10") = 0;
    __asm__ volatile(
        "movdqa 0(%[p]), %%xmm0\n movdqa 16(%[p]), %%xmm1\n movdqa 32(%[p]), %%xmm2\n"
        "movdqa 48(%[p]), %%xmm3\n movdqa 64(%[p]), %%xmm4\n movdqa 80(%[p]), %%xmm5\n"
        "movdqa 96(%[p]), %%xmm6\n movdqa 112(%[p]), %%xmm7\n movdqa 128(%[p]), %%xmm8\n"
        "movdqa 144(%[p]), %%xmm9\n movdqa 160(%[p]), %%xmm10\n movdqa 176(%[p]), %%xmm11\n"
        "movdqa 192(%[p]), %%xmm12\n movdqa 208(%[p]), %%xmm13\n movdqa 224(%[p]), %%xmm14\n"
        "movdqa 240(%[p]), %%xmm15\n"
        "syscall\n"
        "movdqa %%xmm0, 0(%[a])\n movdqa %%xmm1, 16(%[a])\n movdqa %%xmm2, 32(%[a])\n"
        "movdqa %%xmm3, 48(%[a])\n movdqa %%xmm4, 64(%[a])\n movdqa %%xmm5, 80(%[a])\n"
        "movdqa %%xmm6, 96(%[a])\n movdqa %%xmm7, 112(%[a])\n movdqa %%xmm8, 128(%[a])\n"
        "movdqa %%xmm9, 144(%[a])\n movdqa %%xmm10, 160(%[a])\n movdqa %%xmm11, 176(%[a])\n"
        "movdqa %%xmm12, 192(%[a])\n movdqa %%xmm13, 208(%[a])\n movdqa %%xmm14, 224(%[a])\n"
        "movdqa %%xmm15, 240(%[a])\n"
        : "=a"(ret)
        : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), [p] "r"(g_pattern), [a] "r"(after)
        : "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
          "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    return ret;
}

static int first_bad_register(uint64_t after[16][2]) {
    for (int i = 0; i < 16; ++i)
        if (after[i][0] != g_pattern[i][0] || after[i][1] != g_pattern[i][1]) return i;
    return -1;
}

struct blocker {
    const char* name;
    int fd;
};

// Blocks in read(fd) with live xmm values until the driver writes a byte (or closes the pipe).
static void* xmm_block(void* arg) {
    const struct blocker* b = arg;
    if (strcmp(b->name, "main") != 0) pthread_setname_np(pthread_self(), b->name);
    uint64_t after[16][2] __attribute__((aligned(16)));
    char c;
    long n = syscall_keeping_xmm(SYS_read, b->fd, (long)&c, 1, after);
    int bad = first_bad_register(after);
    if (n != 1) {
        printf("xmm %s READ-FAILED %ld\n", b->name, n);  // -EINTR would mean a lost restart
    } else if (bad >= 0) {
        printf("xmm %s CORRUPT xmm%d %016llx%016llx\n", b->name, bad,
               (unsigned long long)after[bad][1], (unsigned long long)after[bad][0]);
    } else {
        printf("xmm %s ok 1 got %c\n", b->name, c);
    }
    return NULL;
}

static void* xmm_sleep(void* arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "xmm-sleep");
    uint64_t after[16][2] __attribute__((aligned(16)));
    long iterations = 0;
    while (!g_stop) {
        struct timespec ts = {0, 200 * 1000};
        long r = syscall_keeping_xmm(SYS_nanosleep, (long)&ts, 0, 0, after);
        ++iterations;
        int bad = first_bad_register(after);
        if (bad >= 0) {
            printf("xmm xmm-sleep CORRUPT xmm%d after %ld\n", bad, iterations);
            return NULL;
        }
        if (r != 0 && r != -EINTR) {
            printf("xmm xmm-sleep NANOSLEEP-FAILED %ld\n", r);
            return NULL;
        }
    }
    printf("xmm xmm-sleep ok %ld\n", iterations);
    return NULL;
}

// xmm8-15 hold the patterns for the whole loop; each iteration compares them with memory.
static void* xmm_spin(void* arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "xmm-spin");
    long iterations = 0;
    long bad = 0;
    __asm__ volatile(
        "movdqa 128(%[p]), %%xmm8\n movdqa 144(%[p]), %%xmm9\n movdqa 160(%[p]), %%xmm10\n"
        "movdqa 176(%[p]), %%xmm11\n movdqa 192(%[p]), %%xmm12\n movdqa 208(%[p]), %%xmm13\n"
        "movdqa 224(%[p]), %%xmm14\n movdqa 240(%[p]), %%xmm15\n"
        "1:\n"
        "movdqa %%xmm8, %%xmm0\n pcmpeqb 128(%[p]), %%xmm0\n pmovmskb %%xmm0, %%eax\n"
        "cmp $0xffff, %%eax\n jne 2f\n"
        "movdqa %%xmm9, %%xmm0\n pcmpeqb 144(%[p]), %%xmm0\n pmovmskb %%xmm0, %%eax\n"
        "cmp $0xffff, %%eax\n jne 2f\n"
        "movdqa %%xmm10, %%xmm0\n pcmpeqb 160(%[p]), %%xmm0\n pmovmskb %%xmm0, %%eax\n"
        "cmp $0xffff, %%eax\n jne 2f\n"
        "movdqa %%xmm11, %%xmm0\n pcmpeqb 176(%[p]), %%xmm0\n pmovmskb %%xmm0, %%eax\n"
        "cmp $0xffff, %%eax\n jne 2f\n"
        "movdqa %%xmm12, %%xmm0\n pcmpeqb 192(%[p]), %%xmm0\n pmovmskb %%xmm0, %%eax\n"
        "cmp $0xffff, %%eax\n jne 2f\n"
        "movdqa %%xmm13, %%xmm0\n pcmpeqb 208(%[p]), %%xmm0\n pmovmskb %%xmm0, %%eax\n"
        "cmp $0xffff, %%eax\n jne 2f\n"
        "movdqa %%xmm14, %%xmm0\n pcmpeqb 224(%[p]), %%xmm0\n pmovmskb %%xmm0, %%eax\n"
        "cmp $0xffff, %%eax\n jne 2f\n"
        "movdqa %%xmm15, %%xmm0\n pcmpeqb 240(%[p]), %%xmm0\n pmovmskb %%xmm0, %%eax\n"
        "cmp $0xffff, %%eax\n jne 2f\n"
        "incq %[it]\n"
        "pause\n"
        "cmpl $0, %[stop]\n je 1b\n"
        "jmp 3f\n"
        "2: movq $1, %[bad]\n"
        "3:\n"
        : [it] "+r"(iterations), [bad] "+r"(bad)
        : [p] "r"(g_pattern), [stop] "m"(g_stop)
        : "rax", "cc", "memory", "xmm0", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
          "xmm14", "xmm15");
    if (bad)
        printf("xmm xmm-spin CORRUPT after %ld\n", iterations);
    else
        printf("xmm xmm-spin ok %ld\n", iterations);
    return NULL;
}

static void* reader(void* arg) {
    int fd = *(int*)arg;
    pthread_setname_np(pthread_self(), "reader");
    char buf[256];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n < 0) {
            printf("reader ERROR %s\n", strerror(errno));
            return NULL;
        }
        if (n == 0) return NULL;
        buf[n] = 0;
        // The driver sends newline-terminated tokens; report each one.
        for (char* tok = strtok(buf, "\n"); tok; tok = strtok(NULL, "\n"))
            printf("reader got %s\n", tok);
    }
}

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: blocked_io READER_FD XMM_BLOCK_FD MAIN_FD\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    init_patterns();
    int reader_fd = atoi(argv[1]);
    struct blocker thread_blocker = {"xmm-block", atoi(argv[2])};
    struct blocker main_blocker = {"main", atoi(argv[3])};
    pthread_t t_reader, t_block, t_sleep, t_spin;
    if (pthread_create(&t_reader, NULL, reader, &reader_fd) != 0 ||
        pthread_create(&t_block, NULL, xmm_block, &thread_blocker) != 0 ||
        pthread_create(&t_sleep, NULL, xmm_sleep, NULL) != 0 ||
        pthread_create(&t_spin, NULL, xmm_spin, NULL) != 0)
        die("pthread_create");
    printf("ready %d\n", (int)getpid());
    // The main thread itself blocks with live xmm values until the driver releases it.
    xmm_block(&main_blocker);
    pthread_join(t_block, NULL);
    g_stop = 1;
    pthread_join(t_sleep, NULL);
    pthread_join(t_spin, NULL);
    pthread_join(t_reader, NULL);
    printf("finished\n");
    return 0;
}
