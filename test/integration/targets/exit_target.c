// Ends through _exit() or _Exit() (argv[1]: "_exit" or "_Exit") right after distinctive
// allocations, the way forked workers end: no atexit handlers, no destructors, nothing flushed
// by anyone but the payload's hook. Before that, a vfork child and a fork child end with _exit(0)
// too: neither may finalize the parent's capture (the allocations after them must be recorded).
// Announces on stdout (flushed before the exit)
//   EXPECT MAIN MALLOC <size> <count>
// and exits with status 3 (_exit) or 4 (_Exit).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void* volatile g_sink;

static void keep(size_t size, int count) {
    for (int i = 0; i < count; ++i) g_sink = malloc(size);  // kept: the process ends anyway
}

static int wait_child(pid_t pid) {
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child failed (pid %d, status %#x)\n", (int)pid, status);
        return -1;
    }
    return 0;
}

int main(int argc, char** argv) {
    if (argc != 2 || (strcmp(argv[1], "_exit") != 0 && strcmp(argv[1], "_Exit") != 0)) {
        fprintf(stderr, "usage: exit_target _exit|_Exit\n");
        return 2;
    }
    const size_t before = 2345671, after_children = 2345677, last = 2345681;
    keep(before, 2);
    fflush(stdout);
    pid_t pid = vfork();
    if (pid == 0) _exit(0);
    if (wait_child(pid) != 0) return 2;
    pid = fork();
    if (pid == 0) _exit(0);
    if (wait_child(pid) != 0) return 2;
    keep(after_children, 3);
    printf("EXPECT MAIN MALLOC %zu %d\n", before, 2);
    printf("EXPECT MAIN MALLOC %zu %d\n", after_children, 3);
    printf("EXPECT MAIN MALLOC %zu %d\n", last, 5);
    fflush(stdout);
    keep(last, 5);
    if (strcmp(argv[1], "_exit") == 0) _exit(3);
    _Exit(4);
}
