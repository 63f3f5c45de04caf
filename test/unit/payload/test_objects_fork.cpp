// A fork while another thread walks the loader's list of objects (objects.hpp): with the fork
// handlers' part from objects.cpp around fork(), the child's own walk completes. Without it the
// child inherits glibc's list lock held by a thread that does not exist there and waits for ever.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "payload/objects.hpp"

namespace payload = memray::payload;

namespace {

std::atomic<bool> g_inside{false};
std::atomic<bool> g_release{false};
std::atomic<bool> g_forked{false};
std::atomic<pid_t> g_forker_tid{0};
pid_t g_child = -1;

int hold_callback(dl_phdr_info*, size_t, void*) {
    g_inside = true;
    while (!g_release) sched_yield();
    return 1;
}

void* walker(void*) {
    dl_iterate_phdr(hold_callback, nullptr);
    return nullptr;
}

int noop_callback(dl_phdr_info*, size_t, void*) { return 1; }

// What api.cpp's handlers do around fork(), for this module only.
void* forker(void*) {
    g_forker_tid = pid_t(syscall(SYS_gettid));
    payload::objects_lock_for_fork();
    pid_t pid = fork();
    if (pid == 0) {
        payload::objects_after_fork_child();
        dl_iterate_phdr(noop_callback, nullptr);
        _exit(0);
    }
    payload::objects_unlock_after_fork_parent();
    g_child = pid;
    g_forked = true;
    return nullptr;
}

// The state letter of one of our threads ('S': asleep, here in the futex of the lock).
char thread_state(pid_t tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", int(tid));
    FILE* f = fopen(path, "r");
    if (!f) return '?';
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char* paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' ? paren[2] : '?';
}

// Bounded: a child stuck in the loader's lock is the defect, not a reason to hang the test.
bool child_exits_cleanly(pid_t pid) {
    for (int i = 0; i < 20000; ++i) {
        int status = 0;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (r < 0) return false;
        timespec ms{0, 1000 * 1000};
        nanosleep(&ms, nullptr);
    }
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return false;
}

}  // namespace

TEST_CASE("a fork prepared while another thread walks the list waits for the walk to end") {
    payload::objects_init();
    pthread_t walk, fork_thread;
    REQUIRE(pthread_create(&walk, nullptr, walker, nullptr) == 0);
    while (!g_inside) sched_yield();
    REQUIRE(pthread_create(&fork_thread, nullptr, forker, nullptr) == 0);
    // The fork must not happen while the walk is on: the forking thread sleeps on the lock.
    while (g_forker_tid == 0 || (thread_state(g_forker_tid) != 'S' && !g_forked)) sched_yield();
    CHECK_FALSE(g_forked.load());
    g_release = true;
    pthread_join(walk, nullptr);
    pthread_join(fork_thread, nullptr);
    REQUIRE(g_forked.load());
    CHECK(child_exits_cleanly(g_child));
}
