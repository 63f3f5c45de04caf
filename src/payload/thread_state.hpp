// Per-thread tracker state shared by the tracker (producer side, tracker.cpp) and the writer
// thread (consumer side, writer.cpp). Lives in mmap'd memory; TLS only holds a pointer to it.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <ctime>

#include "payload/fast_unwind.hpp"
#include "payload/lock.hpp"
#include "payload/python_stack.hpp"
#include "payload/stack_intern.hpp"

namespace memray::payload {

// CLOCK_MONOTONIC through the vDSO: the time base of the capture (start time, samples, trailer).
inline uint64_t now_ns() noexcept {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return uint64_t(t.tv_sec) * 1000000000u + uint64_t(t.tv_nsec);
}

// Sleeps while *word == expected, at most timeout_ns (< 1 s), until futex_wake(word).
inline void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, long timeout_ns) noexcept {
    timespec ts{0, timeout_ns};
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, &ts,
            nullptr, 0);
}
inline void futex_wake(std::atomic<uint32_t>* word, int waiters) noexcept {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, waiters, nullptr,
            nullptr, 0);
}

// True when events are stamped with the TSC (tracker_init decides once, see tracker.cpp);
// otherwise with now_ns(). Never changes while a capture runs.
extern bool g_clock_tsc;

// The event clock, in "ticks" (TSC cycles, or nanoseconds without the TSC); the writer converts
// ticks to capture time (writer.cpp, "Clock"). Measured here: rdtscp ~28-38 ns, plain rdtsc
// ~15 ns, clock_gettime ~50 ns (this VM's vDSO is slow).
//
// Why rdtscp and not rdtsc: the writer's merge (writer.cpp, cycle()) needs a stamp that cannot be
// taken before a memory access that precedes it in program order. Example: thread A records
// free(p) (stamp tA), then really frees p; thread B's malloc returns p (its loads observed A's
// free) and B stamps tB. tA < tB must hold. A's side holds with any rdtsc: the counter is read
// before the instruction retires, and A's later stores (the real free) only become visible after
// they retire, which is after it. B's side needs the read to happen after B's earlier loads have
// completed: plain rdtsc may execute early, out of order; rdtscp waits until all older
// instructions have executed and older loads are globally visible (Intel SDM and AMD APM).
// Across cores this relies on synchronized TSCs, which the kernel checks (its TSC warp test
// uses exactly this handoff pattern) before it selects "tsc" as the clocksource.
inline uint64_t now_ticks() noexcept {
#if defined(__x86_64__)
    if (__builtin_expect(g_clock_tsc, 1)) {
        uint32_t lo, hi;
        // "memory": the compiler must not move program memory accesses across the read either.
        asm volatile("rdtscp" : "=a"(lo), "=d"(hi)::"rcx", "memory");
        return (uint64_t(hi) << 32) | lo;
    }
#endif
    return now_ns();
}

// CLOCK_MONOTONIC_COARSE: the time of the kernel's last tick (4 ms apart here), ~4 ns to read
// against ~30 ns for now_ns(). Never later than a now_ns() read after it (both count from the
// same base, the coarse one without the time since the tick), which is what makes it a valid
// stamp while a single thread records (tracker.cpp, event_stamp()).
inline uint64_t coarse_ns() noexcept {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return uint64_t(t.tv_sec) * 1000000000u + uint64_t(t.tv_nsec);
}

// --- native frames (native_stack.cpp). The tracker calls unw_backtrace itself, from the
// function the hook called, so the walk starts one frame closer to the hook (each frame costs
// ~10 ns in libunwind's fast path) than through a helper function would.
extern uintptr_t g_self_lo;  // the payload's executable segment, set by native_stack_init()
extern uintptr_t g_self_hi;
extern uintptr_t g_eval_lo;  // _PyEval_EvalFrameDefault's code (0, 0 without Python)
extern uintptr_t g_eval_hi;

// A native frame of the interpreter's eval loop.
inline bool in_eval_loop(uintptr_t ip) noexcept { return ip >= g_eval_lo && ip < g_eval_hi; }

// How many of buf[0..n) are the payload's own innermost frames.
inline int native_self_frames(void* const* buf, int n) noexcept {
    int i = 0;
    while (i < n) {
        uintptr_t ip = reinterpret_cast<uintptr_t>(buf[i]);
        if (ip < g_self_lo || ip >= g_self_hi) break;
        ++i;
    }
    return i;
}

// Copies buf[0..n) into out (at most max), dropping the payload's own innermost frames.
// out may be buf (the copy only moves entries down).
inline size_t native_drop_self(void* const* buf, int n, uintptr_t* out, size_t max) noexcept {
    if (n <= 0) return 0;
    int i = native_self_frames(buf, n);
    size_t count = 0;
    for (; i < n && count < max; ++i) out[count++] = reinterpret_cast<uintptr_t>(buf[i]);
    return count;
}

struct RawEvent {
    uint64_t time;  // now_ticks()
    uint64_t address;
    uint64_t size;
    uint32_t node;
    uint8_t kind;  // format::Allocator
    uint8_t pad[3];
};
static_assert(sizeof(RawEvent) == 32);

