// ptrace Tracer: seize every thread without stopping it, find a safe moment, borrow one thread
// for remote calls, and always put everything back. See tracer.hpp for the contract and
// shared/docs/FIELD-NOTES.md ("Stopping and calling into a live process") for the traps.
#include "attach/tracer.hpp"

#include "attach/proc_files.hpp"

#include <cpuid.h>
#include <elf.h>
#include <fcntl.h>
#include <libunwind-ptrace.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

namespace memray::attach {

using Clock = std::chrono::steady_clock;

struct ThreadState {
    user_regs_struct regs{};
    std::vector<uint8_t> xstate;  // XSAVE layout, as long as the kernel returned
    uint64_t sigmask = 0;
};

namespace {

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

constexpr uint64_t k_dflag = 1u << 10;
constexpr uint64_t k_tflag = 1u << 8;
constexpr size_t k_red_zone = 128;

bool is_stop_signal(int sig) {
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

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

// Functions that may hold the allocator or loader lock when they (indirectly) reach malloc/free.
bool is_locking_function(const char* name) {
    static const char* const exact[] = {
        "malloc", "free", "calloc", "realloc", "cfree", "memalign", "posix_memalign",
        "aligned_alloc", "valloc", "pvalloc", "reallocarray", "malloc_trim", "malloc_stats",
        "malloc_info", "mallinfo", "mallinfo2", "mallopt", "sysmalloc", "systrim",
        "dl_iterate_phdr", "__dl_iterate_phdr", "dlopen", "dlclose", "dlsym", "dlvsym", "dlmopen",
        "dladdr", "dladdr1", "dlinfo", "fork", "_Fork", "__libc_fork", "vfork"};
    static const char* const prefixes[] = {
        "_int_", "malloc_", "__malloc", "tcache", "arena_", "_mid_memalign", "__libc_malloc",
        "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign", "__libc_valloc",
        "__libc_pvalloc", "__libc_dl", "_dl_", "__run_fork_handlers", "__libc_fork"};
    for (const char* e : exact)
        if (std::strcmp(name, e) == 0) return true;
    for (const char* p : prefixes)
        if (std::strncmp(name, p, std::strlen(p)) == 0) return true;
    return false;
}

std::string hex(uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

int64_t micros_since(Clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

size_t xstate_size() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    // Leaf 0xD sub-leaf 0: ecx = XSAVE area size for every feature the CPU supports.
    if (__get_cpuid_count(0xD, 0, &eax, &ebx, &ecx, &edx) && ecx >= 512) return ecx;
    return 4096;
}

}  // namespace

struct Tracer::Impl {
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

    std::map<uint64_t, uint8_t> breakpoints;  // planted: address -> original byte
    std::set<uint64_t> old_breakpoints;       // removed, but a thread may still report its trap
    bool hunting = false;
    std::vector<pid_t> traps;  // threads stopped on a planted breakpoint (rip already fixed)

    pid_t call_tid = 0;
    CallEvent call_event;

    unw_addr_space_t unwind_space = nullptr;
    uint64_t syscall_insn = 0;
    Stats stats;

    struct Range {
        uint64_t start, end;
    };
    std::vector<Range> loader_ranges, libc_ranges;

    ~Impl() { shutdown(); }

    void log(const std::string& line) const {
        if (options.verbose) std::fprintf(stderr, "memray attach: %s\n", line.c_str());
    }

    std::string who() const { return "process " + std::to_string(pid); }

    // ---- ptrace wrappers -------------------------------------------------------------------

    bool cont(Thread& t, int sig = 0) {
        t.signal_stop = false;
        if (::ptrace(PTRACE_CONT, t.tid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig))) != 0) {
            t.lost = true;  // ESRCH: killed while stopped; its death comes through waitpid
            return false;
        }
        t.run = Run::Running;
        return true;
    }

    // A request on a thread we saw stopped failed: ESRCH there means it was killed meanwhile
    // (ptrace(2), "Death under ptrace"); anything else is a real error.
    [[noreturn]] void request_failed(pid_t tid, const std::string& what) {
        int e = errno;
        if (e == ESRCH) {
            auto it = threads.find(tid);
            if (it != threads.end()) it->second.lost = true;
            thread_gone(tid, what);
        }
        throw AttachError("cannot " + what + " of thread " + std::to_string(tid) + " of " + who() +
                          ": " + strerror(e));
    }

    user_regs_struct get_regs(pid_t tid) {
        user_regs_struct regs{};
        if (::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) request_failed(tid, "read registers");
        return regs;
    }

    void set_regs(pid_t tid, const user_regs_struct& regs) {
        if (::ptrace(PTRACE_SETREGS, tid, nullptr, &regs) != 0) request_failed(tid, "set registers");
    }

