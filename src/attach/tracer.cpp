// ptrace Tracer: seize every thread without stopping it, find a safe moment, borrow one thread
// for remote calls, and always put everything back. See tracer.hpp for the contract and
// shared/docs/FIELD-NOTES.md ("Stopping and calling into a live process") for the traps.
// This file holds construction, destruction and the public methods; tracer_impl.hpp says which
// file does each job behind them.
#include "attach/tracer.hpp"

#include "attach/tracer_impl.hpp"

#include <pthread.h>
#include <signal.h>

namespace memray::attach {

using detail::micros_since;

template <typename F>
auto Tracer::Impl::guarded(F f) -> decltype(f()) {
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

Tracer::Tracer(pid_t pid, Options options) : m_impl(std::make_unique<Impl>()) {
    m_impl->pid = pid;
    m_impl->options = std::move(options);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, &m_impl->saved_mask);
    m_impl->mask_saved = true;
    m_impl->cli_boost = std::make_unique<detail::RealTimeBoost>(pid_t(::syscall(SYS_gettid)));
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
        Impl::Thread& t = m_impl->held_thread(tid);
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
        if (w == Impl::Wait::Cancelled) throw Interrupted("interrupt of " + impl.who() + " cancelled");
        if (w == Impl::Wait::Timeout)
            throw AttachError("not every thread of " + impl.who() + " stopped within " +
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
            if (t.run == Impl::Run::Stopped && t.held && !t.lost) {
                m_impl->restore_state(t);
                m_impl->deliver_kept_and_resume(t);
            }
        m_impl->sweep_lost();
    });
}

const Tracer::Stats& Tracer::stats() const { return m_impl->stats; }

}  // namespace memray::attach
