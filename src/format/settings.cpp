// Parser of the payload settings (settings.hpp). Runs inside the target: no allocation, no
// exceptions, no locale.
#include "format/settings.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace memray::format {

namespace {

bool parse_bool(const char* v, size_t n, bool& out) noexcept {
    if (n == 1 && (v[0] == '0' || v[0] == '1')) {
        out = v[0] == '1';
        return true;
    }
    return false;
}

bool parse_uint(const char* v, size_t n, size_t max_digits, int& out) noexcept {
    if (n == 0 || n > max_digits) return false;
    int value = 0;
    for (size_t i = 0; i < n; ++i) {
        if (v[i] < '0' || v[i] > '9') return false;
        value = value * 10 + (v[i] - '0');
    }
    out = value;
    return true;
}

// Unescapes v[0..n) into dst (capacity cap, NUL-terminated). False when it does not fit or an
// escape is unknown.
bool copy_unescaped(const char* v, size_t n, char* dst, size_t cap) noexcept {
    size_t o = 0;
    for (size_t i = 0; i < n; ++i) {
        char c = v[i];
        if (c == '\\') {
            if (++i == n) return false;
            if (v[i] == 'n') c = '\n';
            else if (v[i] == '\\') c = '\\';
            else return false;
        }
        if (o + 1 >= cap) return false;
        dst[o++] = c;
    }
    dst[o] = '\0';
    return true;
}

}  // namespace

int parse_settings(const char* text, PayloadSettings& out, char* err, size_t err_len,
                   int* unknown) noexcept {
    if (!text) {
        snprintf(err, err_len, "no settings given");
        return -EINVAL;
    }
    const char* p = text;
    while (*p) {
        const char* line_end = std::strchr(p, '\n');
        if (!line_end) line_end = p + std::strlen(p);
        if (line_end != p) {
            const char* eq = static_cast<const char*>(std::memchr(p, '=', size_t(line_end - p)));
            if (!eq) {
                snprintf(err, err_len, "malformed setting '%.*s' (expected key=value)",
                         int(line_end - p), p);
                return -EINVAL;
            }
            size_t klen = size_t(eq - p);
            const char* v = eq + 1;
            size_t vlen = size_t(line_end - v);
            auto key_is = [&](const char* k) {
                return std::strlen(k) == klen && std::memcmp(p, k, klen) == 0;
            };
            bool ok = true;
            if (key_is("output")) ok = copy_unescaped(v, vlen, out.output, sizeof out.output);
            else if (key_is("command")) ok = copy_unescaped(v, vlen, out.command, sizeof out.command);
            else if (key_is("native")) ok = parse_bool(v, vlen, out.native);
            else if (key_is("compress")) ok = parse_bool(v, vlen, out.compress);
            else if (key_is("force")) ok = parse_bool(v, vlen, out.force);
            else if (key_is("output_fd_handoff")) ok = parse_bool(v, vlen, out.output_fd_handoff);
            else if (key_is("handoff_timeout_ms")) ok = parse_uint(v, vlen, 7, out.handoff_timeout_ms);
            else if (key_is("log_level")) ok = parse_uint(v, vlen, 1, out.log_level) && out.log_level <= 3;
            else if (key_is("follow_fork")) ok = parse_bool(v, vlen, out.follow_fork);
            else if (key_is("trace_python_allocators"))
                ok = parse_bool(v, vlen, out.trace_python_allocators);
            else if (key_is("live_port"))
                ok = parse_uint(v, vlen, 5, out.live_port) && out.live_port >= 1 && out.live_port <= 65535;
            else if (key_is("live_reconnect")) ok = parse_bool(v, vlen, out.live_reconnect);
            else if (key_is("live_accept_timeout_ms"))
                ok = parse_uint(v, vlen, 7, out.live_accept_timeout_ms);
            else if (key_is("aggregate")) ok = parse_bool(v, vlen, out.aggregate);
            else if (unknown) ++*unknown;
            if (!ok) {
                snprintf(err, err_len, "invalid value for setting '%.*s': '%.*s'", int(klen), p,
                         int(vlen), v);
                return -EINVAL;
            }
        }
        p = *line_end ? line_end + 1 : line_end;
    }
    if (!out.output[0] && out.live_port == 0) {
        snprintf(err, err_len, "no output file given (setting 'output')");
        return -EINVAL;
    }
    return 0;
}

}  // namespace memray::format