    void save_state(Thread& t) {
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
    bool restore_state(Thread& t) noexcept {
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

    // ---- memory ----------------------------------------------------------------------------

    void read_mem(uint64_t address, void* out, size_t size) const {
        iovec local{out, size};
        iovec remote{reinterpret_cast<void*>(address), size};
        if (::process_vm_readv(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(size)) return;
        if (::pread(mem_fd, out, size, static_cast<off_t>(address)) == static_cast<ssize_t>(size)) return;
        throw AttachError("cannot read " + std::to_string(size) + " bytes at " + hex(address) +
                          " in " + who() + ": " + strerror(errno));
    }

    void write_mem(uint64_t address, const void* data, size_t size) const {
        // /proc/PID/mem writes through the tracer's FOLL_FORCE path, so read-only text works too.
        if (::pwrite(mem_fd, data, size, static_cast<off_t>(address)) == static_cast<ssize_t>(size))
            return;
        throw AttachError("cannot write " + std::to_string(size) + " bytes at " + hex(address) +
                          " in " + who() + ": " + strerror(errno));
    }

    // ---- attach ----------------------------------------------------------------------------

    void attach() {
        mem_fd = ::open(proc::path(pid, "mem").c_str(), O_RDWR | O_CLOEXEC);
        if (mem_fd < 0) {
            if (errno == ENOENT) throw NoSuchProcess("no process with pid " + std::to_string(pid));
            if (errno == ESRCH) throw exited_error();  // a zombie: it has no memory left
            throw NotPermitted("not permitted to trace " + who() + " (" + strerror(errno) +
                               "): run as root or with CAP_SYS_PTRACE, or check "
                               "/proc/sys/kernel/yama/ptrace_scope");
        }
        for (int round = 0;; ++round) {
            std::vector<pid_t> tids = proc::task_ids(pid);
            if (tids.empty() && threads.empty())
                throw NoSuchProcess(who() + " exited (or does not exist)");
            bool added = false;
            for (pid_t tid : tids) {
                if (threads.count(tid)) continue;
                // TRACEEXIT: a thread that exits stops first, so we can let it go at once.
                long seize_options = PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXIT;
                if (::ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(seize_options)) != 0) {
                    int e = errno;
                    if (e == ESRCH) continue;  // the thread exited meanwhile
                    // The kernel refuses to seize a thread that already exited (a zombie).
                    char state = proc::task_state(pid, tid);
                    if (e == EPERM && (state == 0 || state == 'Z' || state == 'X')) continue;
                    if (e == EPERM)
                        throw NotPermitted("not permitted to trace thread " + std::to_string(tid) +
                                           " of " + who() + " (already traced, or missing rights): "
                                           "run as root or with CAP_SYS_PTRACE, or check "
                                           "/proc/sys/kernel/yama/ptrace_scope");
                    throw AttachError("PTRACE_SEIZE of thread " + std::to_string(tid) + " of " +
                                      who() + " failed: " + strerror(e));
                }
                Thread t;
                t.tid = tid;
                threads[tid] = t;
                added = true;
            }
            if (!added) break;
            if (round > 1000) throw AttachError(who() + " creates threads faster than they can be traced");
        }
        parent_is_us = proc::parent_of(pid) == ::getpid();
        if (threads.empty() || ::kill(pid, 0) != 0)
            throw NoSuchProcess(who() + " exited during attach");
        unwind_space = unw_create_addr_space(&_UPT_accessors, 0);
        if (unwind_space) unw_set_caching_policy(unwind_space, UNW_CACHE_GLOBAL);
    }

    // ---- event loop ------------------------------------------------------------------------

    // Moves threads found gone by a failed request to `dying`, where pump collects their death.
    void sweep_lost() {
        for (auto it = threads.begin(); it != threads.end();) {
            if (!it->second.lost) {
                ++it;
                continue;
            }
            if (it->first == call_tid) {
                call_event.seen = true;
                call_event.exited = true;
            }
            // If it is not dead after all (ESRCH also means "not stopped"), make it stop so that
            // handle() detaches it.
            ::ptrace(PTRACE_INTERRUPT, it->first, nullptr, nullptr);
            saw_exit = true;
            dying.insert(it->first);
            it = threads.erase(it);
        }
    }

    // A thread is exiting (PTRACE_EVENT_EXIT stop): nothing of it is worth restoring, so let it
    // go now. Detached, a non-leader thread reaps itself and the leader is left to its parent.
    void release_exiting(pid_t tid) {
        saw_exit = true;
        threads.erase(tid);
        if (::ptrace(PTRACE_DETACH, tid, nullptr, nullptr) == 0) dying.erase(tid);
        else dying.insert(tid);  // killed in the exit stop: its death is still ours to reap
    }

    void handle(pid_t tid, int status) {
        if (dying.count(tid)) {
            if (WIFEXITED(status) || WIFSIGNALED(status)) dying.erase(tid);
            else if (WIFSTOPPED(status)) release_exiting(tid);  // its exit stop, or not dead after all
            return;
        }
        auto it = threads.find(tid);
        if (it == threads.end()) return;
        Thread& t = it->second;
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (tid == call_tid) {
                call_event.seen = true;
                call_event.exited = true;
                call_event.status = status;
            }
            saw_exit = true;
            threads.erase(it);
            return;
        }
        if (!WIFSTOPPED(status)) return;
        t.run = Run::Stopped;
        t.signal_stop = false;
        t.lost = false;
        int sig = WSTOPSIG(status);
        int event = status >> 16;

        if (event == PTRACE_EVENT_EXIT) {
            if (tid == call_tid) {
                call_event.seen = true;
                call_event.exited = true;
                call_event.status = status;
            }
            release_exiting(tid);
            return;
        }

        if (event == PTRACE_EVENT_CLONE) {
            unsigned long child = 0;
            if (::ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &child) == 0 && !threads.count(child)) {
                Thread n;
                n.tid = static_cast<pid_t>(child);
                n.run = Run::Running;  // its first stop (PTRACE_EVENT_STOP) is coming
                if (detaching) n.interrupt_pending = true;
                threads[n.tid] = n;
            }
            cont(t);
            return;
        }
        if (event == PTRACE_EVENT_STOP) {
            bool group_stop = is_stop_signal(sig);
            if (t.interrupt_pending) {
                t.interrupt_pending = false;
                t.held = true;
                if (tid == call_tid) {
                    call_event.seen = true;
                    call_event.status = status;
                }
                return;  // we asked for this stop
            }
            if (tid == call_tid) {
                call_event.seen = true;  // run_remote re-issues its CONT/SINGLESTEP
                call_event.status = status;
                return;
            }
            if (!group_stop) {
                cont(t);  // a clone's first stop, or the end of a group-stop
                return;
            }
            // Job control stop of the target: keep it stopped but let SIGCONT end it.
            if (::ptrace(PTRACE_LISTEN, tid, nullptr, nullptr) == 0) t.run = Run::Listening;
            return;
        }
        if (event != 0) {
            cont(t);
            return;
        }

        // Signal-delivery-stop.
        siginfo_t info{};
        if (::ptrace(PTRACE_GETSIGINFO, tid, nullptr, &info) != 0) return;  // gone
        t.signal_stop = true;
        if (sig == SIGTRAP && info.si_code == SI_KERNEL) {
            user_regs_struct regs{};
            if (::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) == 0) {
                uint64_t at = regs.rip - 1;
                if (breakpoints.count(at) || old_breakpoints.count(at)) {
                    // Our int3: the thread must re-execute the original instruction.
                    regs.rip = at;
                    ::ptrace(PTRACE_SETREGS, tid, nullptr, &regs);
                    if (hunting && breakpoints.count(at) && tid != call_tid) {
                        traps.push_back(tid);
                        return;  // stays stopped: stop_at_safe_point looks at it
                    }
                    if (t.interrupt_pending && detaching) {
                        t.interrupt_pending = false;
                        t.held = true;
                        t.signal_stop = false;  // the SIGTRAP is ours: detach without it
                        return;
                    }
                    cont(t);  // a late trap, or a second thread while we decide: suppress it
                    return;
                }
            }
        }
        if (tid == call_tid) {
            call_event.seen = true;
            call_event.status = status;
            call_event.info = info;
            return;  // call() decides
        }
        if (detaching && t.interrupt_pending) {
            // Detach delivers it: PTRACE_DETACH from a signal-delivery-stop injects the signal.
            t.kept.push_back(info);
            t.interrupt_pending = false;
            t.held = true;
            return;
        }
        // Not ours: deliver it now, exactly as the kernel would have without us.
        cont(t, sig);
    }

