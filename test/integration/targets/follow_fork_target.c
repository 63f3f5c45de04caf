// Native fork scenarios for --follow-fork (test_follow_fork.py). Every process allocates blocks
// of sizes nothing else uses, and the parent announces, after its children ended, what each
// capture must hold:
//   PARENT <pid>
//   CHILD <pid> <size> <count>    the capture of <pid> holds exactly <count> mallocs of <size>
//   NOT <pid> <size>              ... and none of <size>
// Modes:
//   basic  the parent allocates before and after the fork; the child allocates, forks a
//          grandchild (which allocates and exits), waits for it and exits through exit()
//   storm  100 children forked one after another, all alive at once, each allocating its own
//          size and leaving through _exit()
//   thread a second thread mallocs and frees in a tight loop (from stacks of changing depth, so
//          new stack nodes keep being interned) while the main thread forks 50 children
//   exec   four children allocate, then exec this program in mode "exec-image" (which allocates
//          k_exec_size: it must appear in no capture) through execv, execl, execlp and execle
//   dlopen a second thread loads and unloads libmrdl.so (beside this program) over and over, so
//          the payload's writer keeps walking the loader's list of objects, while the main thread
//          forks 200 children; a child that does not exit within 20 s is reported and killed
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
    k_before = 1234589,
    k_after = 1234591,
    k_child = 1234597,
    k_grandchild = 1234603,
    k_storm_base = 2100000,  // storm child i: k_storm_base + 16 * i
    k_thread_child = 1300021,
    k_spin = 1777,
    k_exec_child = 1400017,
    k_exec_size = 1400023,
    k_dlopen_child = 1500029,
};

static void* volatile g_sink;
static volatile int g_depth_sink;

static void churn(size_t size, int count) {
    for (int i = 0; i < count; ++i) {
        void* p = malloc(size);
        g_sink = p;
        free(p);
    }
}

static int wait_ok(pid_t pid) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child %d failed (status %#x)\n", (int)pid, status);
        return 0;
    }
    return 1;
}

static pid_t fork_or_die(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    return pid;
}

static int basic(void) {
    churn(k_before, 3);
    pid_t child = fork_or_die();
    if (child == 0) {
        churn(k_child, 5);
        pid_t grandchild = fork_or_die();
        if (grandchild == 0) {
            churn(k_grandchild, 2);
            exit(0);
        }
        int ok = wait_ok(grandchild);
        printf("CHILD %d %d %d\n", (int)grandchild, k_grandchild, 2);
        printf("NOT %d %d\n", (int)grandchild, k_child);
        printf("NOT %d %d\n", (int)grandchild, k_before);
        fflush(stdout);
        exit(ok ? 0 : 2);
    }
    if (!wait_ok(child)) return 2;
    churn(k_after, 4);
    printf("PARENT %d\n", (int)getpid());
    printf("CHILD %d %d %d\n", (int)getpid(), k_before, 3);
    printf("CHILD %d %d %d\n", (int)getpid(), k_after, 4);
    printf("NOT %d %d\n", (int)getpid(), k_child);
    printf("NOT %d %d\n", (int)getpid(), k_grandchild);
    printf("CHILD %d %d %d\n", (int)child, k_child, 5);
    printf("NOT %d %d\n", (int)child, k_before);
    printf("NOT %d %d\n", (int)child, k_after);
    printf("NOT %d %d\n", (int)child, k_grandchild);
    return 0;
}

static int storm(void) {
    enum { n = 100 };
    pid_t pids[n];
    int pipefd[2];
    if (pipe(pipefd) != 0) return 2;
    for (int i = 0; i < n; ++i) {
        pids[i] = fork_or_die();
        if (pids[i] == 0) {
            close(pipefd[1]);
            churn((size_t)(k_storm_base + 16 * i), 2);
            char c;
            while (read(pipefd[0], &c, 1) < 0) {
            }  // all children alive at once: released together when the parent closes the pipe
            _exit(0);
        }
    }
    close(pipefd[0]);
    close(pipefd[1]);
    int ok = 1;
    for (int i = 0; i < n; ++i) ok &= wait_ok(pids[i]);
    printf("PARENT %d\n", (int)getpid());
    for (int i = 0; i < n; ++i) {
        printf("CHILD %d %d %d\n", (int)pids[i], k_storm_base + 16 * i, 2);
        printf("NOT %d %d\n", (int)pids[i], k_storm_base + 16 * ((i + 1) % n));
    }
    printf("NOT %d %d\n", (int)getpid(), k_storm_base);
    return ok ? 0 : 2;
}

static atomic_int g_stop;

// Stacks of changing depth: new stack nodes keep being interned while the main thread forks.
__attribute__((noinline)) static void spin_at_depth(int depth) {
    if (depth > 0) {
        spin_at_depth(depth - 1);
        g_depth_sink = depth;  // not a tail call
        return;
    }
    churn(k_spin, 1);
}

static void* spinner(void* arg) {
    (void)arg;
    for (unsigned i = 0; !atomic_load(&g_stop); ++i) spin_at_depth((int)(i % 97));
    return NULL;
}

