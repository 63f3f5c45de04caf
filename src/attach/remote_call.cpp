// Borrowing a stopped thread: its registers, vector state (XSAVE) and signal mask saved once and
// restored on every path; a function call (System V ABI, returning to address 0) or a system
// call (through a `syscall` instruction in the target's code) run on it under a deadline, with
// crashes, timeouts, cancellation and signals that arrive meanwhile told apart.
#include "attach/proc_files.hpp"
#include "attach/tracer_impl.hpp"

#include <cpuid.h>
#include <elf.h>
#include <pthread.h>
#include <sys/ptrace.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace memray::attach {

using detail::hex;

namespace {

constexpr uint64_t k_dflag = 1u << 10;
constexpr uint64_t k_tflag = 1u << 8;
constexpr size_t k_red_zone = 128;

bool is_fault_signal(int sig) {
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP ||
           sig == SIGSYS || sig == SIGABRT;
}

// Blocking a fault signal would make the kernel reset the target's handler to SIG_DFL when the
// call faults, so only asynchronous signals are blocked on the borrowed thread.
uint64_t call_sigmask() {
    uint64_t mask = ~uint64_t{0};
    for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGABRT, SIGKILL, SIGSTOP})
        mask &= ~(uint64_t{1} << (sig - 1));
    return mask;
}

size_t xstate_size() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    // Leaf 0xD sub-leaf 0: ecx = XSAVE area size for every feature the CPU supports.
    if (__get_cpuid_count(0xD, 0, &eax, &ebx, &ecx, &edx) && ecx >= 512) return ecx;
    return 4096;
}

struct CliSignalBlock {
    // The kernel resumes the target with our registers if the CLI dies mid-call (§10).
    sigset_t old{};
    CliSignalBlock() {
        sigset_t block;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &block, &old);
    }
    ~CliSignalBlock() { pthread_sigmask(SIG_SETMASK, &old, nullptr); }
};

}  // namespace

namespace detail {

namespace {

// The kernel's struct sched_attr (its header clashes with glibc's <sched.h>).
struct SchedAttr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
    uint32_t sched_util_min, sched_util_max;
};
static_assert(sizeof(SchedAttr) == RealTimeBoost::k_attr_size);
constexpr uint64_t k_sched_flag_reset_on_fork = 0x01;

}  // namespace

RealTimeBoost::RealTimeBoost(pid_t tid) : m_tid(tid) {
    SchedAttr was{};
    if (::syscall(SYS_sched_getattr, tid, &was, sizeof was, 0) != 0) return;
    if (was.sched_policy != SCHED_OTHER || was.sched_nice < 0) return;
    SchedAttr boost{};
    boost.size = sizeof boost;
    boost.sched_policy = SCHED_FIFO;
    boost.sched_priority = 1;
    boost.sched_flags = k_sched_flag_reset_on_fork;
    if (::syscall(SYS_sched_setattr, tid, &boost, 0) == 0) {
        was.size = sizeof was;
        std::memcpy(m_was, &was, sizeof was);
        m_active = true;
    }
}

RealTimeBoost::~RealTimeBoost() {
    if (m_active) ::syscall(SYS_sched_setattr, m_tid, m_was, 0);
}

}  // namespace detail

user_regs_struct Tracer::Impl::get_regs(pid_t tid) {
    user_regs_struct regs{};
    if (::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) request_failed(tid, "read registers");
    return regs;
}

void Tracer::Impl::set_regs(pid_t tid, const user_regs_struct& regs) {
    if (::ptrace(PTRACE_SETREGS, tid, nullptr, &regs) != 0) request_failed(tid, "set registers");
}

