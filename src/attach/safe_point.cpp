// The safe point: a thread stopped at a moment where it holds no allocator or loader lock, so
// that a remote dlopen cannot deadlock on it. Temporary int3 breakpoints at allocator entry
// points catch threads on their way in; libunwind-ptrace walks the stopped thread's stack to
// prove no frame is inside the loader or a locking libc function; a thread blocked in a system
// call with such a stack is the fallback.
#include "attach/proc_files.hpp"
#include "attach/tracer_impl.hpp"
#include "attach/unwinder.hpp"

#include <sys/ptrace.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace memray::attach {

using detail::hex;
using detail::micros_since;

namespace {

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

bool in(const std::vector<detail::Range>& ranges, uint64_t ip) {
    for (const detail::Range& r : ranges)
        if (ip >= r.start && ip < r.end) return true;
    return false;
}

}  // namespace

// Without an address space the stack check says "libunwind unavailable" and finds no thread.
void Tracer::Impl::create_unwinder() { unwinder = std::make_unique<detail::Unwinder>(pid); }

void Tracer::Impl::destroy_unwinder() noexcept { unwinder.reset(); }

// With the target running: the code ranges of the loader and libc, and everything the stack
// check needs from the objects' files, so that a stopped thread waits only for its own walk.
void Tracer::Impl::load_ranges() {
    loader_ranges.clear();
    libc_ranges.clear();
    std::vector<Mapping> maps = read_maps(pid);
    for (const Mapping& m : maps) {
        if (proc::is_loader(m.path))
            loader_ranges.push_back({m.start, m.end});
        else if (proc::is_libc(m.path))
            libc_ranges.push_back({m.start, m.end});
    }
    if (unwinder) unwinder->prepare(maps, [](const std::string& path) { return proc::is_libc(path); });
}

// True if the stopped thread's stack holds no frame of the loader or the allocator.
// `skip_first`: frame 0 is the breakpoint (the entry of malloc/free itself).
bool Tracer::Impl::stack_is_safe(pid_t tid, bool skip_first, std::string& why) {
    if (!unwinder) {
        why = "libunwind unavailable";
        return false;
    }
    bool safe = true;
    auto frame = [&](int depth, uint64_t ip) {
        // Return addresses point after the call; look up the call instruction itself.
        uint64_t lookup = depth == 0 ? ip : ip - 1;
        if (in(loader_ranges, lookup)) {
            why = "frame " + std::to_string(depth) + " is in the dynamic loader";
            safe = false;
            return false;
        }
        // Allocator and dl_iterate_phdr frames live in libc; names elsewhere are not needed.
        if ((depth > 0 || !skip_first) && in(libc_ranges, lookup)) {
            const char* name = unwinder->function_name(lookup);
            if (name && is_locking_function(name)) {
                why = "frame " + std::to_string(depth) + " is in " + name;
                safe = false;
                return false;
            }
        }
        return true;
    };
    // Without unwind info for a frame we cannot prove anything about the outer frames.
    if (!unwinder->walk(tid, 256, frame, why)) return false;
    return safe;
}

bool Tracer::Impl::check(pid_t tid, bool skip_first, int64_t& us) {
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

void Tracer::Impl::plant(const std::vector<uint64_t>& entry_points) {
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

bool Tracer::Impl::remove_breakpoints() noexcept {
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
void Tracer::Impl::step_over(Thread& t, uint64_t at) {
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

pid_t Tracer::Impl::stop_at_safe_point(const std::vector<uint64_t>& entry_points,
                                       std::chrono::milliseconds wait) {
    auto start = Clock::now();
    stats = {};
    load_ranges();
    // A thread whose creator was seized in the middle of clone() is not traced, and a
    // breakpoint trap in an untraced thread kills the process (SIGTRAP; seen once in 200
    // attaches to a thread-churning Python program). Stop every thread once: a clone in flight
    // has then returned, so its child is listed in /proc/PID/task. Seize those and repeat until
    // a pass finds none; everything runs again before any breakpoint is planted. No call is
    // made while threads are stopped, so this cannot deadlock on a lock they hold.
    for (int round = 0; round < 100; ++round) {
        Wait w = interrupt_everything(std::min(start + options.timeout, Clock::now() + wait), true);
        int found = seize_new_threads();
        for (auto& [tid, t] : threads) {
            if (t.run == Run::Stopped && t.held) deliver_kept_and_resume(t);
            else if (t.interrupt_pending) {
                t.interrupt_pending = false;  // its stop will come and be resumed by handle()
                t.held = false;
            }
        }
        if (w == Wait::Cancelled) throw interrupted_error();
        if (found == 0) break;
    }
    // Found now, while nothing is stopped, rather than by the first syscall() on the chosen
    // thread.
    try {
        find_syscall_instruction();
    } catch (const AttachError&) {
    }
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
        if (cancel_requested()) throw interrupted_error();
    }
    stats.stop_at_safe_point_us = micros_since(start);
    log("thread " + std::to_string(chosen) + " stopped at a safe point (" +
        (stats.from_breakpoint ? "breakpoint" : "system call") + ") after " +
        std::to_string(stats.stop_at_safe_point_us) + " us; stack check " +
        std::to_string(stats.unwind_us) + " us");
    return chosen;
}

pid_t Tracer::Impl::hunt(const std::vector<uint64_t>& entry_points, Clock::time_point deadline) {
    traps.clear();
    hunting = true;
    pid_t chosen = 0;
    try {
        plant(entry_points);
        while (chosen == 0) {
            Wait w = pump(deadline, [&] { return !traps.empty(); });
            if (w == Wait::Cancelled) throw interrupted_error();
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

void Tracer::Impl::release_traps(pid_t keep) noexcept {
    for (pid_t tid : traps) {
        auto it = threads.find(tid);
        if (tid != keep && it != threads.end()) cont(it->second);
    }
    traps.clear();
}

pid_t Tracer::Impl::fallback(Clock::time_point overall) {
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
    if (w == Wait::Cancelled) throw interrupted_error();
    if (chosen) save_state(threads.at(chosen));
    return chosen;
}

}  // namespace memray::attach
