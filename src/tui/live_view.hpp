// The live view: memray's terminal UI over a live::Source (src/live/source.hpp). Used by
// `memray attach PID` without -o, `memray run --live` and `memray live PORT`.
#pragma once

#include <string>

#include "live/source.hpp"

namespace memray::tui {

struct LiveViewOptions {
    std::string flamegraph_dir = ".";  // where the "write flame graph" key puts its HTML pages
};

// Runs the view until the user quits (q, Esc, Ctrl-C). The terminal is restored on every exit
// path and source.close() is called before returning. Returns the exit status for main (0 when
// the user quit). Throws std::runtime_error when stdin/stdout is not a terminal.
int run_live_view(live::Source& source, const LiveViewOptions& options);

}  // namespace memray::tui