void Tracer::Impl::save_state(Thread& t) {
    if (t.saved) return;
    t.original.regs = get_regs(t.tid);
    t.original.xstate.assign(xstate_size(), 0);
    iovec iov{t.original.xstate.data(), t.original.xstate.size()};
    if (::ptrace(PTRACE_GETREGSET, t.tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0)
        request_failed(t.tid, "read vector registers");
    t.original.xstate.resize(iov.iov_len);
    if (::ptrace(PTRACE_GETSIGMASK, t.tid, reinterpret_cast<void*>(sizeof(uint64_t)),
                 &t.original.sigmask) != 0)
        request_failed(t.tid, "read the signal mask");
    t.saved = true;
}

// Never throws: used on error paths and in the destructor.
bool Tracer::Impl::restore_state(Thread& t) noexcept {
    if (!t.saved || !t.modified) return true;
    int err = 0;
    auto step = [&](bool done) {
        if (!done && !err) err = errno;
    };
    step(::ptrace(PTRACE_SETREGS, t.tid, nullptr, &t.original.regs) == 0);
    iovec iov{t.original.xstate.data(), t.original.xstate.size()};
    step(::ptrace(PTRACE_SETREGSET, t.tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) == 0);
    step(::ptrace(PTRACE_SETSIGMASK, t.tid, reinterpret_cast<void*>(sizeof(uint64_t)),
                  &t.original.sigmask) == 0);
    if (!err) {
        t.modified = false;
        return true;
    }
    if (err == ESRCH) t.lost = true;  // killed while stopped: nothing left to restore
    else log("could not restore thread " + std::to_string(t.tid) + ": " + strerror(err));
    errno = err;
    return false;
}

// Runs the prepared registers on `t` until it stops for a reason call() understands.
// Returns the final registers; throws after restoring on crash, timeout or cancellation.
user_regs_struct Tracer::Impl::run_remote(Thread& t, user_regs_struct regs, bool single_step,
                                          std::chrono::milliseconds timeout,
                                          const std::string& what) {
    CliSignalBlock block;
    const pid_t tid = t.tid;
    detail::RealTimeBoost borrowed(tid);
    auto restore = [&] {
        auto it = threads.find(tid);  // `t` may be gone: the thread can die meanwhile
        if (it != threads.end()) restore_state(it->second);
    };
    auto fail = [&](auto exception) {
        call_tid = 0;
        restore();
        throw exception;
    };
    auto interrupted_call = [&] {
        return Interrupted(what + " in " + who() + " interrupted; target restored");
    };
    auto timeout_error = [&](const char* tail) {
        return CallTimeout(what + " in " + who(tid) + " did not return within " +
                           std::to_string(timeout.count()) + " ms" + tail);
    };
    try {
        set_regs(tid, regs);
        t.modified = true;
        uint64_t mask = call_sigmask();
        ::ptrace(PTRACE_SETSIGMASK, tid, reinterpret_cast<void*>(sizeof mask), &mask);
    } catch (...) {
        restore();
        throw;
    }
    call_tid = tid;
    auto deadline = Clock::now() + timeout;
    bool interrupted = false;
    bool timed_out = false;
    for (;;) {
        call_event = {};
        auto it = threads.find(tid);
        if (it == threads.end()) break;
        it->second.signal_stop = false;
        long req = single_step ? PTRACE_SINGLESTEP : PTRACE_CONT;
        if (::ptrace(static_cast<__ptrace_request>(req), tid, nullptr, nullptr) != 0) {
            it->second.lost = true;  // killed while stopped
            break;
        }
        it->second.run = Run::Running;
        Wait w = pump(deadline, [&] { return call_event.seen; });
        if (w != Wait::Done) {
            // Take the thread back: it may still be inside the callee.
            timed_out = w == Wait::Timeout;
            interrupted = w == Wait::Cancelled;
            auto jt = threads.find(tid);
            if (jt != threads.end() && ::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) == 0)
                jt->second.interrupt_pending = true;
            pump(Clock::now() + std::chrono::milliseconds(1000), [&] { return call_event.seen; }, false);
        }
        if (!call_event.seen) break;
        if (call_event.exited)
            fail(CallCrashed(what + " in " + who(tid) + ": the thread exited (status " +
                             std::to_string(call_event.status) + ")"));
        Thread& c = threads.at(tid);
        int status = call_event.status;
        int sig = WSTOPSIG(status);
        if ((status >> 16) == PTRACE_EVENT_STOP) {
            if (interrupted) fail(interrupted_call());
            if (timed_out) fail(timeout_error("; registers restored"));
            continue;
        }
        user_regs_struct now = get_regs(tid);
        if (!single_step && sig == SIGSEGV && now.rip == 0) {
            // Also when it returned just as we gave up: the result is valid.
            call_tid = 0;
            c.held = true;
            return now;
        }
        if (single_step && sig == SIGTRAP && call_event.info.si_code != SI_KERNEL) {
            call_tid = 0;
            c.held = true;
            return now;
        }
        if (is_fault_signal(sig)) {
            std::string detail = std::string(strsignal(sig)) + " at " + hex(now.rip);
            if (sig == SIGSEGV || sig == SIGBUS)
                detail += " (address " + hex(reinterpret_cast<uint64_t>(call_event.info.si_addr)) + ")";
            fail(CallCrashed(what + " crashed in " + who(tid) + ": " + detail +
                             "; registers restored, the target keeps running"));
        }
        c.kept.push_back(call_event.info);  // asynchronous signal: deliver after the call
        if (timed_out || interrupted) {
            // The thread stopped for a signal after we gave up: we hold it now.
            if (interrupted) fail(interrupted_call());
            fail(timeout_error(""));
        }
    }
    call_tid = 0;
    thread_gone(tid, what);
}