static int threaded(void) {
    enum { n = 50 };
    pthread_t t;
    if (pthread_create(&t, NULL, spinner, NULL) != 0) return 2;
    pid_t pids[n];
    int ok = 1;
    for (int i = 0; i < n; ++i) {
        pids[i] = fork_or_die();
        if (pids[i] == 0) {
            churn(k_thread_child, 3);
            _exit(0);
        }
        ok &= wait_ok(pids[i]);
    }
    atomic_store(&g_stop, 1);
    pthread_join(t, NULL);
    printf("PARENT %d\n", (int)getpid());
    printf("NOT %d %d\n", (int)getpid(), k_thread_child);
    for (int i = 0; i < n; ++i) {
        printf("CHILD %d %d %d\n", (int)pids[i], k_thread_child, 3);
        printf("NOT %d %d\n", (int)pids[i], k_spin);  // the spinner does not exist there
    }
    return ok ? 0 : 2;
}

// Child i allocates k_exec_child + 16 * i, then execs through execv, execl, execlp, execle.
static int exec_mode(const char* self) {
    enum { n = 4 };
    pid_t pids[n];
    int ok = 1;
    for (int i = 0; i < n; ++i) {
        pids[i] = fork_or_die();
        if (pids[i] == 0) {
            churn((size_t)(k_exec_child + 16 * i), 2);
            char* argv[] = {(char*)self, (char*)"exec-image", NULL};
            char* envp[] = {NULL};
            if (i == 0) execv(self, argv);
            else if (i == 1) execl(self, self, "exec-image", (char*)NULL);
            else if (i == 2) execlp(self, self, "exec-image", (char*)NULL);
            else execle(self, self, "exec-image", (char*)NULL, envp);
            _exit(3);
        }
        ok &= wait_ok(pids[i]);
    }
    printf("PARENT %d\n", (int)getpid());
    printf("NOT %d %d\n", (int)getpid(), k_exec_size);
    for (int i = 0; i < n; ++i) {
        printf("CHILD %d %d %d\n", (int)pids[i], k_exec_child + 16 * i, 2);
        printf("NOT %d %d\n", (int)pids[i], k_exec_size);
        printf("NOT %d %d\n", (int)getpid(), k_exec_child + 16 * i);
    }
    return ok ? 0 : 2;
}

static char g_lib_path[PATH_MAX];

// Each load and unload changes the set of objects: the writer walks the list again after each.
static void* loader(void* arg) {
    (void)arg;
    struct timespec pause = {0, 500 * 1000};
    while (!atomic_load(&g_stop)) {
        void* h = dlopen(g_lib_path, RTLD_NOW);
        if (!h) {
            fprintf(stderr, "dlopen %s: %s\n", g_lib_path, dlerror());
            exit(2);
        }
        nanosleep(&pause, NULL);
        dlclose(h);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

// Waits for a child that may hang (the defect this mode looks for) without hanging the test.
static int wait_bounded(pid_t pid) {
    struct timespec tick = {0, 1000 * 1000};
    for (long waited = 0; waited < 20000; ++waited) {
        int status = 0;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) return 1;
        if (r == pid || r < 0) {
            fprintf(stderr, "child %d failed (status %#x)\n", (int)pid, status);
            return 0;
        }
        nanosleep(&tick, NULL);
    }
    fprintf(stderr, "child %d did not exit within 20 s\n", (int)pid);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}

static int dlopen_mode(void) {
    enum { n = 200 };
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return 2;
    self[len] = '\0';
    char* slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    if (strlen(self) + sizeof "/libmrdl.so" > sizeof g_lib_path) return 2;
    strcpy(g_lib_path, self);
    strcat(g_lib_path, "/libmrdl.so");
    pthread_t t;
    if (pthread_create(&t, NULL, loader, NULL) != 0) return 2;
    static pid_t pids[n];
    int ok = 1, forked = 0;
    while (forked < n && ok) {
        pid_t pid = fork_or_die();
        if (pid == 0) {
            churn(k_dlopen_child, 2);
            _exit(0);
        }
        pids[forked++] = pid;
        ok &= wait_bounded(pid);
    }
    atomic_store(&g_stop, 1);
    pthread_join(t, NULL);
    printf("PARENT %d\n", (int)getpid());
    printf("NOT %d %d\n", (int)getpid(), k_dlopen_child);
    for (int i = 0; i < forked; ++i) printf("CHILD %d %d %d\n", (int)pids[i], k_dlopen_child, 2);
    return ok ? 0 : 2;
}

int main(int argc, char** argv) {
    const char* mode = argc > 1 ? argv[1] : "basic";
    if (strcmp(mode, "basic") == 0) return basic();
    if (strcmp(mode, "storm") == 0) return storm();
    if (strcmp(mode, "thread") == 0) return threaded();
    if (strcmp(mode, "exec") == 0) return exec_mode(argv[0]);
    if (strcmp(mode, "dlopen") == 0) return dlopen_mode();
    if (strcmp(mode, "exec-image") == 0) {
        churn(k_exec_size, 2);
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
