#include "report/json_writer.hpp"

#include <fmt/core.h>

namespace memray::report {

void JsonWriter::before_value() {
    if (m_after_key) {
        m_after_key = false;
        return;
    }
    if (m_levels.empty()) return;
    Level& l = m_levels.back();
    if (!l.empty) m_out += ',';
    l.empty = false;
    m_out += '\n';
    m_out.append(2 * m_levels.size(), ' ');
}

void JsonWriter::open(char c) {
    before_value();
    m_out += c;
    m_levels.push_back({});
}

void JsonWriter::close(char c) {
    bool empty = m_levels.back().empty;
    m_levels.pop_back();
    if (!empty) {
        m_out += '\n';
        m_out.append(2 * m_levels.size(), ' ');
    }
    m_out += c;
}

void JsonWriter::key(std::string_view k) {
    before_value();
    m_out += quote(k);
    m_out += ": ";
    m_after_key = true;
}

void JsonWriter::value(std::string_view s) {
    before_value();
    m_out += quote(s);
}

void JsonWriter::value(uint64_t v) {
    before_value();
    m_out += std::to_string(v);
}

void JsonWriter::value(int64_t v) {
    before_value();
    m_out += std::to_string(v);
}

void JsonWriter::value(bool v) {
    before_value();
    m_out += v ? "true" : "false";
}

std::string JsonWriter::quote(std::string_view s) {
    std::string out = "\"";
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        switch (c) {
            case '"': out += "\\\""; ++i; continue;
            case '\\': out += "\\\\"; ++i; continue;
            case '\n': out += "\\n"; ++i; continue;
            case '\r': out += "\\r"; ++i; continue;
            case '\t': out += "\\t"; ++i; continue;
            case '\b': out += "\\b"; ++i; continue;
            case '\f': out += "\\f"; ++i; continue;
            default: break;
        }
        if (c < 0x20) {
            out += fmt::format("\\u{:04x}", c);
            ++i;
            continue;
        }
        if (c < 0x80) {
            out += char(c);
            ++i;
            continue;
        }
        // Decode one UTF-8 sequence; invalid bytes are written as the code point of the byte.
        uint32_t cp = c;
        size_t len = 1;
        if ((c & 0xE0) == 0xC0) cp = c & 0x1F, len = 2;
        else if ((c & 0xF0) == 0xE0) cp = c & 0x0F, len = 3;
        else if ((c & 0xF8) == 0xF0) cp = c & 0x07, len = 4;
        bool ok = len > 1 && i + len <= s.size();
        for (size_t k = 1; ok && k < len; ++k) {
            unsigned char cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) ok = false;
            else cp = (cp << 6) | (cc & 0x3F);
        }
        if (!ok) {
            cp = c;
            len = 1;
        }
        if (cp >= 0x10000) {
            cp -= 0x10000;
            out += fmt::format("\\u{:04x}\\u{:04x}", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
        } else {
            out += fmt::format("\\u{:04x}", cp);
        }
        i += len;
    }
    out += '"';
    return out;
}

}  // namespace memray::report
