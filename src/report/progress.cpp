#include "report/progress.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>

#include "report/size_format.hpp"

namespace memray::report {

namespace {
constexpr std::chrono::milliseconds k_default_delay{500};
constexpr std::chrono::milliseconds k_redraw{100};
constexpr int k_bar_width = 30;
}  // namespace

ProgressBar::ProgressBar(std::string label)
    : ProgressBar(std::move(label), stderr, isatty(2) != 0, k_default_delay) {}

ProgressBar::ProgressBar(std::string label, std::FILE* out, bool enabled,
                         std::chrono::milliseconds delay)
    : m_label(std::move(label)), m_out(out), m_enabled(enabled), m_delay(delay) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(uint64_t done, uint64_t total) {
    if (!m_enabled) return;
    std::lock_guard<std::mutex> lock(m_mutex);
    auto now = Clock::now();
    if (now - m_start < m_delay) return;
    bool complete = total != 0 && done >= total;
    if (m_drawn && !complete && now - m_last_draw < k_redraw) return;
    m_last_draw = now;
    double share = total ? std::min(1.0, double(done) / double(total)) : 0.0;
    int filled = int(share * k_bar_width + 0.5);
    std::string bar;
    for (int i = 0; i < k_bar_width; ++i) bar += i < filled ? "█" : "░";
    double seconds = std::chrono::duration<double>(now - m_start).count();
    // \r + erase-line: the bar rewrites itself in place.
    std::string line = fmt::format("\r\x1b[2K{} {} {:3.0f}% {} / {} {:.1f}s", m_label, bar,
                                   share * 100, size_fmt(done), size_fmt(total), seconds);
    std::fputs(line.c_str(), m_out);
    std::fflush(m_out);
    m_drawn = true;
}

void ProgressBar::finish() {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (!m_drawn) return;
    std::fputs("\r\x1b[2K", m_out);
    std::fflush(m_out);
    m_drawn = false;
}

}  // namespace memray::report
