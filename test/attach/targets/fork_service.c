// A service that forks on request, for `memray attach --follow-fork` (test_follow_fork.py).
// At start it forks an "early" child that waits on a pipe (forked before any attach: never
// tracked) and prints "ready <pid> early=<pid>". Commands, one per line, each answered once done:
//   fork N   a child mallocs k_child_size N times and exits         "forked <pid>"
//   hold N   a child mallocs k_child_size N times, then waits          "held <pid>"
//   release  the held child mallocs k_late_size twice and exits        "released"
//   early    the early child mallocs k_early_size twice and exits      "early done"
//   m N      the service itself mallocs k_main_size N times            "done m N"
//   quit     exit 0
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { k_child_size = 81001, k_late_size = 82003, k_early_size = 83009, k_main_size = 84011 };

static void* volatile g_sink;

static void churn(size_t size, int count) {
    for (int i = 0; i < count; ++i) {
        void* p = malloc(size);
        g_sink = p;
        free(p);
    }
}

// A child blocked until a byte (or EOF) arrives on the returned descriptor's other end.
static pid_t fork_waiting(int* release_fd, size_t before, int n_before, size_t after) {
    int fds[2], ready[2];
    if (pipe(fds) != 0 || pipe(ready) != 0) exit(2);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) exit(2);
    if (pid == 0) {
        close(fds[1]);
        close(ready[0]);
        churn(before, n_before);
        close(ready[1]);  // the parent answers once the first allocations are made
        char c;
        while (read(fds[0], &c, 1) < 0) {
        }
        churn(after, 2);
        exit(0);
    }
    close(fds[0]);
    close(ready[1]);
    char c;
    while (read(ready[0], &c, 1) < 0) {
    }
    close(ready[0]);
    *release_fd = fds[1];
    return pid;
}

static int reap(pid_t pid) {
    int status = 0;
    return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int early_fd = -1, held_fd = -1;
    pid_t early = fork_waiting(&early_fd, k_early_size, 0, k_early_size);
    pid_t held = 0;
    printf("SIZES child=%d late=%d early=%d main=%d\n", k_child_size, k_late_size, k_early_size,
           k_main_size);
    printf("ready %d early=%d\n", (int)getpid(), (int)early);
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        int n = 0;
        if (sscanf(line, "fork %d", &n) == 1) {
            fflush(stdout);
            pid_t pid = fork();
            if (pid < 0) return 2;
            if (pid == 0) {
                churn(k_child_size, n);
                exit(0);
            }
            if (!reap(pid)) return 2;
            printf("forked %d\n", (int)pid);
        } else if (sscanf(line, "hold %d", &n) == 1) {
            held = fork_waiting(&held_fd, k_child_size, n, k_late_size);
            printf("held %d\n", (int)held);
        } else if (strncmp(line, "release", 7) == 0) {
            close(held_fd);
            if (!reap(held)) return 2;
            printf("released\n");
        } else if (strncmp(line, "early", 5) == 0) {
            close(early_fd);
            if (!reap(early)) return 2;
            printf("early done\n");
        } else if (sscanf(line, "m %d", &n) == 1) {
            churn(k_main_size, n);
            printf("done m %d\n", n);
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        }
    }
    return 0;
}
