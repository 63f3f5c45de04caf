// A progress bar on stderr for reading big captures: shown only when stderr is a terminal and
// the work has already taken longer than a moment, so quick reports and pipelines stay quiet.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>

namespace memray::report {

class ProgressBar {
  public:
    // `label` names the work ("Reading capture.bin"). Enabled when stderr is a terminal.
    explicit ProgressBar(std::string label);
    // For tests: draws on `out` when `enabled`, after `delay`.
    ProgressBar(std::string label, std::FILE* out, bool enabled, std::chrono::milliseconds delay);
    ~ProgressBar();  // clears the bar
    ProgressBar(const ProgressBar&) = delete;
    ProgressBar& operator=(const ProgressBar&) = delete;

    // Thread-safe; redraws at most ten times a second.
    void update(uint64_t done, uint64_t total);
    // Erases the bar (once it was drawn) so that what follows starts on a clean line.
    void finish();
    // A callback for SnapshotOptions::progress that updates this bar.
    std::function<void(uint64_t, uint64_t)> callback() {
        return [this](uint64_t done, uint64_t total) { update(done, total); };
    }

  private:
    using Clock = std::chrono::steady_clock;
    std::string m_label;
    std::FILE* m_out;
    bool m_enabled;
    std::chrono::milliseconds m_delay;
    Clock::time_point m_start = Clock::now();
    Clock::time_point m_last_draw{};
    bool m_drawn = false;
    std::mutex m_mutex;
};

}  // namespace memray::report
