// Plays "another debugger": PTRACE_SEIZEs the pid (or tid) given in argv[1], and with "stop" as
// argv[2] also stops it (PTRACE_INTERRUPT, state t); prints "seized" and holds on until its
// stdin closes; then it detaches (which resumes a stopped thread) and exits.
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
    if (argc != 2 && argc != 3) return 2;
    pid_t pid = (pid_t)atoi(argv[1]);
    if (ptrace(PTRACE_SEIZE, pid, 0, 0) != 0) {
        printf("seize failed: %s\n", strerror(errno));
        return 1;
    }
    if (argc == 3 && strcmp(argv[2], "stop") == 0) {
        int status = 0;
        if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) != 0 || waitpid(pid, &status, __WALL) != pid ||
            !WIFSTOPPED(status)) {
            printf("stop failed: %s\n", strerror(errno));
            return 1;
        }
    }
    printf("seized\n");
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {
    }
    ptrace(PTRACE_DETACH, pid, 0, 0);
    return 0;
}
