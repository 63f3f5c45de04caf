// Minimal JSON output with the layout of Python's json.dump(indent=2) (ensure_ascii: non-ASCII
// written as \uXXXX), so our files diff cleanly against memray's.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace memray::report {

class JsonWriter {
  public:
    void begin_object() { open('{'); }
    void end_object() { close('}'); }
    void begin_array() { open('['); }
    void end_array() { close(']'); }
    void key(std::string_view k);
    void value(std::string_view s);
    void value(const char* s) { value(std::string_view(s)); }
    void value(uint64_t v);
    void value(int64_t v);
    void value(bool v);
    const std::string& str() const { return m_out; }

    static std::string quote(std::string_view s);

  private:
    void before_value();
    void open(char c);
    void close(char c);

    struct Level {
        bool empty = true;
    };
    std::string m_out;
    std::vector<Level> m_levels;
    bool m_after_key = false;
};

}  // namespace memray::report
