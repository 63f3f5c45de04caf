// Writer of the payload settings (settings.hpp), for the tools: the parser's inverse.
#include <stdexcept>

#include "format/settings.hpp"

namespace memray::format {

namespace {

void put_escaped(std::string& out, const char* key, const char* value) {
    out += key;
    out += '=';
    for (const char* c = value; *c; ++c) {
        if (*c == '\n') out += "\\n";
        else if (*c == '\\') out += "\\\\";
        else out += *c;
    }
    out += '\n';
}

void put(std::string& out, const char* key, long value) {
    out += key;
    out += '=';
    out += std::to_string(value);
    out += '\n';
}

}  // namespace

void set_setting(char* field, size_t capacity, const std::string& value) {
    // The parser needs room for the terminating NUL after unescaping, which never grows a value.
    if (value.size() + 1 > capacity)
        throw std::length_error("setting too long (" + std::to_string(value.size()) + " bytes, at most " +
                                std::to_string(capacity - 1) + ")");
    value.copy(field, value.size());
    field[value.size()] = '\0';
}

std::string settings_text(const PayloadSettings& s) {
    if (!s.output[0] && s.live_port == 0) throw std::invalid_argument("the settings name no output file");
    if (s.log_level < 0 || s.log_level > 3)
        throw std::invalid_argument("log level " + std::to_string(s.log_level) + " is not 0-3");
    if (s.handoff_timeout_ms < 0 || s.handoff_timeout_ms > 9999999)
        throw std::invalid_argument("handoff timeout out of range");
    if (s.live_port < 0 || s.live_port > 65535)
        throw std::invalid_argument("live port " + std::to_string(s.live_port) + " is not 0-65535");
    if (s.live_accept_timeout_ms < 0 || s.live_accept_timeout_ms > 9999999)
        throw std::invalid_argument("live accept timeout out of range");
    std::string out;
    put_escaped(out, "output", s.output);
    if (s.command[0]) put_escaped(out, "command", s.command);
    put(out, "native", s.native);
    put(out, "compress", s.compress);
    put(out, "force", s.force);
    put(out, "output_fd_handoff", s.output_fd_handoff);
    put(out, "handoff_timeout_ms", s.handoff_timeout_ms);
    put(out, "log_level", s.log_level);
    put(out, "follow_fork", s.follow_fork);
    put(out, "trace_python_allocators", s.trace_python_allocators);
    put(out, "aggregate", s.aggregate);
    if (s.live_port) {
        put(out, "live_port", s.live_port);
        put(out, "live_reconnect", s.live_reconnect);
        put(out, "live_accept_timeout_ms", s.live_accept_timeout_ms);
    }
    return out;
}

}  // namespace memray::format
