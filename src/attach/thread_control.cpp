// The threads of a traced process: seizing them all (and every thread created later), the
// per-thread state machine that services their stops (clone, exit, group-stop, signals, our
// interrupts), keeping signals that arrive while a thread is held and re-delivering them, the
// target exiting at any moment, and detaching from everything.
#include "attach/proc_files.hpp"
#include "attach/tracer_impl.hpp"

#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace memray::attach {

namespace {

bool is_stop_signal(int sig) {
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

}  // namespace

bool Tracer::Impl::cont(Thread& t, int sig) {
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
void Tracer::Impl::request_failed(pid_t tid, const std::string& what) {
    int e = errno;
    if (e == ESRCH) {
        auto it = threads.find(tid);
        if (it != threads.end()) it->second.lost = true;
        thread_gone(tid, what);
    }
    throw AttachError("cannot " + what + " of " + who(tid) + ": " + strerror(e));
}

// Registers a thread we trace; its first stop (if any) is handled by handle().
void Tracer::Impl::add_thread(pid_t tid) {
    Thread t;
    t.tid = tid;
    // While everything is being stopped, a thread that appears must stop too.
    t.interrupt_pending = stopping_all;
    threads[tid] = t;
}

// One pass over /proc/PID/task. Returns how many threads this pass seized itself. Threads come
// and go all the time in some programs, and neither kind is an error: a thread that exits
// between the listing and the seize is skipped, and a thread created by a thread we trace
// already is ours (PTRACE_O_TRACECLONE): the kernel refuses to seize it again (EPERM), and
// its creator's clone stop and its own first stop are on their way.
int Tracer::Impl::seize_new_threads() {
    int seized = 0;
    for (pid_t tid : proc::task_ids(pid)) {
        if (threads.count(tid) || dying.count(tid)) continue;
        // TRACEEXIT: a thread that exits stops first, so we can let it go at once.
        long seize_options = PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXIT;
        if (::ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(seize_options)) == 0) {
            add_thread(tid);
            ++seized;
            continue;
        }
        int e = errno;
        if (e == ESRCH) continue;  // it exited meanwhile
        if (e != EPERM) throw AttachError("PTRACE_SEIZE of " + who(tid) + " failed: " + strerror(e));
        // EPERM: the thread already exited (a zombie), or it is traced already.
        char state = proc::task_state(pid, tid);
        if (state == 0 || state == 'Z' || state == 'X') continue;
        pid_t tracer = proc::task_tracer(pid, tid);
        if (tracer < 0) continue;  // gone by now
        if (tracer == ::gettid() || tracer == ::getpid()) {
            add_thread(tid);
            continue;
        }
        if (tracer > 0)
            throw NotPermitted(who(tid) + " is already traced by process " + std::to_string(tracer) +
                               ": detach that debugger first");
        throw NotPermitted("not permitted to trace " + who(tid) +
                           ": run as root or with CAP_SYS_PTRACE, or check "
                           "/proc/sys/kernel/yama/ptrace_scope");
    }
    return seized;
}

void Tracer::Impl::attach() {
    open_memory();
    // Rescan until a pass seizes nothing itself: a thread seized in the middle of clone() may
    // still create a child that is not traced.
    for (int round = 0; seize_new_threads() > 0; ++round)
        if (round > 1000) throw AttachError(who() + " creates threads faster than they can be traced");
    if (threads.empty()) throw NoSuchProcess(who() + " exited (or does not exist)");
    parent_is_us = proc::parent_of(pid) == ::getpid();
    if (::kill(pid, 0) != 0) throw NoSuchProcess(who() + " exited during attach");
    create_unwinder();
}

// Moves threads found gone by a failed request to `dying`, where pump collects their death.
void Tracer::Impl::sweep_lost() {
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
void Tracer::Impl::release_exiting(pid_t tid) {
    saw_exit = true;
    threads.erase(tid);
    if (::ptrace(PTRACE_DETACH, tid, nullptr, nullptr) == 0) dying.erase(tid);
    else dying.insert(tid);  // killed in the exit stop: its death is still ours to reap
}

bool Tracer::Impl::is_our_int3(uint64_t at) const {
    return breakpoints.count(at) || old_breakpoints.count(at);
}

bool Tracer::Impl::our_trap_pending(const Thread& t) {
    user_regs_struct regs{};
    if (::ptrace(PTRACE_GETREGS, t.tid, nullptr, &regs) != 0) return false;
    return is_our_int3(regs.rip - 1) && proc::task_signal_pending(pid, t.tid, SIGTRAP);
}

// A pending PTRACE_INTERRUPT is satisfied by whatever stop comes first (the kernel clears it at
// every trap: a clone event, a signal, a breakpoint), so any stop of such a thread holds it.
bool Tracer::Impl::take_interrupt(Thread& t) {
    if (!t.interrupt_pending) return false;
    t.interrupt_pending = false;
    t.held = true;
    return true;
}

// The thread running a remote call or a single step exited or is exiting: its waiter stops.
void Tracer::Impl::note_call_exit(pid_t tid, int status) {
    if (tid != call_tid) return;
    call_event.seen = true;
    call_event.exited = true;
    call_event.status = status;
}

void Tracer::Impl::handle(pid_t tid, int status) {
    if (dying.count(tid)) {
        if (WIFEXITED(status) || WIFSIGNALED(status)) dying.erase(tid);
        else if (WIFSTOPPED(status)) release_exiting(tid);  // its exit stop, or not dead after all
        return;
    }
    auto it = threads.find(tid);
    if (it == threads.end()) return;
    Thread& t = it->second;
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
        note_call_exit(tid, status);
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
        note_call_exit(tid, status);
        release_exiting(tid);
        return;
    }

    if (event == PTRACE_EVENT_CLONE) {
        unsigned long child = 0;
        if (::ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &child) == 0 && !threads.count(child))
            add_thread(static_cast<pid_t>(child));  // its first stop (PTRACE_EVENT_STOP) is coming
        // The thread of a remote call is taken back by its own waiter, at its stop.
        if (tid == call_tid || !take_interrupt(t)) cont(t);
        return;
    }
    if (event == PTRACE_EVENT_STOP) {
        bool group_stop = is_stop_signal(sig);
        if (tid != call_tid && t.interrupt_pending && our_trap_pending(t)) {
            // It executed one of our int3 and our interrupt stopped it before the SIGTRAP was
            // delivered: resumed or detached from here, that SIGTRAP would kill the process
            // (seen once in ~20 runs of 50 attaches to a thread-churning program). It goes on to
            // the signal's stop, where the trap is taken back and suppressed (below), and that
            // stop counts as the one we asked for.
            cont(t);
            return;
        }
        if (take_interrupt(t)) {
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
        if (tid == call_tid || !take_interrupt(t)) cont(t);
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
            if (is_our_int3(at)) {
                // Our int3: the thread must re-execute the original instruction.
                regs.rip = at;
                ::ptrace(PTRACE_SETREGS, tid, nullptr, &regs);
                // Our interrupt first: it may be what made the thread deliver this trap late
                // (the interrupt stop above), and whoever asked for it holds the thread.
                if (tid != call_tid && take_interrupt(t)) {
                    t.signal_stop = false;  // the SIGTRAP is ours: resume without it
                    return;
                }
                if (hunting && breakpoints.count(at) && tid != call_tid) {
                    traps.push_back(tid);
                    return;  // stays stopped: stop_at_safe_point looks at it
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
    if (t.interrupt_pending && !detaching) {
        // This stop used up our interrupt. Holding the signal until the thread is resumed would
        // let later ones merge with it (threads wait longest while everything is stopped):
        // deliver it now, as the kernel would have, and ask for the stop again.
        if (cont(t, sig) && ::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) t.lost = true;
        return;
    }
    if (take_interrupt(t)) {
        // PTRACE_DETACH from a signal-delivery-stop injects it.
        t.kept.push_back(info);
        return;
    }
    // Not ours: deliver it now, exactly as the kernel would have without us.
    cont(t, sig);
}

// One non-blocking wait for `tid`. When we are also the target's parent, the leader's exit
// must not be reaped here (that would take the exit status from the parent code): its
// death is only looked at (WNOWAIT) and its stops are taken with waitid without WEXITED.
auto Tracer::Impl::poll_one(pid_t tid, int& status) -> Poll {
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

// Services every traced thread's stops until `done()` or the deadline. SIGCHLD is blocked in
// this thread, so sigtimedwait wakes up as soon as a tracee changes state.
auto Tracer::Impl::pump(Clock::time_point deadline, const std::function<bool()>& done, bool cancellable)
    -> Wait {
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

bool Tracer::Impl::cancel_requested() const {
    sigset_t pending;
    if (::sigpending(&pending) == 0 &&
        (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM) ||
         sigismember(&pending, SIGHUP)))
        return true;
    return options.cancelled && options.cancelled();
}

// When the whole process goes (exit_group, a fatal signal), every thread dies within moments.
bool Tracer::Impl::all_gone_within_grace() {
    auto grace = std::min<std::chrono::milliseconds>(options.timeout, std::chrono::milliseconds(2000));
    return pump(Clock::now() + grace, [&] { return threads.empty(); }, false) == Wait::Done;
}

// `tid` is gone. If the whole process is going, say so; a lone thread's exit is the caller's
// error to handle.
void Tracer::Impl::thread_gone(pid_t tid, const std::string& what) {
    auto it = threads.find(tid);
    if (it != threads.end()) it->second.lost = true;
    if (all_gone_within_grace()) throw exited_error();
    throw AttachError(who(tid) + " exited during " + what);
}

// After an error: is the process on its way out? A gone or zombie leader, or a thread found
// dying, is the hint; then every thread must be gone within moments.
bool Tracer::Impl::process_exited() {
    sweep_lost();
    char leader = proc::task_state(pid, pid);
    bool hint = threads.empty() || saw_exit || leader == 0 || leader == 'Z' || leader == 'X';
    return hint && all_gone_within_grace();
}

detail::Thread& Tracer::Impl::held_thread(pid_t tid) {
    auto it = threads.find(tid);
    if (it == threads.end() || it->second.lost) {
        if (threads.empty()) throw exited_error();
        char state = proc::task_state(pid, tid);
        if (it != threads.end() || dying.count(tid) || state == 0 || state == 'Z' || state == 'X')
            thread_gone(tid, "attach");
        throw AttachError(who(tid) + " is not traced");
    }
    if (it->second.run != Run::Stopped || !it->second.held)
        throw AttachError(who(tid) + " is not stopped: use stop_at_safe_point or interrupt_all first");
    return it->second;
}

// Asks every running thread to stop; the ones stopped already are held as they are. Threads
// created from now on are asked too, until stopping_all is cleared.
void Tracer::Impl::request_stop_all() {
    stopping_all = true;
    for (auto& [tid, t] : threads) {
        if (t.run == Run::Stopped) {
            t.held = true;
            continue;
        }
        if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) == 0) t.interrupt_pending = true;
        else t.lost = true;  // not stopped, yet not ours to interrupt: it is dying
    }
}

// Stops every running thread; returns when all are stopped (or gone) or on timeout.
auto Tracer::Impl::interrupt_everything(Clock::time_point deadline, bool cancellable) -> Wait {
    request_stop_all();
    Wait w = pump(deadline, [&] {
        for (auto& [tid, t] : threads)
            if (t.run != Run::Stopped || !t.held) return false;
        return true;
    }, cancellable);
    stopping_all = false;
    if (w != Wait::Done)
        for (auto& [tid, t] : threads) t.interrupt_pending = false;  // late stops get resumed
    return w;
}

// The first kept signal rides on the request that resumes or detaches a thread in a
// signal-delivery-stop, which keeps its original siginfo (sender, value). Returns its number, 0
// if there is none to inject that way.
int Tracer::Impl::inject_first_kept(Thread& t, const std::vector<siginfo_t>& kept) {
    if (kept.empty() || !t.signal_stop) return 0;
    ::ptrace(PTRACE_SETSIGINFO, t.tid, nullptr, &kept[0]);
    return kept[0].si_signo;
}

// The kept signals from `from` on, sent to the thread again.
void Tracer::Impl::send_kept(pid_t tid, const std::vector<siginfo_t>& kept, size_t from) {
    for (size_t i = from; i < kept.size(); ++i) ::syscall(SYS_tgkill, pid, tid, kept[i].si_signo);
}

void Tracer::Impl::deliver_kept_and_resume(Thread& t) {
    std::vector<siginfo_t> kept = std::move(t.kept);
    t.kept.clear();
    int sig = inject_first_kept(t, kept);
    t.held = false;
    cont(t, sig);
    send_kept(t.tid, kept, sig != 0 ? 1 : 0);
}

void Tracer::Impl::resume(pid_t tid) {
    Thread& t = held_thread(tid);
    if (!restore_state(t)) {
        if (t.lost) thread_gone(tid, "resume");
        throw AttachError("cannot restore registers of " + who(tid));
    }
    deliver_kept_and_resume(t);
    if (t.lost) thread_gone(tid, "resume");
}

// False if the thread was not detached: it was killed while stopped (now `lost`).
bool Tracer::Impl::detach_one(Thread& t) noexcept {
    restore_state(t);
    int sig = inject_first_kept(t, t.kept);
    if (::ptrace(PTRACE_DETACH, t.tid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig))) != 0) {
        t.lost = true;
        return false;
    }
    send_kept(t.tid, t.kept, sig != 0 ? 1 : 0);
    return true;
}

void Tracer::Impl::shutdown() noexcept {
    try {
        hunting = false;
        call_tid = 0;
        if (mem_fd >= 0) remove_breakpoints();
        release_traps(0);
        detaching = true;
        request_stop_all();
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
    destroy_unwinder();
    close_memory();
    if (mask_saved) pthread_sigmask(SIG_SETMASK, &saved_mask, nullptr);
    mask_saved = false;
}

}  // namespace memray::attach
