#include "payload/tracker.hpp"

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "payload/fast_unwind.hpp"
#include "payload/lock.hpp"
#include "payload/log.hpp"
#include "payload/native_stack.hpp"
#include "payload/python_stack.hpp"
#include "payload/stack_intern.hpp"
#include "payload/thread_state.hpp"

namespace memray::payload {

__thread bool t_in_tracker __attribute__((tls_model("initial-exec"))) = false;
bool g_clock_tsc = false;

namespace {

// With t_in_tracker, the only initial-exec TLS of the payload (9 bytes with padding to 16).
__thread ThreadState* t_state __attribute__((tls_model("initial-exec"))) = nullptr;

// How tracker_wait_quiescent() makes the hot path's busy flag visible. With membarrier the hot
// path needs only a compiler barrier between "busy = 1" and "enabled?"; without it, a full fence.
enum class Barrier { PrivateExpedited, Global, HotPathFence };

// Written on the cold paths (tracker_init, tracker_begin_session, tracker_set_enabled) by the
// thread that starts or stops tracking, while `enabled` is false, except `enabled` itself; the
// hot path reads everything (`enabled` relaxed, then acquire in enter()). `threads` grows
// lock-free from any thread and is never reset: states are recycled, not freed.
// `objects_changed`: set by the dlopen/dlclose hooks, taken by the writer thread.
struct TrackerState {
    std::atomic<bool> enabled{false};
    std::atomic<uint32_t> session{0};
    bool python = false;  // walk Python frames
    bool native = false;  // walk native frames
    bool fast_unwind = false;   // with our walker (fast_unwind.hpp), else libunwind alone
    bool check_stacks = false;  // MEMRAY_STACK_CHECK: compare the walker with libunwind
    std::atomic<ThreadState*> threads{nullptr};
    std::atomic<bool> objects_changed{false};
    // 1 while a fork is being prepared (tracker_fork_gate_close): recording threads wait in
    // enter() rather than begin, so none is inside an unwind (libunwind's own locks, which a
    // child would inherit held) or a record at the instant of the fork.
    std::atomic<uint32_t> fork_gate{0};
    pthread_key_t exit_key{};
    bool initialized = false;
    Barrier barrier = Barrier::HotPathFence;
    bool hot_fence = true;  // barrier == HotPathFence, read on every event
    // The event clock while one thread records (event_stamp()). solo_coarse: allowed at all
    // (not with the TSC or MEMRAY_EVENT_CLOCK set); `precise` is set for the rest of the
    // session by the second thread that records; `sole` is the first one.
    bool solo_coarse = false;
    std::atomic<bool> precise{true};
    std::atomic<ThreadState*> sole{nullptr};
};
constinit TrackerState g_tracker;

long sys_gettid() noexcept { return syscall(SYS_gettid); }

bool cpu_has_rdtscp() noexcept {
#if defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(0x80000001u, &a, &b, &c, &d) && (d & (1u << 27));
#else
    return false;
#endif
}

// The TSC is the event clock only where the kernel itself trusts it to be synchronized across
// CPUs and constant-rate (it then makes it the clocksource) and rdtscp exists (the ordering
// argument in thread_state.hpp needs it). MEMRAY_EVENT_CLOCK=monotonic forces clock_gettime;
// MEMRAY_EVENT_CLOCK=tsc skips the clocksource check (tests run the TSC path on machines whose
// kernel chose another clocksource, e.g. kvm-clock in a VM) but never the rdtscp one.
bool tsc_usable() noexcept {
#if defined(__x86_64__)
    const char* forced = getenv("MEMRAY_EVENT_CLOCK");
    if (forced && std::strcmp(forced, "monotonic") == 0) return false;
    if (!cpu_has_rdtscp()) return false;
    if (forced && std::strcmp(forced, "tsc") == 0) return true;
    int fd = open("/sys/devices/system/clocksource/clocksource0/current_clocksource",
                  O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[32] = {};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n >= 3 && std::memcmp(buf, "tsc", 3) == 0 && (n == 3 || buf[3] == '\n');
#else
    return false;
#endif
}

void on_thread_exit(void* p) noexcept {
    // The thread may still allocate in later TLS destructors: it keeps its state (t_state is
    // not cleared) and the writer recycles the state only once the tid is gone.
    static_cast<ThreadState*>(p)->status.store(uint32_t(StateStatus::Exited),
                                               std::memory_order_release);
}

// Called with the guard set (pthread_setspecific may allocate).
ThreadState* register_thread() noexcept {
    ThreadState* s = nullptr;
    for (ThreadState* it = g_tracker.threads.load(std::memory_order_acquire); it; it = it->next) {
        uint32_t expected = uint32_t(StateStatus::Free);
        if (it->status.compare_exchange_strong(expected, uint32_t(StateStatus::Live),
                                               std::memory_order_acq_rel)) {
            s = it;
            break;
        }
    }
    if (!s) {
        void* mem = mmap(nullptr, sizeof(ThreadState), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) return nullptr;
        s = new (mem) ThreadState;
        s->status.store(uint32_t(StateStatus::Live), std::memory_order_relaxed);
        ThreadState* head = g_tracker.threads.load(std::memory_order_relaxed);
        do {
            s->next = head;
        } while (!g_tracker.threads.compare_exchange_weak(head, s, std::memory_order_release,
                                                  std::memory_order_relaxed));
    }
    s->tid.store(sys_gettid(), std::memory_order_relaxed);
    s->clock_session = 0;
    s->native_whole = false;
    s->native_outer = 0;
    s->native_trimmed = 0;
    s->until_frames = 0;
    s->cached_tail = s->tail.load(std::memory_order_acquire);
    s->cache.session = 0;
    s->cache.len = 0;
    // The name as of now (a thread that exits before the writer sees it keeps it); renames
    // later come through record_thread_name().
    char comm[16] = {};
    prctl(PR_GET_NAME, comm, 0, 0, 0);
    {
        LockGuard lock(s->name_lock);
        std::memcpy(s->name, comm, sizeof comm);
        s->name[sizeof comm - 1] = '\0';
        s->name_seq.fetch_add(1, std::memory_order_relaxed);
    }
    if (g_tracker.initialized) pthread_setspecific(g_tracker.exit_key, s);
    t_state = s;
    return s;
}

void wait_for_room(ThreadState* s, uint64_t head) noexcept {
    for (;;) {
        uint32_t seq = s->tail_seq.load(std::memory_order_seq_cst);
        s->cached_tail = s->tail.load(std::memory_order_acquire);
        if (head - s->cached_tail < k_ring_capacity) break;
        s->producer_waiting.store(1, std::memory_order_seq_cst);
        writer_wake_now();
        // Bounded sleep: a wakeup lost to a race costs at most this long.
        futex_wait(&s->tail_seq, seq, 2000000);
        s->producer_waiting.store(0, std::memory_order_relaxed);
    }
}

// A thread's first event of a session: the first thread to get here is the sole recorder;
// any other one makes every later stamp precise. Returns whether `s` may stamp coarsely.
__attribute__((noinline)) bool check_in(ThreadState* s) noexcept {
    s->clock_session = g_tracker.session.load(std::memory_order_relaxed);
    ThreadState* expected = nullptr;
    if (g_tracker.sole.compare_exchange_strong(expected, s, std::memory_order_seq_cst) ||
        expected == s)
        return !g_tracker.precise.load(std::memory_order_seq_cst);
    g_tracker.precise.store(true, std::memory_order_seq_cst);
    return false;
}

// The event's stamp. The writer merges the threads' rings by stamp (writer.cpp, cycle()), and
// what has to come out in order are events that are causally related: a free recorded before
// the real free, and the malloc on another thread that got the address back. Their stamps must
// hold stamp(free) <= real time of the free < stamp(malloc). A stamp read before the event's
// real call (a free) may be any lower bound of the time; one read after it (a malloc) must be a
// precise one. While a single thread records, nothing of another thread is related to its
// events, so a lower bound serves for all of them: coarse_ns(), ~4 ns instead of ~30. The second
// thread to record stores `precise` before it stamps or frees anything; a thread that then gets
// back an address it freed has loaded what that thread stored after the flag, so (x86 keeps
// stores in order, and loads in order) its load of the flag, made after the real malloc
// returned, sees it. Per ring, stamps stay monotonic: coarse_ns() never exceeds a later
// now_ns(), and once precise, a session stays precise.
inline uint64_t event_stamp(ThreadState* s) noexcept {
    if (!g_tracker.precise.load(std::memory_order_acquire)) {
        bool checked_in = s->clock_session == g_tracker.session.load(std::memory_order_relaxed);
        if (__builtin_expect(checked_in, 1) || check_in(s)) return coarse_ns();
    }
    return now_ticks();
}

// The ring's lines were last read by the writer thread on another CPU: a store to one waits
// for that CPU to give the line up. Asking for it a few events ahead (a write prefetch: the line
// comes exclusive, not shared) keeps those waits off the hot path; without it the stalled ring
// stores back up the store buffer and the next event's stores (the stack being copied) wait
// behind them. Native churn, 5 M mallocs: 0.6 s CPU with it; without, 0.6 s or 1.3 s depending
// on where the host runs the two CPUs of this VM at the time.
inline constexpr uint64_t k_ring_prefetch = 8;  // events: four 64-byte lines ahead

inline void prefetch_for_write(const void* p) noexcept {
#if defined(__x86_64__)
    // PREFETCHW; CPUs without it execute the opcode as a NOP.
    asm volatile("prefetchw %0" ::"m"(*static_cast<const char*>(p)));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

// Half full: make sure the writer comes soon (a writer pacing itself comes anyway). Three
// quarters: it is late (a pass that compressed a block, a host that did not run it), wake it now
// rather than stall when the ring is full.
__attribute__((noinline)) void ring_filling(ThreadState* s, uint64_t head) noexcept {
    uint64_t known = head - s->cached_tail;
    if (known < k_ring_capacity / 2) return;
    s->cached_tail = s->tail.load(std::memory_order_acquire);
    uint64_t fill = head - s->cached_tail;
    if (known >= k_ring_capacity / 4 * 3 && fill >= k_ring_capacity / 2) writer_wake_now();
    else if (fill >= k_ring_capacity / 4) writer_wake();
}

// Waits for room *before* the event is stamped: a thread that stamped and then slept on a full
// ring would hand the writer an event older than ones it already wrote for other threads.
inline void push(ThreadState* s, uint64_t address, uint64_t size, uint32_t node,
                 format::Allocator kind) noexcept {
    uint64_t h = s->head.load(std::memory_order_relaxed);
    if (h - s->cached_tail >= k_ring_capacity) {
        s->cached_tail = s->tail.load(std::memory_order_acquire);
        if (h - s->cached_tail >= k_ring_capacity) wait_for_room(s, h);
    }
    RawEvent& e = s->ring[h & k_ring_mask];
    prefetch_for_write(&s->ring[(h + k_ring_prefetch) & k_ring_mask]);
    e.time = event_stamp(s);
    e.address = address;
    e.size = size;
    e.node = node;
    e.kind = uint8_t(kind);
    s->head.store(h + 1, std::memory_order_release);
    // At each quarter of the ring (as far as this thread knows): one test on the hot path.
    if (__builtin_expect(((h + 1 - s->cached_tail) & (k_ring_capacity / 4 - 1)) == 0, 0))
        ring_filling(s, h + 1);
}

// A fork is being prepared: wait, not busy, until it is done (tracker_fork_gate_open).
__attribute__((noinline, cold)) void wait_for_fork() noexcept {
    while (g_tracker.fork_gate.load(std::memory_order_acquire) != 0)
        futex_wait(&g_tracker.fork_gate, 1, 1000000);
}

// Sets busy and re-checks `enabled` (see tracker_wait_quiescent) and the fork gate. Returns the
// state with the guard and busy set, or nullptr with nothing set.
inline ThreadState* enter() noexcept {
    t_in_tracker = true;
    ThreadState* s = t_state;
    if (__builtin_expect(s == nullptr, 0)) {
        s = register_thread();
        if (!s) {
            t_in_tracker = false;
            return nullptr;
        }
    }
    for (;;) {
        s->busy.store(1, std::memory_order_relaxed);
        if (g_tracker.hot_fence) std::atomic_thread_fence(std::memory_order_seq_cst);
        else std::atomic_signal_fence(std::memory_order_seq_cst);
        if (!g_tracker.enabled.load(std::memory_order_acquire)) {
            s->busy.store(0, std::memory_order_release);
            t_in_tracker = false;
            return nullptr;
        }
        if (__builtin_expect(g_tracker.fork_gate.load(std::memory_order_relaxed) == 0, 1)) return s;
        s->busy.store(0, std::memory_order_release);
        wait_for_fork();
    }
}

inline void leave(ThreadState* s) noexcept {
    s->busy.store(0, std::memory_order_release);
    t_in_tracker = false;
}

// MEMRAY_STACK_CHECK: libunwind's frames for the same event, compared with the walk's (the
// payload's own frames dropped from both: the two start at different places in this function).
// `until`: fast_unwind_walk_until() walked; `prefix`: it stopped early, so its frames are
// libunwind's first ones.
__attribute__((noinline, cold)) void check_walk(ThreadState* s, int got, bool until,
                                                bool prefix) noexcept {
    void** buf = reinterpret_cast<void**>(s->check_frames);
    int want = unw_backtrace(buf, int(k_max_native_frames + k_native_self_room));
    size_t nw = native_drop_self(buf, want, s->check_frames, k_max_native_frames);
    if (got < 0) {
        fast_unwind_count_check(false, true, false, false);
        return;
    }
    uintptr_t mine[k_max_native_frames];
    size_t nm = native_drop_self(reinterpret_cast<void* const*>(s->native_frames), got, mine,
                                 k_max_native_frames);
    bool same = prefix ? nm <= nw : nm == nw;
    for (size_t i = 0; same && i < nm; ++i) same = mine[i] == s->check_frames[i];
    if (!same) {
        size_t i = 0;
        while (i < nm && i < nw && mine[i] == s->check_frames[i]) ++i;
        log(LogLevel::Warning, "stack check: walk %zu frames, libunwind %zu, first difference at "
                             "%zu: %#lx against %#lx",
            nm, nw, i, i < nm ? (unsigned long)mine[i] : 0ul,
            i < nw ? (unsigned long)s->check_frames[i] : 0ul);
    }
    // fast_unwind_walk_until() does not use the history: its `resumed` is an older walk's.
    fast_unwind_count_check(same, false, !until && s->unwind_history.resumed, prefix);
}

inline void set_native_frame(StackFrame& f, uintptr_t ip) noexcept {
    f.value = ip;
    f.fingerprint = 0;
    f.offset = 0;
    f.kind = uint32_t(format::FrameKind::Native);
}

#if defined(__x86_64__)
// The registers of the program's frame that called into the payload, as at its call: the
// payload is built with frame pointers, so each of its frames holds its caller's rbp at [rbp]
// and the return address above it, and that frame's rsp after the return is rbp + 16. Three
// or so frames (this one, the hook, a helper), read without a rule lookup each: with --native
// on Python the walk looked up a rule for 4 frames per event, most of them the payload's own.
// False when the chain leaves the stack or stays in the payload: the rules then walk it.
__attribute__((always_inline)) inline bool program_caller(uintptr_t& ip, uintptr_t& sp,
                                                          uintptr_t& bp) noexcept {
    auto fp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
    uintptr_t below = reinterpret_cast<uintptr_t>(&fp);  // inside this frame
    for (size_t i = 0; i < k_native_self_room; ++i) {
        // Frames move up the stack, by less than a megabyte here.
        if (fp <= below || fp - below > (uintptr_t(1) << 20) || (fp & 7)) return false;
        const auto* slot = reinterpret_cast<const uintptr_t*>(fp);
        uintptr_t ra = slot[1];
        if (ra < g_self_lo || ra >= g_self_hi) {
            ip = ra;
            sp = fp + 16;
            bp = slot[0];
            return true;
        }
        below = fp;
        fp = slot[0];
    }
    return false;
}
#endif

// fast_unwind_walk_until() walks a rooted stack only while the previous one needed at most this
// many frames (ThreadState::until_frames). A frame by its rule costs several times what the
// history's re-read of one does: PYTHONMALLOC=malloc --native, against the history's walk, 3.11
// and 3.13 py_alloc (~5 frames) 0.86x and 0.90x, but 3.10 with 4 Python frames (~12) 1.05x, 8
// (~24) 1.21x, 32 1.8x; with 8 here those three take the history (1.00x, 0.99x, 1.01x).
inline constexpr uint32_t k_until_max_frames = 8;

// Inlined into record_allocation so that unw_backtrace's first frame is the hook's callee.
__attribute__((always_inline)) inline uint32_t capture_stack(ThreadState* s) noexcept {
    // The path interned, from the root: the native frames outside the innermost eval-loop call
    // (_PyEval_EvalFrameDefault), the Python frames, then that eval-loop frame and the native
    // frames its call made (the allocation's C call site: PyUnicode_New, PyObject_Malloc, ...).
    // The thread's previous stack (PrefixCache) then shares the most: the outer native part
    // rarely changes, the Python part changes at its innermost frame, and the eval-loop frame
    // (its return address names the bytecode's handler) and the call site change from event to
    // event, so they come last. With the eval-loop frame before the Python frames, every event
    // looked all the Python frames up again (a tenth of a PYTHONMALLOC=malloc --native run);
    // with the call site before them, each new one gave all of them new nodes. Readers take the
    // two kinds apart again (docs/capture-format.md). Without an eval-loop frame (not Python,
    // or C code's own thread) the native part comes first.
    size_t n = 0;
    size_t known = 0;  // outermost frames equal to the previous stack's (intern_stack)
    size_t inner = 0;  // native frames after the Python ones: program[0, inner)
    const uintptr_t* program = nullptr;  // the program's native frames, innermost first
    const uint32_t session = g_tracker.session.load(std::memory_order_relaxed);
    // Under `memray run` the Python walk ends at the bootstrap's root frame (the launcher's frames
    // outside it are in every stack, and reports start at the user's outermost frame); with
    // native frames, only where the eval loop's code is known (to leave the native frames
    // outside out as well, below).
    size_t np = 0;
    bool rooted = false;
    size_t groups = 0;  // of a rooted walk: the eval-loop calls that run its Python frames
    if (g_tracker.python) {
        bool stop = !g_tracker.native || g_eval_hi != 0;
        np = python_walk(s->py_frames, k_max_python_frames, stop, &rooted);
        // One per entry frame, and one for frames outside the outermost entry frame.
        if (rooted && g_tracker.native) {
            groups = np > 0 && !s->py_frames[np - 1].entry ? 1 : 0;
            for (size_t i = 0; i < np; ++i) groups += s->py_frames[i].entry ? 1 : 0;
        }
    }
    if (g_tracker.native) {
        // In place: native_frames has room for the payload's own frames, which are dropped.
        void** buf = reinterpret_cast<void**>(s->native_frames);
        constexpr int k_room = int(k_max_native_frames + k_native_self_room);
        int got = -1;
        size_t reused = 0;
        bool until = false;    // fast_unwind_walk_until() gave the frames (not the history)
        bool stopped = false;  // ... and ended at the eval-loop call of the outermost group
#if defined(__x86_64__)
        if (g_tracker.fast_unwind) {
            // The walk starts at the program's frame that called the hook, reached through the
            // payload's frame pointers; failing that, at this frame, with its own registers
            // (and the payload's frames are walked by their rules, then dropped).
            uintptr_t ip, sp, bp;
            bool returned_to = program_caller(ip, sp, bp);
            if (!returned_to) {
                asm volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2"
                             : "=r"(ip), "=r"(sp), "=r"(bp));
            }
            // Nothing outside the eval-loop call that runs the outermost Python frames is kept
            // (below), so a rooted walk ends there: a few frames by their rules, instead of the
            // history's ~20 frames out to _start re-read and copied (0.89x PYTHONMALLOC=malloc
            // --native). What it walks is left out of the history. Only while the previous
            // rooted stack got there within k_until_max_frames: before 3.11 each Python frame
            // has its own eval-loop call, and the history walks such stacks for less.
            if (groups > 0 && s->until_frames <= k_until_max_frames) {
                // A stack much deeper than the previous one goes to the history after a few
                // frames more, not after all of them.
                constexpr int k_budget = 4 * int(k_until_max_frames);
                got = fast_unwind_walk_until(ip, sp, bp, returned_to, s->native_frames, k_budget,
                                             s->rule_cache, g_eval_lo, g_eval_hi, groups, stopped);
                if (got == k_budget && !stopped) got = -1;
                until = got >= 0;
            }
            if (got < 0) {
                got = fast_unwind_walk(ip, sp, bp, returned_to, s->native_frames, k_room,
                                       s->rule_cache, s->unwind_history);
                if (got >= 0) reused = s->unwind_history.reused;
            }
            if (__builtin_expect(g_tracker.check_stacks, 0)) check_walk(s, got, until, stopped);
        }
#endif
        if (got < 0) got = unw_backtrace(buf, k_room);
        // Read in place after the payload's own frames, not moved down first: one pass.
        int self = got > 0 ? native_self_frames(buf, got) : 0;
        size_t total = got > self ? size_t(got - self) : 0;
        size_t nn = total < k_max_native_frames ? total : k_max_native_frames;
        const bool whole = total == nn;
        program = s->native_frames + self;
        // The native frames outside the user's outermost Python frame go too. Reports pair
        // each eval-loop call of the native stack with the Python frames it runs (out to an
        // entry frame) and end the stack with the user's outermost frame, so the native stack
        // can end at the call that runs that frame: the one of the walk's outermost group, the
        // calls counted from the innermost. Kept, they and the launcher's Python frames were
        // walked, copied and compared on every event (a tenth of a PYTHONMALLOC=malloc
        // --native run). When the two do not pair up, the launcher's frames are walked after
        // all and nothing is left out.
        size_t trimmed = 0;
        if (rooted) {
            size_t seen = 0;
            for (size_t j = 0; whole && groups > 0 && j < nn; ++j) {
                if (in_eval_loop(program[j]) && ++seen == groups) {
                    trimmed = nn - 1 - j;
                    break;
                }
            }
            if (!whole || groups == 0 || seen != groups) {
                np = python_walk(s->py_frames, k_max_python_frames, false);
                trimmed = 0;
                s->until_frames = UINT32_MAX;
            } else {
                s->until_frames = uint32_t(self) + uint32_t(nn - trimmed);
            }
            nn -= trimmed;
        }
        // The walker's reused frames are the outermost of the whole walk: as many fewer are
        // known to equal the previous stack's, when that one left out as many.
        reused = trimmed == s->native_trimmed && reused >= trimmed ? reused - trimmed : 0;
        s->native_trimmed = uint32_t(trimmed);
        // The walker took the outermost `reused` frames over from the previous walk, whose
        // stack the prefix cache holds: those need neither copying nor comparing (with --native
        // on Python, ~20 of ~25 frames per event). Only when neither stack was cut, and the
        // cache is this session's and that long. The walk's self frames are its innermost, so
        // the reused part holds min(reused, nn) program frames, in both walks.
        if (reused > nn) reused = nn;
        if (whole && s->native_whole && s->cache.session == session && reused <= s->cache.len)
            known = reused;
        // The history did not see a walk_until walk: its reused frames of a later walk are then
        // not known to start the stack kept now.
        s->native_whole = whole && !until;
        // The innermost eval-loop frame and the call site inside it (none without one).
        if (g_tracker.python && g_eval_hi) {
            while (inner < nn && !in_eval_loop(program[inner])) ++inner;
            inner = inner == nn ? 0 : inner + 1;
        }
        const size_t outer = nn - inner;
        // The kept stack starts with the same frames only as far as both put native frames first.
        if (known > outer) known = outer;
        if (known > s->native_outer) known = s->native_outer;
        s->native_outer = uint32_t(outer);
        for (size_t j = known; j < outer; ++j) set_native_frame(s->frames[j], program[nn - 1 - j]);
        n = outer;
    }
    if (g_tracker.python) {
        for (size_t i = np; i-- > 0;) {
            StackFrame& f = s->frames[n++];
            f.value = uint64_t(uintptr_t(s->py_frames[i].code));
            f.fingerprint = s->py_frames[i].fingerprint;
            f.offset = s->py_frames[i].offset;
            f.kind = uint32_t(s->py_frames[i].entry ? format::FrameKind::PythonEntry
                                                    : format::FrameKind::Python);
        }
    }
    for (size_t j = inner; j-- > 0;) set_native_frame(s->frames[n++], program[j]);
    return intern_stack(s->cache, session, s->frames, n, known);
}

}  // namespace

bool tracking_enabled() noexcept { return g_tracker.enabled.load(std::memory_order_relaxed); }

void record_allocation(format::Allocator kind, const void* address, size_t size) noexcept {
    if (t_in_tracker || !g_tracker.enabled.load(std::memory_order_relaxed)) return;
    ThreadState* s = enter();
    if (!s) return;
    uint32_t node = capture_stack(s);
    push(s, uint64_t(uintptr_t(address)), size, node, kind);
    leave(s);
}

void record_deallocation(format::Allocator kind, const void* address, size_t size) noexcept {
    if (t_in_tracker || !g_tracker.enabled.load(std::memory_order_relaxed)) return;
    ThreadState* s = enter();
    if (!s) return;
    push(s, uint64_t(uintptr_t(address)), size, 0, kind);
    leave(s);
}

void record_thread_name(long tid, const char* name) noexcept {
    if (t_in_tracker) return;
    t_in_tracker = true;
    ThreadState* target = nullptr;
    long self = sys_gettid();
    if (tid <= 0 || tid == self) {
        target = t_state ? t_state : register_thread();
    } else {
        ThreadState* first = g_tracker.threads.load(std::memory_order_acquire);
        for (ThreadState* it = first; it; it = it->next) {
            if (it->status.load(std::memory_order_acquire) == uint32_t(StateStatus::Live) &&
                it->tid.load(std::memory_order_relaxed) == tid) {
                target = it;
                break;
            }
        }
    }
    // A thread without a state yet gets its name from /proc when the writer first sees it.
    if (target) {
        LockGuard lock(target->name_lock);
        size_t n = 0;
        if (name) {
            while (name[n] && n < sizeof target->name - 1) ++n;
            std::memcpy(target->name, name, n);
        }
        target->name[n] = '\0';
        target->name_seq.fetch_add(1, std::memory_order_release);
    }
    t_in_tracker = false;
}

void notify_objects_changed() noexcept {
    g_tracker.objects_changed.store(true, std::memory_order_release);
}

// --- cold paths

bool tracker_init() noexcept {
    if (g_tracker.initialized) return true;
    if (!intern_init()) return false;
    if (pthread_key_create(&g_tracker.exit_key, on_thread_exit) != 0) return false;
    long mask = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (mask > 0 && (mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0) {
        g_tracker.barrier = Barrier::PrivateExpedited;
    } else if (mask > 0 && (mask & MEMBARRIER_CMD_GLOBAL)) {
        g_tracker.barrier = Barrier::Global;
    } else {
        g_tracker.barrier = Barrier::HotPathFence;
    }
    g_tracker.hot_fence = g_tracker.barrier == Barrier::HotPathFence;
    g_clock_tsc = tsc_usable();
    const char* forced = getenv("MEMRAY_EVENT_CLOCK");
    g_tracker.solo_coarse = !g_clock_tsc && !(forced && *forced);
    if (forced && *forced && std::strcmp(forced, "tsc") != 0 && std::strcmp(forced, "monotonic") != 0)
        log(LogLevel::Warning, "MEMRAY_EVENT_CLOCK=%s ignored: use tsc or monotonic", forced);
    else if (forced && std::strcmp(forced, "tsc") == 0 && !g_clock_tsc)
        log(LogLevel::Warning, "MEMRAY_EVENT_CLOCK=tsc ignored: this CPU has no rdtscp");
    log(LogLevel::Debug, "event clock: %s", g_clock_tsc ? "tsc"
                                            : g_tracker.solo_coarse
                                                ? "monotonic (coarse while one thread records)"
                                                : "monotonic");
    g_tracker.initialized = true;
    // Threads that recorded before init (none in practice) get their exit key lazily.
    if (t_state) pthread_setspecific(g_tracker.exit_key, t_state);
    return true;
}

void tracker_set_event_clock(bool tsc, bool solo_coarse) noexcept {
    g_clock_tsc = tsc && tsc_usable();
    g_tracker.solo_coarse = solo_coarse && !g_clock_tsc;
}

void tracker_begin_session(bool python, bool native) noexcept {
    intern_reset();
    g_tracker.python = python;
    g_tracker.native = native;
    // Read once here rather than per event (native_stack_init() has read the environment).
    g_tracker.fast_unwind = fast_unwind_enabled();
    g_tracker.check_stacks = fast_unwind_checking();
    g_tracker.sole.store(nullptr, std::memory_order_relaxed);
    g_tracker.precise.store(!g_tracker.solo_coarse, std::memory_order_relaxed);
    g_tracker.session.fetch_add(1, std::memory_order_release);
}

uint32_t tracker_session() noexcept { return g_tracker.session.load(std::memory_order_acquire); }

void tracker_set_enabled(bool on) noexcept {
    g_tracker.enabled.store(on, std::memory_order_seq_cst);
}

namespace {

// A thread that read enabled == true (or the fork gate open) had stored busy = 1 before; the
// barrier makes that store visible here (every thread passes a full barrier), so a scan of the
// busy flags after it cannot miss it.
void make_busy_flags_visible() noexcept {
    if (g_tracker.barrier == Barrier::PrivateExpedited) {
        if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
            syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
        }
    } else if (g_tracker.barrier == Barrier::Global) {
        syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
    } else {
        std::atomic_thread_fence(std::memory_order_seq_cst);
    }
}

void wait_while_busy(const ThreadState* except) noexcept {
    for (ThreadState* it = g_tracker.threads.load(std::memory_order_acquire); it; it = it->next) {
        if (it == except) continue;
        while (it->busy.load(std::memory_order_acquire)) {
            timespec ts{0, 50000};
            nanosleep(&ts, nullptr);
        }
    }
}

}  // namespace

void tracker_wait_quiescent() noexcept {
    make_busy_flags_visible();
    wait_while_busy(nullptr);
}

void tracker_fork_gate_close() noexcept {
    if (!g_tracker.initialized) return;
    g_tracker.fork_gate.store(1, std::memory_order_seq_cst);
    make_busy_flags_visible();
    wait_while_busy(t_state);  // the forking thread is not inside a record
}

void tracker_fork_gate_open() noexcept {
    g_tracker.fork_gate.store(0, std::memory_order_release);
    futex_wake(&g_tracker.fork_gate, INT32_MAX);
}

ThreadState* thread_list() noexcept { return g_tracker.threads.load(std::memory_order_acquire); }

bool tracker_take_objects_changed() noexcept {
    return g_tracker.objects_changed.exchange(false, std::memory_order_acq_rel);
}

void tracker_after_fork_child() noexcept {
    g_tracker.enabled.store(false, std::memory_order_relaxed);
    g_tracker.fork_gate.store(0, std::memory_order_relaxed);  // nobody else waits here
    ThreadState* self = t_state;
    for (ThreadState* it = g_tracker.threads.load(std::memory_order_relaxed); it; it = it->next) {
        // Events of the parent belong to the parent's capture; the child drops its copies.
        it->tail.store(it->head.load(std::memory_order_relaxed), std::memory_order_relaxed);
        it->cached_tail = it->head.load(std::memory_order_relaxed);
        it->busy.store(0, std::memory_order_relaxed);
        it->producer_waiting.store(0, std::memory_order_relaxed);
        it->writer_session = 0;
        it->name_lock.reset_in_child();
        if (it == self) it->tid.store(sys_gettid(), std::memory_order_relaxed);
        else it->status.store(uint32_t(StateStatus::Free), std::memory_order_relaxed);
    }
    intern_after_fork_child();
}

}  // namespace memray::payload