void Tracer::Impl::trace_clones(pid_t tid, bool on) noexcept {
    long options = PTRACE_O_TRACEEXIT | (on ? PTRACE_O_TRACECLONE : 0);
    ::ptrace(PTRACE_SETOPTIONS, tid, nullptr, reinterpret_cast<void*>(options));  // ESRCH: gone
}

// The checks before borrowing `tid`, and its state saved for the restore afterwards.
detail::Thread& Tracer::Impl::borrow(pid_t tid, size_t arg_count, const char* kind) {
    if (arg_count > 6) throw AttachError(std::string(kind) + " with more than 6 arguments");
    if (cancel_requested()) throw interrupted_error();
    Thread& t = held_thread(tid);
    save_state(t);
    return t;
}

uint64_t Tracer::Impl::call(pid_t tid, uint64_t function, const std::vector<uint64_t>& args,
                           std::chrono::milliseconds timeout) {
    Thread& t = borrow(tid, args.size(), "remote call");
    user_regs_struct regs = t.original.regs;
    uint64_t sp = (regs.rsp - k_red_zone) & ~uint64_t{15};
    sp -= 8;  // the return address: rsp % 16 == 8 at entry, as after a real call
    const uint64_t zero = 0;
    write_mem(sp, &zero, sizeof zero);
    regs.rsp = sp;
    regs.rip = function;
    regs.orig_rax = ~uint64_t{0};  // not in a system call: no restart into our code
    regs.rax = 0;
    regs.eflags &= ~(k_dflag | k_tflag);
    unsigned long long* slots[] = {&regs.rdi, &regs.rsi, &regs.rdx, &regs.rcx, &regs.r8, &regs.r9};
    for (size_t i = 0; i < args.size(); ++i) *slots[i] = args[i];
    std::string what = "call of " + hex(function);
    // Threads the callee creates (the payload's control thread) are left untraced: tracing
    // them would hold the borrowed thread for two more round trips through us (the clone
    // event, the child's first stop), and nothing needs them stopped.
    trace_clones(tid, false);
    user_regs_struct result;
    try {
        result = run_remote(t, regs, false, timeout, what);
    } catch (...) {
        trace_clones(tid, true);
        throw;
    }
    trace_clones(tid, true);
    Thread& c = threads.at(tid);
    restore_state(c);
    return result.rax;
}

uint64_t Tracer::Impl::find_syscall_instruction() {
    if (syscall_insn) return syscall_insn;
    for (const Mapping& m : read_maps(pid)) {
        if (m.perms.size() < 3 || m.perms[2] != 'x') continue;
        if (!proc::is_libc(m.path) && m.path != "[vdso]") continue;
        std::vector<uint8_t> buf(65536);
        for (uint64_t a = m.start; a < m.end; a += buf.size() - 1) {
            size_t n = std::min<uint64_t>(buf.size(), m.end - a);
            try {
                read_mem(a, buf.data(), n);
            } catch (const AttachError&) {
                break;
            }
            for (size_t i = 0; i + 1 < n; ++i)
                if (buf[i] == 0x0f && buf[i + 1] == 0x05) return syscall_insn = a + i;
        }
    }
    throw AttachError("no syscall instruction found in the code of " + who());
}

int64_t Tracer::Impl::syscall(pid_t tid, long number, const std::vector<uint64_t>& args,
                              std::chrono::milliseconds timeout) {
    Thread& t = borrow(tid, args.size(), "system call");
    uint64_t insn = find_syscall_instruction();
    user_regs_struct regs = t.original.regs;
    regs.rip = insn;
    regs.rax = static_cast<uint64_t>(number);
    regs.orig_rax = ~uint64_t{0};
    regs.eflags &= ~(k_dflag | k_tflag);
    unsigned long long* slots[] = {&regs.rdi, &regs.rsi, &regs.rdx, &regs.r10, &regs.r8, &regs.r9};
    for (size_t i = 0; i < args.size(); ++i) *slots[i] = args[i];
    std::string what = "system call " + std::to_string(number);
    for (;;) {
        user_regs_struct result = run_remote(t, regs, true, timeout, what);
        if (result.rip == insn + 2) {
            restore_state(threads.at(tid));
            return static_cast<int64_t>(result.rax);
        }
        if (result.rip != insn) {
            restore_state(threads.at(tid));
            throw CallCrashed(what + " in " + who() + " ended at unexpected address " + hex(result.rip));
        }
        // Stopped before executing it (a signal arrived): step again.
    }
}

}  // namespace memray::attach
