// What `memray run` checks before a Python target runs, as memray does in-process: the
// interpreter is one the payload can track, and the file or -c code is valid Python. One short
// run of the interpreter answers both.
#pragma once

#include <string>

namespace memray::launch {

// The Python versions the payload reads frames of (src/payload/python_stack.cpp).
inline constexpr int k_oldest_python_minor = 8;   // 3.8
inline constexpr int k_newest_python_minor = 13;  // 3.13

// Throws LaunchError for an interpreter outside 3.8-3.13 ("unsupported Python 2.7 ..."), or for a
// script (`is_file`) or code that does not parse, with memray's message. An interpreter whose
// version cannot be learned is left for the launch to report.
void check_python_target(const std::string& python, const std::string& target, bool is_file);

}  // namespace memray::launch
