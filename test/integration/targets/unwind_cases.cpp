// Allocations from every kind of stack the native walker (src/payload/fast_unwind.cpp) must get
// right or hand over to libunwind: deep recursion, frames that address their locals through rbp
// (variable-length arrays), C++ exceptions thrown and caught across frames, longjmp out of
// nested frames, a signal handler on an alternate stack, a ucontext coroutine on its own stack,
// threads, and a library loaded and unloaded repeatedly. The driver runs it with
// MEMRAY_STACK_CHECK=abort, so any difference from libunwind aborts it.
//   unwind_cases LIBRARY ROUNDS
// Prints "done <allocations>" at the end.
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <atomic>
#include <stdexcept>

namespace {

void* volatile g_sink;
std::atomic<long> g_count{0};

__attribute__((noinline)) void grab(size_t size) {
    void* p = malloc(size);
    g_sink = p;
    free(p);
    ++g_count;
}

__attribute__((noinline)) void recurse(int depth) {
    if (depth == 0) {
        grab(24);
        return;
    }
    recurse(depth - 1);
    g_sink = &depth;  // not a tail call
}

// A variable-length array: the frame addresses its locals through rbp (CFA = rbp + 16).
__attribute__((noinline)) void with_vla(int n) {
    volatile char buf[n];
    buf[0] = char(n);
    grab(size_t(n) + 1);
    if (n > 1) with_vla(n / 2);
    g_sink = const_cast<char*>(buf);
}

__attribute__((noinline)) void thrower(int depth) {
    grab(40);
    if (depth == 0) throw std::runtime_error("unwind me");
    thrower(depth - 1);
    g_sink = &depth;
}

__attribute__((noinline)) void exceptions() {
    for (int i = 0; i < 20; ++i) {
        try {
            thrower(5);
        } catch (const std::exception&) {
            grab(56);  // inside the handler
        }
        grab(64);  // after it
    }
}

jmp_buf g_jump;

__attribute__((noinline)) void jumper(int depth) {
    grab(72);
    if (depth == 0) longjmp(g_jump, 1);
    jumper(depth - 1);
    g_sink = &depth;
}

__attribute__((noinline)) void long_jumps() {
    for (int i = 0; i < 20; ++i) {
        if (setjmp(g_jump) == 0) jumper(6);
        grab(80);
    }
}

void on_signal(int) {
    void* p = malloc(88);  // on the alternate stack, under a signal frame
    g_sink = p;
    free(p);
}

__attribute__((noinline)) void signals() {
    static char alt[1 << 16];
    stack_t ss{};
    ss.ss_sp = alt;
    ss.ss_size = sizeof alt;
    sigaltstack(&ss, nullptr);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, nullptr);
    for (int i = 0; i < 20; ++i) {
        raise(SIGUSR1);
        grab(96);
    }
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, nullptr);
}

ucontext_t g_main_ctx, g_co_ctx;

void coroutine() {
    for (int i = 0; i < 20; ++i) {
        recurse(3);
        grab(104);
        swapcontext(&g_co_ctx, &g_main_ctx);
    }
}

__attribute__((noinline)) void coroutines() {
    static char stack[1 << 17];
    getcontext(&g_co_ctx);
    g_co_ctx.uc_stack.ss_sp = stack;
    g_co_ctx.uc_stack.ss_size = sizeof stack;
    g_co_ctx.uc_link = &g_main_ctx;
    makecontext(&g_co_ctx, coroutine, 0);
    for (int i = 0; i < 20; ++i) {
        swapcontext(&g_main_ctx, &g_co_ctx);
        grab(112);
    }
}

void* thread_body(void*) {
    for (int i = 0; i < 200; ++i) {
        recurse(i % 17);
        with_vla(1 + i % 64);
    }
    return nullptr;
}

__attribute__((noinline)) void threads() {
    pthread_t t[4];
    for (auto& x : t) pthread_create(&x, nullptr, thread_body, nullptr);
    for (auto& x : t) pthread_join(x, nullptr);
}

__attribute__((noinline)) void libraries(const char* path) {
    for (int i = 0; i < 20; ++i) {
        void* h = dlopen(path, RTLD_NOW);
        if (!h) {
            fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
            exit(2);
        }
        auto fn = reinterpret_cast<void* (*)(size_t)>(dlsym(h, "mr_dl_alloc"));
        for (int k = 0; k < 10; ++k) free(fn(120 + size_t(k)));
        g_count += 10;
        dlclose(h);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: unwind_cases LIBRARY ROUNDS\n");
        return 2;
    }
    int rounds = atoi(argv[2]);
    for (int r = 0; r < rounds; ++r) {
        recurse(40);
        with_vla(100);
        exceptions();
        long_jumps();
        signals();
        coroutines();
        threads();
        libraries(argv[1]);
    }
    printf("done %ld\n", g_count.load());
    return 0;
}
