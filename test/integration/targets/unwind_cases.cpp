// Allocations from every kind of stack the native walker (src/payload/fast_unwind.cpp) must get
// right or hand over to libunwind: deep recursion, frames that address their locals through rbp
// (variable-length arrays), C++ exceptions thrown and caught across frames, longjmp out of
// nested frames, a signal handler on an alternate stack, a ucontext coroutine on its own stack,
// threads, a library loaded and unloaded repeatedly, frames at the stack addresses of an
// earlier call's (stale_frames), and one callee from two call sites (two_sites). The driver
// runs it with
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

// The walker reuses the outer part of the thread's previous walk when it reaches a frame with the
// same registers and the memory that walk read still holds the same values. Here the second
// allocation's innermost frames are where the first one's were (same stack addresses, same
// return addresses), but its outer frames are another function's, and the return-address slots
// of the first call's outer frames still hold their old values (copied back on purpose): only
// the saved rbp of the frame that addresses its locals through rbp tells them apart.
struct Stale {
    uintptr_t top = 0;      // same_spot()'s stack top when its callee ran in the first call
    uintptr_t lo = 0;       // stack bytes the first call's frames left, copied back in the second
    unsigned char bytes[64];
    void* caller_return = nullptr;  // where the first call's caller returns to
    void* caller_return_now = nullptr;
    long aligned = 0;       // second calls set up as intended (see same_spot)
};
Stale g_stale;

__attribute__((noinline)) void spot_alloc(bool first, uintptr_t caller_rbp) {
    void* p = malloc(136);
    g_sink = p;
    if (first) {  // the caller's saved rbp and return address, and what lies below them
        g_stale.lo = caller_rbp + 16 - sizeof g_stale.bytes;
        memcpy(g_stale.bytes, reinterpret_cast<void*>(g_stale.lo), sizeof g_stale.bytes);
    }
    free(p);
    ++g_count;
}

// Addresses its locals through rbp (alloca), and steps its stack top down towards where the
// first call had it, so that spot_alloc() runs at the same address both times (when the steps
// land there exactly: the callers' pads vary so that some do).
__attribute__((noinline)) void same_spot(bool first) {
    auto top = reinterpret_cast<uintptr_t>(__builtin_alloca(16));
    if (first) g_stale.top = top;
    while (!first && top > g_stale.top) top = reinterpret_cast<uintptr_t>(__builtin_alloca(16));
    uintptr_t rbp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
    // Counted when spot_alloc() runs where it did the first time, the first call's frame of this
    // function lies inside this call's alloca'd area, and both callers return to one place.
    if (!first && top == g_stale.top && g_stale.lo >= top &&
        g_stale.lo + sizeof g_stale.bytes < rbp &&
        g_stale.caller_return_now == g_stale.caller_return) {
        memcpy(reinterpret_cast<void*>(g_stale.lo), g_stale.bytes, sizeof g_stale.bytes);
        ++g_stale.aligned;
    }
    spot_alloc(first, rbp);
    g_sink = reinterpret_cast<void*>(top);
}

// Two callers that differ only in how deep they put same_spot()'s frame.
__attribute__((noinline)) void deep_caller(bool first, size_t pad) {
    g_stale.caller_return = __builtin_return_address(0);
    g_sink = __builtin_alloca(pad);
    same_spot(first);
    asm volatile("");  // not a tail call
}

__attribute__((noinline)) void shallow_caller(bool first, size_t pad) {
    g_stale.caller_return_now = __builtin_return_address(0);
    g_sink = __builtin_alloca(pad);
    same_spot(first);
    asm volatile("");  // not a tail call
}

void (*const g_callers[2])(bool, size_t) = {deep_caller, shallow_caller};
volatile int g_round;

__attribute__((noinline)) void stale_frames() {
    // Both callers from one call instruction, at the same stack address: chosen by table, not
    // by a branch the compiler could give a call of its own (the volatile round hides the
    // alternation from it too).
#pragma GCC unroll 1
    for (int round = 0; round < 40; ++round) {
        g_round = round;
        int i = g_round;
        int second = i & 1;
        size_t pad = 16 + size_t(1 - second) * (1008 + 16 * size_t(i / 2 % 4));
        g_callers[second](second == 0, pad);
    }
}

// One callee called from two call sites of one frame: the second walk finds the callee where
// the first left it, but its return address changed; the walker's attempt to take the first
// walk's frames over fails there and must succeed one frame further out (main's call).
__attribute__((noinline)) void site_callee(size_t size) {
    grab(size);
    asm volatile("");  // not a tail call
}

__attribute__((noinline)) void two_sites(int round) {
    if (round & 1) {
        site_callee(40);
        asm volatile("");  // two call instructions, not one after a select
    } else {
        site_callee(56);
        asm volatile("");
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
        stale_frames();
        for (int i = 0; i < 40; ++i) two_sites(i);
    }
    printf("done %ld\n", g_count.load());
    printf("stale frames aligned %ld\n", g_stale.aligned);
    return 0;
}
