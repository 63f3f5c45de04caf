// The settings the payload accepts: the one contract between the tools that start tracking
// (`memray run`, `memray attach`, later the Python Tracker) and the payload that parses them.
//
// On the wire: "key=value" lines. Values are escaped ('\n' -> "\\n", '\\' -> "\\\\") so a
// command line with newlines (`-c` code) survives. Unknown keys are skipped (a newer tool may
// talk to an older payload that is still loaded in a process). One writer (settings_text.cpp,
// tools only: it allocates and throws), one parser (settings.cpp: no allocation, no exceptions,
// linked into the payload), one round-trip test (test/unit/format).
#pragma once

#include <cstddef>
#include <string>

namespace memray::format {

struct PayloadSettings {
    static constexpr int k_default_log_level = 2;   // warnings
    static constexpr int k_default_handoff_ms = 10000;

    char output[4096] = {};       // capture file (required unless live); with handoff only shown in messages
    char command[4096] = {};      // command line stored in the header ("" = /proc/self/cmdline)
    bool native = false;          // native return addresses (always on for non-Python processes)
    bool compress = true;         // lz4 blocks
    bool force = false;           // overwrite an existing output file
    bool output_fd_handoff = false;  // start_async: receive the open output over SCM_RIGHTS
    int handoff_timeout_ms = k_default_handoff_ms;  // how long to wait for that descriptor
    int log_level = k_default_log_level;            // 0 debug .. 3 error
    bool follow_fork = false;  // a forked child records into <output stem>.<child pid>
    bool trace_python_allocators = false;  // hook CPython's PyMem/PyObject domains (PYMALLOC_*)
    bool aggregate = false;  // --aggregate: write checkpoints of per-location tables
    // Live mode (docs/live.md): instead of a file, the capture stream goes to one viewer that
    // connects to 127.0.0.1:live_port; `output` then only names it in messages.
    int live_port = 0;                // 1-65535; 0 = not live
    bool live_reconnect = false;      // --live-remote: accept a new viewer after one leaves
    int live_accept_timeout_ms = 0;   // how long to wait for a viewer; 0 = as long as it takes
};

// Parses `text` into `out` (which keeps its defaults for keys not given). Returns 0, or -EINVAL
// with one line in `err` (malformed line, bad value, value too long, no output and not live). Skipped unknown
// keys are counted in `*unknown` when it is not null.
int parse_settings(const char* text, PayloadSettings& out, char* err, size_t err_len,
                   int* unknown = nullptr) noexcept;

// The text for `s`: every key, escaped. Throws std::invalid_argument when a field is not valid
// (no output, log level out of range).
std::string settings_text(const PayloadSettings& s);

// Copies `value` into one of the fixed fields; throws std::length_error when it does not fit.
void set_setting(char* field, size_t capacity, const std::string& value);
template <size_t N>
void set_setting(char (&field)[N], const std::string& value) {
    set_setting(field, N, value);
}

}  // namespace memray::format
