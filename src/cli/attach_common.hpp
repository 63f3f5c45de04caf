// Shared by attach.cpp and detach.cpp: the pid argument and Ctrl-C handling.
#pragma once

#include <fmt/core.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <string>

#include "cli/commands.hpp"

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

}  // namespace memray::cli