    enum class Wait { Done, Timeout, Cancelled };

    // Services every traced thread's stops until `done()` or the deadline. SIGCHLD is blocked in
    // this thread, so sigtimedwait wakes up as soon as a tracee changes state.
    enum class Poll { Nothing, Status, Gone };

    // One non-blocking wait for `tid`. When we are also the target's parent, the leader's exit
    // must not be reaped here (that would take the exit status from the parent code): its
    // death is only looked at (WNOWAIT) and its stops are taken with waitid without WEXITED.
    Poll poll_one(pid_t tid, int& status) {
        if (parent_is_us && tid == pid) {
            siginfo_t si{};
            if (::waitid(P_PID, static_cast<id_t>(tid), &si, WEXITED | WNOHANG | WNOWAIT | __WALL) != 0)
                return errno == ECHILD ? Poll::Gone : Poll::Nothing;
            if (si.si_pid == tid &&
                (si.si_code == CLD_EXITED || si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED))
                return Poll::Gone;  // a zombie, no longer traceable: the parent reaps it
            si = {};
            if (::waitid(P_PID, static_cast<id_t>(tid), &si, WSTOPPED | WNOHANG | __WALL) != 0)
                return errno == ECHILD ? Poll::Gone : Poll::Nothing;
            if (si.si_pid != tid) return Poll::Nothing;
            // waitid gives the stop's full code (event << 8 | signal); rebuild waitpid's status.
            status = (si.si_status << 8) | 0x7f;
            return Poll::Status;
        }
        pid_t r = ::waitpid(tid, &status, __WALL | WNOHANG);
        if (r == tid) return Poll::Status;
        if (r < 0 && errno == ECHILD) return Poll::Gone;  // no longer ours (released or reaped)
        return Poll::Nothing;
    }

