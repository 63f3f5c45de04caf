#include "payload/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>

namespace memray::payload {

namespace {
std::atomic<int> g_level{int(LogLevel::Warning)};
}

void set_log_level(LogLevel level) noexcept { g_level.store(int(level), std::memory_order_relaxed); }

void log(LogLevel level, const char* fmt, ...) noexcept {
    if (int(level) < g_level.load(std::memory_order_relaxed)) return;
    int saved_errno = errno;
    char buf[1024];
    static constexpr char k_prefix[] = "memray: ";
    size_t n = sizeof k_prefix - 1;
    __builtin_memcpy(buf, k_prefix, n);
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
    va_end(ap);
    if (w > 0) n += size_t(w) < sizeof buf - n - 1 ? size_t(w) : sizeof buf - n - 2;
    buf[n++] = '\n';
    // One write so that lines of concurrent writers do not interleave.
    ssize_t r = write(STDERR_FILENO, buf, n);
    (void)r;
    errno = saved_errno;
}

}  // namespace memray::payload