// Power of two. 512 KiB per thread, touched only as far as the thread gets; the writer is woken
// at half full (unless it paces itself: writer.cpp, writer_main) and at three quarters.
inline constexpr uint32_t k_ring_capacity = 16384;
inline constexpr uint32_t k_ring_mask = k_ring_capacity - 1;
inline constexpr size_t k_max_python_frames = 128;
inline constexpr size_t k_max_native_frames = 128;
inline constexpr size_t k_native_self_room = 16;  // the payload's own frames, dropped

enum class StateStatus : uint32_t {
    Free = 0,    // may be taken by a new thread (ring drained, owner gone)
    Live = 1,    // owned by a running thread
    Exited = 2,  // owner ran its TLS destructors; the writer recycles it once the tid is gone
};

struct alignas(64) ThreadState {
    // --- written by the owning thread (producer)
    std::atomic<uint64_t> head{0};
    uint64_t cached_tail = 0;
    std::atomic<uint32_t> busy{0};  // inside a record call; stop waits for 0
    uint32_t session = 0;           // session the prefix cache belongs to
    uint32_t clock_session = 0;     // session in which this thread checked in (event_stamp)
    // The previous stack's native part was the whole walk (not cut at k_max_native_frames),
    // so the walker's reused outer frames are the prefix cache's first ones (capture_stack).
    bool native_whole = false;
    // Native frames the previous stack put before its Python frames (capture_stack).
    uint32_t native_outer = 0;
    uint32_t native_trimmed = 0;  // outermost native frames the previous stack left out
    // Frames from the walk's start to the eval-loop call of the outermost Python frames in the
    // previous rooted stack; UINT32_MAX when its calls and frames did not pair up (capture_stack).
    uint32_t until_frames = 0;

    // --- written by the writer (consumer)
    alignas(64) std::atomic<uint64_t> tail{0};
    std::atomic<uint32_t> tail_seq{0};          // futex word, bumped when tail advances
    std::atomic<uint32_t> producer_waiting{0};  // the owner sleeps on tail_seq (ring full)
    uint32_t writer_session = 0;                // session in which thread_index was assigned
    uint32_t thread_index = 0;
    uint32_t name_seq_seen = 0;

    // --- registry and names (rare)
    alignas(64) ThreadState* next = nullptr;  // global list, append-only
    std::atomic<uint32_t> status{0};
    std::atomic<long> tid{0};
    std::atomic<uint32_t> name_seq{0};  // bumped on every rename
    SpinLock name_lock;  // `name`: record_thread_name vs. the writer's copy
    char name[64] = {};  // explicit name given to record_thread_name ("" = read comm)

    // --- owner-only scratch (kept off the stack: threads may have tiny stacks)
    PrefixCache cache;
    PyFrameRef py_frames[k_max_python_frames];
    uintptr_t native_frames[k_max_native_frames + k_native_self_room];
    uintptr_t check_frames[k_max_native_frames + k_native_self_room];  // MEMRAY_STACK_CHECK
    UnwindRuleCache rule_cache;  // fast_unwind.hpp
    UnwindHistory unwind_history;
    StackFrame frames[k_max_python_frames + k_max_native_frames];

    alignas(64) RawEvent ring[k_ring_capacity];
};

// --- tracker.cpp, used by api.cpp and writer.cpp (cold paths)

// One-time setup (pthread key, membarrier registration, intern tables). Returns false on failure.
bool tracker_init() noexcept;
// Tests: chooses the event clock (the TSC only where usable) and whether a lone recording
// thread may stamp with coarse_ns() (never with the TSC). Only while no capture runs.
void tracker_set_event_clock(bool tsc, bool solo_coarse = false) noexcept;
// Prepares a new capture: forgets every node and code id, starts a new session number.
// `python`: walk Python frames; `native`: walk native frames.
void tracker_begin_session(bool python, bool native) noexcept;
uint32_t tracker_session() noexcept;
void tracker_set_enabled(bool on) noexcept;
// After tracking was switched off: returns once no thread is inside a record call.
void tracker_wait_quiescent() noexcept;
// Fork handlers (api.cpp), with the session lock held, before the other locks: close waits until
// no other thread is inside a record (an unwind holds libunwind's locks, which the child would
// inherit held: seen as a --follow-fork child hanging in its first unwind) and makes new records
// wait; open lets them go on.
void tracker_fork_gate_close() noexcept;
void tracker_fork_gate_open() noexcept;
// Head of the append-only list of thread states.
ThreadState* thread_list() noexcept;
// True once after notify_objects_changed() was called.
bool tracker_take_objects_changed() noexcept;
// In a forked child: tracking off, every other thread's state forgotten.
void tracker_after_fork_child() noexcept;

// --- writer.cpp, used by the tracker's hot path (rare: a ring half full or more)
void writer_wake() noexcept;
void writer_wake_now() noexcept;

}  // namespace memray::payload
