// Forks; the child makes distinctive allocations and exits through exit() (atexit handlers and
// destructors run); the parent allocates before and after. Announces
//   EXPECT MAIN MALLOC <size> <count>   (parent, must be recorded)
//   ABSENT <size>                        (child, must not appear in the parent's capture)
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void* volatile g_sink;

static void churn(size_t size, int count) {
    for (int i = 0; i < count; ++i) {
        void* p = malloc(size);
        g_sink = p;
        free(p);
    }
}

int main(void) {
    const size_t before = 1234589, after = 1234591, child = 1234597;
    churn(before, 3);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        churn(child, 5);
        exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child failed (status %#x)\n", status);
        return 2;
    }
    churn(after, 4);
    printf("EXPECT MAIN MALLOC %zu %d\n", before, 3);
    printf("EXPECT MAIN MALLOC %zu %d\n", after, 4);
    printf("ABSENT %zu\n", child);
    return 0;
}