    template <typename Pred>
    Wait pump(Clock::time_point deadline, Pred done, bool cancellable = true) {
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        const timespec zero{0, 0};
        for (;;) {
            sweep_lost();
            if (done()) return Wait::Done;
            while (::sigtimedwait(&chld, nullptr, &zero) == SIGCHLD) {
            }
            bool any = false;
            std::vector<pid_t> tids;
            tids.reserve(threads.size() + dying.size());
            for (auto& [tid, t] : threads) tids.push_back(tid);
            tids.insert(tids.end(), dying.begin(), dying.end());
            for (pid_t tid : tids) {
                int status = 0;
                Poll p = poll_one(tid, status);
                if (p == Poll::Status) {
                    handle(tid, status);
                    any = true;
                } else if (p == Poll::Gone) {
                    if (tid == call_tid && threads.count(tid)) {
                        call_event.seen = true;
                        call_event.exited = true;
                    }
                    if (threads.erase(tid)) saw_exit = true;
                    dying.erase(tid);
                    any = true;
                }
            }
            if (any) continue;
            if (cancellable && cancel_requested()) return Wait::Cancelled;
            auto now = Clock::now();
            if (now >= deadline) return done() ? Wait::Done : Wait::Timeout;
            auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now);
            // Bounded nap: a SIGCHLD taken by another thread of this process must not stall us.
            long us = std::min<long>(left.count(), 2000);
            timespec nap{0, us * 1000};
            ::sigtimedwait(&chld, nullptr, &nap);
        }
    }

    bool cancel_requested() const {
        sigset_t pending;
        if (::sigpending(&pending) == 0 &&
            (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM) ||
             sigismember(&pending, SIGHUP)))
            return true;
        return options.cancelled && options.cancelled();
    }

    Clock::time_point deadline_in(std::chrono::milliseconds ms) const { return Clock::now() + ms; }

    // The error for "the process is gone": what callers (the CLI) test for.
    NoSuchProcess exited_error() const { return NoSuchProcess(who() + " exited during attach"); }

    // `tid` is gone. If the whole process is going (exit_group, a fatal signal: every thread
    // dies within moments), say so; a lone thread's exit is the caller's error to handle.
    [[noreturn]] void thread_gone(pid_t tid, const std::string& what) {
        auto it = threads.find(tid);
        if (it != threads.end()) it->second.lost = true;
        auto grace = std::min<std::chrono::milliseconds>(options.timeout, std::chrono::milliseconds(2000));
        if (pump(Clock::now() + grace, [&] { return threads.empty(); }, false) == Wait::Done)
            throw exited_error();
        throw AttachError("thread " + std::to_string(tid) + " of " + who() + " exited during " + what);
    }

    void ensure_alive() const {
        if (threads.empty()) throw exited_error();
    }

    // After an error: is the process on its way out? A gone or zombie leader, or a thread found
    // dying, is the hint; then every thread must be gone within moments.
    bool process_exited() {
        sweep_lost();
        char leader = proc::task_state(pid, pid);
        bool hint = threads.empty() || saw_exit || leader == 0 || leader == 'Z' || leader == 'X';
        if (!hint) return false;
        auto grace = std::min<std::chrono::milliseconds>(options.timeout, std::chrono::milliseconds(2000));
        return pump(Clock::now() + grace, [&] { return threads.empty(); }, false) == Wait::Done;
    }

    // Runs one public operation; an error caused by the target exiting meanwhile becomes the
    // one error callers test for.
    template <typename F>
    auto guarded(F f) -> decltype(f()) {
        try {
            return f();
        } catch (const Interrupted&) {
            throw;
        } catch (const NoSuchProcess&) {
            throw exited_error();
        } catch (const AttachError&) {
            if (process_exited()) throw exited_error();
            throw;
        }
    }

    Thread& held_thread(pid_t tid) {
        auto it = threads.find(tid);
        if (it == threads.end() || it->second.lost) {
            if (threads.empty()) throw exited_error();
            char state = proc::task_state(pid, tid);
            if (it != threads.end() || dying.count(tid) || state == 0 || state == 'Z' || state == 'X')
                thread_gone(tid, "attach");
            throw AttachError("thread " + std::to_string(tid) + " of " + who() + " is not traced");
        }
        if (it->second.run != Run::Stopped || !it->second.held)
            throw AttachError("thread " + std::to_string(tid) + " of " + who() +
                              " is not stopped: use stop_at_safe_point or interrupt_all first");
        return it->second;
    }

    // Stops every running thread; returns when all are stopped (or gone) or on timeout.
    Wait interrupt_everything(Clock::time_point deadline, bool cancellable) {
        for (auto& [tid, t] : threads) {
            if (t.run == Run::Stopped) {
                t.held = true;
                continue;
            }
            if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) == 0) t.interrupt_pending = true;
            else t.lost = true;  // not stopped, yet not ours to interrupt: it is dying
        }
        Wait w = pump(deadline, [&] {
            for (auto& [tid, t] : threads)
                if (t.run != Run::Stopped || !t.held) return false;
            return true;
        }, cancellable);
        if (w != Wait::Done)
            for (auto& [tid, t] : threads) t.interrupt_pending = false;  // late stops get resumed
        return w;
    }

    void deliver_kept_and_resume(Thread& t) {
        std::vector<siginfo_t> kept = std::move(t.kept);
        t.kept.clear();
        int sig = 0;
        size_t first = 0;
        if (!kept.empty() && t.signal_stop) {
            // Injecting from a signal-delivery-stop keeps the original siginfo (sender, value).
            ::ptrace(PTRACE_SETSIGINFO, t.tid, nullptr, &kept[0]);
            sig = kept[0].si_signo;
            first = 1;
        }
        t.held = false;
        cont(t, sig);
        for (size_t i = first; i < kept.size(); ++i) ::syscall(SYS_tgkill, pid, t.tid, kept[i].si_signo);
    }

    // ---- safe point ------------------------------------------------------------------------

    void load_ranges() {
        loader_ranges.clear();
        libc_ranges.clear();
        for (const Mapping& m : read_maps(pid)) {
            if (proc::is_loader(m.path))
                loader_ranges.push_back({m.start, m.end});
            else if (proc::is_libc(m.path))
                libc_ranges.push_back({m.start, m.end});
        }
    }

    static bool in(const std::vector<Range>& ranges, uint64_t ip) {
        for (const Range& r : ranges)
            if (ip >= r.start && ip < r.end) return true;
        return false;
    }

    // True if the stopped thread's stack holds no frame of the loader or the allocator.
    // `skip_first`: frame 0 is the breakpoint (the entry of malloc/free itself).
    bool stack_is_safe(pid_t tid, bool skip_first, std::string& why) {
        if (!unwind_space) {
            why = "libunwind unavailable";
            return false;
        }
        void* upt = _UPT_create(tid);
        if (!upt) {
            why = "_UPT_create failed";
            return false;
        }
        unw_cursor_t cursor;
        bool safe = true;
        if (unw_init_remote(&cursor, unwind_space, upt) < 0) {
            why = "unw_init_remote failed";
            safe = false;
        }
        for (int depth = 0; safe && depth < 256; ++depth) {
            unw_word_t ip = 0;
            unw_get_reg(&cursor, UNW_REG_IP, &ip);
            // Return addresses point after the call; look up the call instruction itself.
            uint64_t lookup = depth == 0 ? ip : ip - 1;
            if (in(loader_ranges, lookup)) {
                why = "frame " + std::to_string(depth) + " is in the dynamic loader";
                safe = false;
                break;
            }
            // Allocator and dl_iterate_phdr frames live in libc; names elsewhere are not needed
            // and each lookup costs a file read inside libunwind.
            if ((depth > 0 || !skip_first) && in(libc_ranges, lookup)) {
                char name[256];
                unw_word_t offset = 0;
                if (unw_get_proc_name(&cursor, name, sizeof name, &offset) == 0 &&
                    is_locking_function(name)) {
                    why = "frame " + std::to_string(depth) + " is in " + name;
                    safe = false;
                    break;
                }
            }
            int step = unw_step(&cursor);
            if (step == 0) break;
            if (step < 0) {
                // Without unwind info we cannot prove anything about the outer frames.
                why = "cannot unwind past frame " + std::to_string(depth) + " (" + hex(ip) + ")";
                safe = false;
            }
        }
        _UPT_destroy(upt);
        return safe;
    }

    bool check(pid_t tid, bool skip_first, int64_t& us) {
        auto start = Clock::now();
        std::string why;
        bool safe = stack_is_safe(tid, skip_first, why);
        us = micros_since(start);
        stats.max_unwind_us = std::max(stats.max_unwind_us, us);
        if (!safe) {
            ++stats.rejected;
            log("thread " + std::to_string(tid) + " is not at a safe point: " + why);
        }
        return safe;
    }

    void plant(const std::vector<uint64_t>& entry_points) {
        for (uint64_t a : entry_points) {
            if (breakpoints.count(a)) continue;
            uint8_t orig = 0;
            read_mem(a, &orig, 1);
            if (orig == 0xCC) throw AttachError("entry point " + hex(a) + " already holds a breakpoint");
            const uint8_t int3 = 0xCC;
            write_mem(a, &int3, 1);
            breakpoints[a] = orig;
            old_breakpoints.erase(a);
        }
    }

    bool remove_breakpoints() noexcept {
        bool ok = true;
        for (auto& [a, orig] : breakpoints) {
            if (::pwrite(mem_fd, &orig, 1, static_cast<off_t>(a)) != 1) {
                ok = false;
                log("could not restore the code byte at " + hex(a) + ": " + strerror(errno));
            }
            old_breakpoints.insert(a);
        }
        breakpoints.clear();
        return ok;
    }

    // Lets a thread that trapped at an unsafe moment execute the original instruction.
    void step_over(Thread& t, uint64_t at) {
        uint8_t orig = breakpoints.at(at);
        write_mem(at, &orig, 1);
        call_tid = t.tid;
        call_event = {};
        t.signal_stop = false;
        if (::ptrace(PTRACE_SINGLESTEP, t.tid, nullptr, nullptr) == 0) {
            t.run = Run::Running;
            pump(deadline_in(options.timeout), [&] { return call_event.seen; }, false);
        }
        call_tid = 0;
        const uint8_t int3 = 0xCC;
        write_mem(at, &int3, 1);
        auto it = threads.find(t.tid);
        if (it == threads.end() || it->second.run != Run::Stopped) return;
        Thread& s = it->second;
        int sig = call_event.info.si_signo;
        if (call_event.seen && !call_event.exited && sig != 0 && sig != SIGTRAP) s.kept.push_back(call_event.info);
        deliver_kept_and_resume(s);
    }

    pid_t stop_at_safe_point(const std::vector<uint64_t>& entry_points, std::chrono::milliseconds wait) {
        auto start = Clock::now();
        stats = {};
        if (unwind_space) unw_flush_cache(unwind_space, 0, 0);
        load_ranges();
        auto overall = start + options.timeout;
        pid_t chosen = 0;
        while (chosen == 0) {
            ensure_alive();
            if (!entry_points.empty()) {
                chosen = hunt(entry_points, std::min(overall, Clock::now() + wait));
                if (chosen) stats.from_breakpoint = true;
            }
            if (!chosen) chosen = fallback(overall);
            if (chosen) break;
            ensure_alive();
            if (Clock::now() >= overall)
                throw AttachError("no thread of " + who() + " reached a safe point within " +
                                  std::to_string(options.timeout.count()) +
                                  " ms (threads busy inside the allocator or the loader?)");
            if (cancel_requested()) throw Interrupted("attach to " + who() + " interrupted");
        }
        stats.stop_at_safe_point_us = micros_since(start);
        log("thread " + std::to_string(chosen) + " stopped at a safe point (" +
            (stats.from_breakpoint ? "breakpoint" : "system call") + ") after " +
            std::to_string(stats.stop_at_safe_point_us) + " us; stack check " +
            std::to_string(stats.unwind_us) + " us");
        return chosen;
    }

    pid_t hunt(const std::vector<uint64_t>& entry_points, Clock::time_point deadline) {
        traps.clear();
        hunting = true;
        pid_t chosen = 0;
        try {
            plant(entry_points);
            while (chosen == 0) {
                Wait w = pump(deadline, [&] { return !traps.empty(); });
                if (w == Wait::Cancelled) throw Interrupted("attach to " + who() + " interrupted");
                if (w != Wait::Done) break;
                pid_t tid = traps.front();
                traps.erase(traps.begin());
                auto it = threads.find(tid);
                if (it == threads.end()) continue;
                int64_t us = 0;
                if (check(tid, true, us)) {
                    chosen = tid;
                    stats.unwind_us = us;
                    break;
                }
                user_regs_struct regs = get_regs(tid);
                step_over(it->second, regs.rip);
            }
        } catch (...) {
            hunting = false;
            remove_breakpoints();
            release_traps(0);
            throw;
        }
        hunting = false;
        remove_breakpoints();
        release_traps(chosen);
        if (chosen) {
            Thread& t = threads.at(chosen);
            t.held = true;
            t.signal_stop = true;
            save_state(t);
        }
        return chosen;
    }

    void release_traps(pid_t keep) noexcept {
        for (pid_t tid : traps) {
            auto it = threads.find(tid);
            if (tid != keep && it != threads.end()) cont(it->second);
        }
        traps.clear();
    }

    pid_t fallback(Clock::time_point overall) {
        log("no thread reached a breakpoint; looking for a thread blocked in a system call");
        Wait w = interrupt_everything(std::min(overall, Clock::now() + options.timeout), true);
        pid_t chosen = 0;
        if (w == Wait::Done) {
            // Threads running user code cannot be chosen: let them go before the (slower) stack
            // checks so that they stall for as short a time as possible.
            std::vector<pid_t> candidates;
            for (auto& [tid, t] : threads) {
                if (t.run != Run::Stopped) continue;
                user_regs_struct regs{};
                if (::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) == 0 &&
                    static_cast<int64_t>(regs.orig_rax) >= 0)
                    candidates.push_back(tid);
                else if (t.held)
                    deliver_kept_and_resume(t);
            }
            for (pid_t tid : candidates) {
                auto it = threads.find(tid);
                if (it == threads.end()) continue;
                int64_t us = 0;
                if (!chosen && check(tid, false, us)) {
                    chosen = tid;
                    stats.unwind_us = us;
                } else if (tid != chosen && it->second.held && it->second.run == Run::Stopped) {
                    deliver_kept_and_resume(it->second);
                }
            }
        }
        for (auto& [tid, t] : threads) {
            if (tid == chosen) continue;
            if (t.run == Run::Stopped && t.held) deliver_kept_and_resume(t);
            else if (t.interrupt_pending) {
                t.interrupt_pending = false;  // its stop will come and be resumed by handle()
                t.held = false;
            }
        }
        if (w == Wait::Cancelled) throw Interrupted("attach to " + who() + " interrupted");
        if (chosen) save_state(threads.at(chosen));
        return chosen;
    }

    // ---- remote calls ----------------------------------------------------------------------

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

    // Runs the prepared registers on `t` until it stops for a reason call() understands.
    // Returns the final registers; throws after restoring on crash, timeout or cancellation.
    user_regs_struct run_remote(Thread& t, user_regs_struct regs, bool single_step,
                                std::chrono::milliseconds timeout, const std::string& what) {
        CliSignalBlock block;
        const pid_t tid = t.tid;
        auto fail = [&](auto exception) {
            call_tid = 0;
            auto it = threads.find(tid);
            if (it != threads.end()) restore_state(it->second);
            throw exception;
        };
        try {
            set_regs(tid, regs);
            t.modified = true;
            uint64_t mask = call_sigmask();
            ::ptrace(PTRACE_SETSIGMASK, tid, reinterpret_cast<void*>(sizeof mask), &mask);
        } catch (...) {
            auto it = threads.find(tid);  // `t` may be gone: the thread can die meanwhile
            if (it != threads.end()) restore_state(it->second);
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
                fail(CallCrashed(what + " in thread " + std::to_string(tid) + " of " + who() +
                                 ": the thread exited (status " + std::to_string(call_event.status) + ")"));
            Thread& c = threads.at(tid);
            int status = call_event.status;
            int sig = WSTOPSIG(status);
            if ((status >> 16) == PTRACE_EVENT_STOP) {
                if (interrupted) fail(Interrupted(what + " in " + who() + " interrupted; target restored"));
                if (timed_out)
                    fail(CallTimeout(what + " in thread " + std::to_string(tid) + " of " + who() +
                                     " did not return within " + std::to_string(timeout.count()) +
                                     " ms; registers restored"));
                continue;
            }
            user_regs_struct now = get_regs(tid);
            if (!single_step && sig == SIGSEGV && now.rip == 0) {
                if (timed_out || interrupted) {
                    // It returned just as we gave up: the result is valid.
                }
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
                fail(CallCrashed(what + " crashed in thread " + std::to_string(tid) + " of " + who() +
                                 ": " + detail + "; registers restored, the target keeps running"));
            }
            c.kept.push_back(call_event.info);  // asynchronous signal: deliver after the call
            if (timed_out || interrupted) {
                // The thread stopped for a signal after we gave up: we hold it now.
                if (interrupted) fail(Interrupted(what + " in " + who() + " interrupted; target restored"));
                fail(CallTimeout(what + " in thread " + std::to_string(tid) + " of " + who() +
                                 " did not return within " + std::to_string(timeout.count()) + " ms"));
            }
        }
        call_tid = 0;
        thread_gone(tid, what);
    }

    uint64_t call(pid_t tid, uint64_t function, const std::vector<uint64_t>& args,
                  std::chrono::milliseconds timeout) {
        if (args.size() > 6) throw AttachError("remote call with more than 6 arguments");
        if (cancel_requested()) throw Interrupted("attach to " + who() + " interrupted");
        Thread& t = held_thread(tid);
        save_state(t);
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
        user_regs_struct result = run_remote(t, regs, false, timeout, what);
        Thread& c = threads.at(tid);
        restore_state(c);
        return result.rax;
    }

    uint64_t find_syscall_instruction() {
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

    int64_t syscall(pid_t tid, long number, const std::vector<uint64_t>& args,
                    std::chrono::milliseconds timeout) {
        if (args.size() > 6) throw AttachError("system call with more than 6 arguments");
        if (cancel_requested()) throw Interrupted("attach to " + who() + " interrupted");
        Thread& t = held_thread(tid);
        save_state(t);
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

    void resume(pid_t tid) {
        Thread& t = held_thread(tid);
        if (!restore_state(t)) {
            if (t.lost) thread_gone(tid, "resume");
            throw AttachError("cannot restore registers of thread " + std::to_string(tid) + " of " + who());
        }
        deliver_kept_and_resume(t);
        if (t.lost) thread_gone(tid, "resume");
    }

    // ---- detach ----------------------------------------------------------------------------

    // False if the thread was not detached: it was killed while stopped (now `lost`).
    bool detach_one(Thread& t) noexcept {
        restore_state(t);
        int sig = 0;
        size_t first = 0;
        if (!t.kept.empty() && t.signal_stop) {
            // PTRACE_DETACH from a signal-delivery-stop delivers the signal with its siginfo.
            ::ptrace(PTRACE_SETSIGINFO, t.tid, nullptr, &t.kept[0]);
            sig = t.kept[0].si_signo;
            first = 1;
        }
        if (::ptrace(PTRACE_DETACH, t.tid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig))) != 0) {
            t.lost = true;
            return false;
        }
        for (size_t i = first; i < t.kept.size(); ++i) ::syscall(SYS_tgkill, pid, t.tid, t.kept[i].si_signo);
        return true;
    }

    void shutdown() noexcept {
        try {
            hunting = false;
            call_tid = 0;
            if (mem_fd >= 0) remove_breakpoints();
            release_traps(0);
            detaching = true;
            for (auto& [tid, t] : threads) {
                if (t.run == Run::Stopped) {
                    t.held = true;
                    continue;
                }
                if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) == 0) t.interrupt_pending = true;
                else t.lost = true;
            }
            // Each thread is detached as soon as it stops, so none waits for the slowest one.
            // Dying threads are waited for too: a traced zombie would keep the process unreaped.
            auto detach_stopped = [&] {
                for (auto it = threads.begin(); it != threads.end();) {
                    Thread& t = it->second;
                    if (t.lost || t.run != Run::Stopped || t.interrupt_pending || !detach_one(t)) {
                        ++it;
                        continue;
                    }
                    it = threads.erase(it);
                }
                return threads.empty() && dying.empty();
            };
            pump(Clock::now() + std::max(options.timeout, std::chrono::milliseconds(1000)),
                 detach_stopped, false);
            for (auto& [tid, t] : threads)
                log("thread " + std::to_string(tid) + " did not stop; it stays traced until we exit");
            for (pid_t tid : dying)
                log("thread " + std::to_string(tid) + " did not finish exiting; it stays traced until we exit");
            threads.clear();
            dying.clear();
        } catch (...) {
        }
        if (unwind_space) unw_destroy_addr_space(unwind_space);
        unwind_space = nullptr;
        if (mem_fd >= 0) ::close(mem_fd);
        mem_fd = -1;
        if (mask_saved) pthread_sigmask(SIG_SETMASK, &saved_mask, nullptr);
        mask_saved = false;
    }
};

