// Shared by attach.cpp and detach.cpp: the pid argument, Ctrl-C handling and the stop.
#pragma once

#include <fmt/core.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>

#include "cli/commands.hpp"
#include "inject/injector.hpp"

namespace memray::cli {

// A pid as given on the command line: a positive decimal number.
inline pid_t parse_pid(const std::string& text) {
    char* end = nullptr;
    errno = 0;
    long value = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || value <= 0 || value > 0x3fffffff)
        throw UsageError(fmt::format("invalid process id '{}'", text), 2);
    return static_cast<pid_t>(value);
}

// SIGINT/SIGTERM/SIGHUP set a flag instead of killing the CLI: a CLI that dies in the middle of a
// remote call would leave the target with borrowed registers. Whoever waits checks cancelled().
class CancelOnSignals {
  public:
    CancelOnSignals() {
        struct sigaction sa {};
        sa.sa_handler = [](int) { flag().store(true); };
        sigemptyset(&sa.sa_mask);
        for (int i = 0; i < 3; ++i) ::sigaction(k_signals[i], &sa, &m_old[i]);
    }
    ~CancelOnSignals() {
        for (int i = 0; i < 3; ++i) ::sigaction(k_signals[i], &m_old[i], nullptr);
    }
    CancelOnSignals(const CancelOnSignals&) = delete;
    CancelOnSignals& operator=(const CancelOnSignals&) = delete;
    bool cancelled() const { return flag().load(); }

  private:
    static std::atomic<bool>& flag() {
        static std::atomic<bool> f{false};
        return f;
    }
    static constexpr int k_signals[3] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction m_old[3] {};
};

// Ends the session in `pid` as `memray detach` does. A write error that ended tracking early
// (disk full, EIO) is the payload's to report, whether it happened before this call (the session
// had already stopped: NotAttached from the injector) or during the final flush: it is thrown as
// inject::TrackingStopped, so that the command exits 1 instead of writing "Wrote FILE".
inline inject::DetachResult stop_tracking(pid_t pid, std::chrono::milliseconds timeout, bool verbose,
                                          const std::function<bool()>& cancelled = {}) {
    inject::DetachResult r;
    try {
        r = inject::detach_payload(pid, timeout, verbose, cancelled);
    } catch (const inject::NotAttached&) {
        if (auto failure = inject::take_write_failure(pid, true))
            throw inject::TrackingStopped(*failure);
        throw;
    }
    if (auto failure = inject::take_write_failure(pid, false)) throw inject::TrackingStopped(*failure);
    return r;
}

}  // namespace memray::cli
