// Stopping, inspecting and borrowing the threads of a live process with ptrace (x86_64 only).
//
// Everything here restores the target: a Tracer's destructor puts back every code byte it wrote
// and every register it changed (vector state included), re-delivers every signal that arrived
// while it was attached, and detaches from every thread, on every path (exceptions included).
// All calls must come from the thread that created the Tracer (a ptrace rule).
// The target may exit at any time (exit_group, SIGKILL): threads that exit are let go at their
// PTRACE_EVENT_EXIT stop or reaped (__WALL), never waited for without a bound, and any operation
// that loses the process to its exit throws NoSuchProcess("process N exited during attach").
// Nothing stays traced after the destructor, so the target's parent can reap it (a Tracer in
// the parent itself never takes the leader's exit status).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace memray::attach {

// The message is one line meant for the user: what happened, with pid/tid, and what to do.
class AttachError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};
class NoSuchProcess : public AttachError {  // the pid does not exist (or exited during attach)
  public:
    using AttachError::AttachError;
};
class NotPermitted : public AttachError {  // EPERM: root/CAP_SYS_PTRACE, ptrace_scope, traced
  public:
    using AttachError::AttachError;
};
class CallTimeout : public AttachError {  // a remote call did not return in time
  public:
    using AttachError::AttachError;
};
class CallCrashed : public AttachError {  // the called function faulted in the target
  public:
    using AttachError::AttachError;
};

// What /proc says about a process, read without stopping it.
struct ProcessInfo {
    pid_t pid = 0;
    std::string exe;             // readlink /proc/PID/exe
    char state = '?';            // State: letter (R, S, D, T, t, Z, X)
    pid_t tracer = 0;            // TracerPid
    uid_t uid = 0;               // real uid
    int seccomp = 0;             // Seccomp mode
    bool elf64 = true;           // ELF class of /proc/PID/exe
    pid_t pid_in_namespace = 0;  // last field of NSpid
    bool same_mount_namespace = true;
};
// Throws NoSuchProcess/NotPermitted/AttachError with the message the user should see.
ProcessInfo inspect_process(pid_t pid);

// Throws NotPermitted, with the user's way out (root, CAP_SYS_PTRACE, ptrace_scope), when this
// process may not trace `pid` or read its memory; `action` completes "not permitted to ...
// process N" ("trace", "detach from"). NoSuchProcess when it does not exist.
void check_trace_permission(pid_t pid, const std::string& action);

// State letter of thread `tid` of process `pid` from /proc (R, S, D, T, t, Z, X; 0 when gone).
char thread_state(pid_t pid, pid_t tid);

struct Mapping {
    uint64_t start = 0, end = 0, offset = 0;
    std::string perms;  // "r-xp"
    uint64_t dev_major = 0, dev_minor = 0, inode = 0;
    std::string path;  // may be empty, "[heap]", "/memfd:name (deleted)", ...
};
std::vector<Mapping> read_maps(pid_t pid);

// One thread's saved state: general registers and the XSAVE area (NT_X86_XSTATE).
struct ThreadState;

// Registers of a stopped thread as the remote call sees them (a subset of user_regs_struct).
struct Registers {
    uint64_t rip = 0, rsp = 0, rax = 0, orig_rax = 0;
    uint64_t rdi = 0, rsi = 0, rdx = 0;
};

class Tracer {
  public:
    struct Options {
        // Upper bound for every wait on the target (stops, calls).
        std::chrono::milliseconds timeout{5000};
        // Checked between steps; when it returns true the operation in progress is abandoned
        // (the target restored) and Interrupted is thrown. The CLI wires SIGINT/SIGTERM here.
        std::function<bool()> cancelled;
        bool verbose = false;  // progress lines on stderr
    };

    // PTRACE_SEIZEs every thread (rescanning /proc/PID/task until no new one appears, and with
    // PTRACE_O_TRACECLONE so threads created later are traced too). Threads keep running.
    Tracer(pid_t pid, Options options);
    ~Tracer();  // restores and detaches everything (never throws)
    Tracer(const Tracer&) = delete;
    Tracer& operator=(const Tracer&) = delete;

    pid_t pid() const;
    std::vector<pid_t> threads() const;

    // Memory of the target (process_vm_readv/writev, falling back to /proc/PID/mem, which also
    // writes read-only text). Throw AttachError on failure.
    void read_memory(uint64_t address, void* out, size_t size) const;
    void write_memory(uint64_t address, const void* data, size_t size) const;

    // Waits for a thread at a moment where it holds no allocator or loader lock and stops it:
    // plants temporary breakpoints at `entry_points` (e.g. malloc, free; all restored before
    // returning), lets threads run, and takes the first thread that hits one whose stack
    // (libunwind-ptrace) shows no frame inside the dynamic loader or the allocator. If none hits
    // within `breakpoint_wait`, interrupts every thread and picks one blocked in a system call
    // with such a stack. Every other thread keeps running. Throws AttachError if none is found
    // within the timeout. The chosen thread stays stopped until resume() or the destructor.
    pid_t stop_at_safe_point(const std::vector<uint64_t>& entry_points,
                             std::chrono::milliseconds breakpoint_wait);

    // Calls `function(args...)` (at most 6 integer arguments, System V ABI) on the stopped
    // thread `tid`, on a fresh 16-byte-aligned stack area below its red zone, with orig_rax = -1
    // so an interrupted system call is not restarted into the call, and returns rax. Control
    // comes back through a return address of 0 (SIGSEGV at rip 0). Threads the function
    // creates are not traced (no breakpoint is planted during a call). Signals that arrive for `tid`
    // meanwhile are kept and re-delivered when the thread is resumed. The thread's registers and
    // vector state are restored afterwards (also when this throws CallTimeout/CallCrashed).
    uint64_t call(pid_t tid, uint64_t function, const std::vector<uint64_t>& args,
                  std::chrono::milliseconds timeout);

    // Runs the system call `number(args...)` on the stopped thread `tid` (through a `syscall`
    // instruction found in the target's code). Returns the raw result (-errno on failure).
    int64_t syscall(pid_t tid, long number, const std::vector<uint64_t>& args,
                    std::chrono::milliseconds timeout);

    Registers registers(pid_t tid) const;  // of a stopped thread, as it was before any call

    // Resumes `tid` with its original registers and any signal kept for it.
    void resume(pid_t tid);

    // Stops every thread (PTRACE_INTERRUPT) / resumes them all. For tests and inspection.
    void interrupt_all();
    void resume_all();

    // Added by "attach": how the last stop_at_safe_point went, for -v output, tests and bench.
    struct Stats {
        bool from_breakpoint = false;      // true: a thread trapped at an entry point; false: fallback
        int rejected = 0;                  // threads whose stack was not safe
        int64_t unwind_us = 0;             // stack check of the chosen thread (it is stopped meanwhile)
        int64_t max_unwind_us = 0;         // longest stack check of any thread
        int64_t stop_at_safe_point_us = 0; // whole call
    };
    const Stats& stats() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

class Interrupted : public AttachError {  // Options::cancelled returned true
  public:
    using AttachError::AttachError;
};

}  // namespace memray::attach
