// Private to src/attach: the Tracer's state, shared by the files that do its jobs.
//   tracer.cpp          construction, destruction and the public methods (thin forwarding)
//   thread_control.cpp  seizing, the per-thread stop/resume state machine, exits, kept signals,
//                       detaching
//   safe_point.cpp      breakpoints and the stack check that pick a thread holding no lock
//   unwinder.cpp        the stack walk of that check, from what was read before the stop
//   remote_call.cpp     register save/restore (vector state included), call(), syscall()
//   remote_memory.cpp   reading and writing the target's memory
//   proc_files.cpp      everything read from /proc
// Everything runs on the thread that created the Tracer (a ptrace rule), so nothing is locked.
#pragma once

#include "attach/tracer.hpp"
#include "attach/unwinder.hpp"

#include <signal.h>
#include <sys/user.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace memray::attach {

using Clock = std::chrono::steady_clock;

struct ThreadState {
    user_regs_struct regs{};
    std::vector<uint8_t> xstate;  // XSAVE layout, as long as the kernel returned
    uint64_t sigmask = 0;
};

namespace detail {

enum class Run { Running, Stopped, Listening };

struct Thread {
    pid_t tid = 0;
    Run run = Run::Running;
    bool held = false;               // kept stopped for the caller
    bool interrupt_pending = false;  // PTRACE_INTERRUPT sent, stop not seen yet
    bool signal_stop = false;        // current stop is a signal-delivery-stop
    bool saved = false;              // `original` holds the state before any call
    bool modified = false;           // registers/xstate/sigmask differ from `original`
    bool lost = false;               // a ptrace request found it gone: it is dying (see sweep_lost)
    ThreadState original;
    std::vector<siginfo_t> kept;     // signals to deliver when the thread is resumed
};

// What happened to the thread running a remote call or a single step.
struct CallEvent {
    bool seen = false;
    bool exited = false;
    int status = 0;
    siginfo_t info{};
};

struct Range {
    uint64_t start, end;
};

inline std::string hex(uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// While it lives, thread `tid` (of the target or of the CLI) runs in the real-time class
// (SCHED_FIFO, lowest priority) rather than the normal one: a woken thread of the normal class
// can wait for a CPU for a scheduler period or more on a loaded machine (measured: up to 7 ms for
// a redis thread under redis-benchmark, at any nice value, since its process group competes as a
// whole), and while the borrowed thread is held the program waits for it and for us. With
// reset-on-fork, so a thread the remote call starts gets the normal class; skipped for a thread
// not in the normal class or with a negative nice value (its new threads would not inherit that
// exactly). Restored exactly. Without the right (not root, no CAP_SYS_NICE) nothing changes.
class RealTimeBoost {
  public:
    explicit RealTimeBoost(pid_t tid);
    ~RealTimeBoost();
    RealTimeBoost(const RealTimeBoost&) = delete;
    RealTimeBoost& operator=(const RealTimeBoost&) = delete;

    static constexpr size_t k_attr_size = 56;  // the kernel's struct sched_attr (version 1)

  private:
    pid_t m_tid;
    unsigned char m_was[k_attr_size];  // the thread's sched_attr as it was
    bool m_active = false;
};

inline int64_t micros_since(Clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

}  // namespace detail

struct Tracer::Impl {
    using Thread = detail::Thread;
    using Run = detail::Run;

    pid_t pid = 0;
    Options options;
    std::map<pid_t, Thread> threads;
    // Threads that are exiting but still traced by us: each must be reaped (waitpid __WALL) or
    // detached, or it stays a zombie and keeps its thread-group leader from being reaped.
    std::set<pid_t> dying;
    bool parent_is_us = false;  // we are also the target's parent: its exit status is not ours
    bool saw_exit = false;      // a traced thread exited (or was found dying) since attach
    int mem_fd = -1;
    sigset_t saved_mask{};
    bool mask_saved = false;
    bool detaching = false;
    bool stopping_all = false;  // every thread is being stopped: new threads must stop too

    std::map<uint64_t, uint8_t> breakpoints;  // planted: address -> original byte
    std::set<uint64_t> old_breakpoints;       // removed, but a thread may still report its trap
    bool hunting = false;
    std::vector<pid_t> traps;  // threads stopped on a planted breakpoint (rip already fixed)

    pid_t call_tid = 0;
    detail::CallEvent call_event;

    std::unique_ptr<detail::Unwinder> unwinder;  // the stack check's (unwinder.cpp)
    uint64_t syscall_insn = 0;
    Stats stats;

    std::vector<detail::Range> loader_ranges, libc_ranges;  // code of ld.so and libc (stack check)

    // The CLI thread runs in the real-time class for the Tracer's life: the stack check and
    // every step between a thread's stop and its resume are on the borrowed thread's clock.
    std::unique_ptr<detail::RealTimeBoost> cli_boost;

    enum class Wait { Done, Timeout, Cancelled };
    enum class Poll { Nothing, Status, Gone };

    ~Impl() { shutdown(); }

    void log(const std::string& line) const {
        if (options.verbose) std::fprintf(stderr, "memray attach: %s\n", line.c_str());
    }
    std::string who() const { return "process " + std::to_string(pid); }
    std::string who(pid_t tid) const { return "thread " + std::to_string(tid) + " of " + who(); }
    Clock::time_point deadline_in(std::chrono::milliseconds ms) const { return Clock::now() + ms; }

    // The errors callers test for: the process is gone; Options::cancelled (or SIGINT, SIGTERM,
    // SIGHUP) asked to stop.
    NoSuchProcess exited_error() const { return NoSuchProcess(who() + " exited during attach"); }
    Interrupted interrupted_error() const {
        return Interrupted("attach to " + who() + " interrupted");
    }

    // Runs one public operation (tracer.cpp): an error caused by the target exiting meanwhile
    // becomes the one error callers test for.
    template <typename F>
    auto guarded(F f) -> decltype(f());

    // ---- thread_control.cpp: seize, stops and resumes, exits, kept signals, detach ----------
    void attach();
    void add_thread(pid_t tid);
    int seize_new_threads();
    bool take_interrupt(Thread& t);
    bool is_our_int3(uint64_t at) const;      // a planted breakpoint, or one removed meanwhile
    bool our_trap_pending(const Thread& t);  // stopped past one of our int3, its SIGTRAP undelivered
    bool cont(Thread& t, int sig = 0);
    [[noreturn]] void request_failed(pid_t tid, const std::string& what);
    void sweep_lost();
    void release_exiting(pid_t tid);
    void note_call_exit(pid_t tid, int status);
    void handle(pid_t tid, int status);
    Poll poll_one(pid_t tid, int& status);
    Wait pump(Clock::time_point deadline, const std::function<bool()>& done,
              bool cancellable = true);
    bool cancel_requested() const;
    bool all_gone_within_grace();
    [[noreturn]] void thread_gone(pid_t tid, const std::string& what);
    void ensure_alive() const {
        if (threads.empty()) throw exited_error();
    }
    bool process_exited();
    Thread& held_thread(pid_t tid);
    void request_stop_all();
    Wait interrupt_everything(Clock::time_point deadline, bool cancellable);
    int inject_first_kept(Thread& t, const std::vector<siginfo_t>& kept);
    void send_kept(pid_t tid, const std::vector<siginfo_t>& kept, size_t from);
    void deliver_kept_and_resume(Thread& t);
    void resume(pid_t tid);
    bool detach_one(Thread& t) noexcept;
    void shutdown() noexcept;

    // ---- safe_point.cpp: a thread stopped where it holds no allocator or loader lock --------
    void create_unwinder();
    void destroy_unwinder() noexcept;
    void load_ranges();
    bool stack_is_safe(pid_t tid, bool skip_first, std::string& why);
    bool check(pid_t tid, bool skip_first, int64_t& us);
    void plant(const std::vector<uint64_t>& entry_points);
    bool remove_breakpoints() noexcept;
    void step_over(Thread& t, uint64_t at);
    pid_t stop_at_safe_point(const std::vector<uint64_t>& entry_points,
                             std::chrono::milliseconds wait);
    pid_t hunt(const std::vector<uint64_t>& entry_points, Clock::time_point deadline);
    void release_traps(pid_t keep) noexcept;
    pid_t fallback(Clock::time_point overall);

    // ---- remote_call.cpp: borrowing a stopped thread and giving it back intact --------------
    user_regs_struct get_regs(pid_t tid);
    void set_regs(pid_t tid, const user_regs_struct& regs);
    void save_state(Thread& t);
    bool restore_state(Thread& t) noexcept;
    Thread& borrow(pid_t tid, size_t arg_count, const char* kind);
    void trace_clones(pid_t tid, bool on) noexcept;
    user_regs_struct run_remote(Thread& t, user_regs_struct regs, bool single_step,
                                std::chrono::milliseconds timeout, const std::string& what);
    uint64_t call(pid_t tid, uint64_t function, const std::vector<uint64_t>& args,
                  std::chrono::milliseconds timeout);
    uint64_t find_syscall_instruction();
    int64_t syscall(pid_t tid, long number, const std::vector<uint64_t>& args,
                    std::chrono::milliseconds timeout);

    // ---- remote_memory.cpp: the target's memory, through /proc/PID/mem when it must ----------
    void open_memory();
    void close_memory() noexcept;
    void read_mem(uint64_t address, void* out, size_t size) const;
    void write_mem(uint64_t address, const void* data, size_t size) const;
};

}  // namespace memray::attach
