// What `memray run` checks before a Python target runs, as memray does in-process: the
// interpreter is one the payload can track, and the file or -c code is valid Python. The
// bootstrap (bootstrap.py) makes both checks inside the target's interpreter before it prints
// anything or loads the payload; this runs them alone, for the live view, which takes the terminal
// before the program starts and sends the program's output to a file.
#pragma once

#include <string>

namespace memray::launch {

// The `python3 -c` argument: fetches the bootstrap from MEMRAY_BOOTSTRAP (keeps `ps` readable)
// and compiles it under its own file name. Python 2.7 runs it too, as far as the version check.
inline constexpr const char* k_bootstrap_stub =
    "import os;exec(compile(os.environ.pop('MEMRAY_BOOTSTRAP'),'<memray>','exec'))";

// Runs the bootstrap's checks alone in `python` (mode: "file", "module" or "code", as the
// bootstrap names them). Throws LaunchError with the bootstrap's message ("unsupported Python 2.7
// ...", memray's "Only valid Python files or commands ..."). An interpreter that cannot run it at
// all is left for the launch to report.
void check_python_target(const std::string& python, const char* mode, const std::string& target);

}  // namespace memray::launch
