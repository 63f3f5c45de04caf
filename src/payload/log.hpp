// Payload logging: one write(2) to stderr from a stack buffer; never allocates, never throws.
#pragma once

namespace memray::payload {

enum class LogLevel { Debug = 0, Info = 1, Warning = 2, Error = 3 };

void set_log_level(LogLevel level) noexcept;
// printf-style; the line is prefixed with "memray: " and gets a trailing newline.
void log(LogLevel level, const char* fmt, ...) noexcept __attribute__((format(printf, 2, 3)));

}  // namespace memray::payload