Tracer::Tracer(pid_t pid, Options options) : m_impl(std::make_unique<Impl>()) {
    m_impl->pid = pid;
    m_impl->options = std::move(options);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, &m_impl->saved_mask);
    m_impl->mask_saved = true;
    auto start = Clock::now();
    m_impl->attach();
    m_impl->log("traced " + std::to_string(m_impl->threads.size()) + " threads of process " +
                std::to_string(pid) + " in " + std::to_string(micros_since(start)) + " us");
}

Tracer::~Tracer() = default;

pid_t Tracer::pid() const { return m_impl->pid; }

std::vector<pid_t> Tracer::threads() const {
    std::vector<pid_t> tids;
    for (auto& [tid, t] : m_impl->threads)
        if (!t.lost) tids.push_back(tid);
    return tids;
}

void Tracer::read_memory(uint64_t address, void* out, size_t size) const {
    m_impl->read_mem(address, out, size);
}

void Tracer::write_memory(uint64_t address, const void* data, size_t size) const {
    m_impl->write_mem(address, data, size);
}

pid_t Tracer::stop_at_safe_point(const std::vector<uint64_t>& entry_points,
                                 std::chrono::milliseconds breakpoint_wait) {
    return m_impl->guarded([&] { return m_impl->stop_at_safe_point(entry_points, breakpoint_wait); });
}

uint64_t Tracer::call(pid_t tid, uint64_t function, const std::vector<uint64_t>& args,
                      std::chrono::milliseconds timeout) {
    return m_impl->guarded([&] { return m_impl->call(tid, function, args, timeout); });
}

int64_t Tracer::syscall(pid_t tid, long number, const std::vector<uint64_t>& args,
                        std::chrono::milliseconds timeout) {
    return m_impl->guarded([&] { return m_impl->syscall(tid, number, args, timeout); });
}

Registers Tracer::registers(pid_t tid) const {
    user_regs_struct r = m_impl->guarded([&] {
        Thread& t = m_impl->held_thread(tid);
        return t.saved ? t.original.regs : m_impl->get_regs(tid);
    });
    Registers out;
    out.rip = r.rip;
    out.rsp = r.rsp;
    out.rax = r.rax;
    out.orig_rax = r.orig_rax;
    out.rdi = r.rdi;
    out.rsi = r.rsi;
    out.rdx = r.rdx;
    return out;
}

void Tracer::resume(pid_t tid) {
    m_impl->guarded([&] { m_impl->resume(tid); });
}

void Tracer::interrupt_all() {
    m_impl->guarded([&] {
        Impl& impl = *m_impl;
        auto w = impl.interrupt_everything(impl.deadline_in(impl.options.timeout), true);
        if (w == Impl::Wait::Cancelled) throw Interrupted("interrupt of process " + std::to_string(impl.pid) + " cancelled");
        if (w == Impl::Wait::Timeout)
            throw AttachError("not every thread of process " + std::to_string(impl.pid) + " stopped within " +
                              std::to_string(impl.options.timeout.count()) + " ms");
        impl.ensure_alive();
        // save_state may find a thread dead (and throw); collect the list first.
        std::vector<pid_t> tids;
        for (auto& [tid, t] : impl.threads) tids.push_back(tid);
        for (pid_t tid : tids) {
            auto it = impl.threads.find(tid);
            if (it != impl.threads.end()) impl.save_state(it->second);
        }
    });
}

void Tracer::resume_all() {
    m_impl->guarded([&] {
        for (auto& [tid, t] : m_impl->threads)
            if (t.run == Run::Stopped && t.held && !t.lost) {
                m_impl->restore_state(t);
                m_impl->deliver_kept_and_resume(t);
            }
        m_impl->sweep_lost();
    });
}

const Tracer::Stats& Tracer::stats() const { return m_impl->stats; }

}  // namespace memray::attach
