// Shared by live.cpp, attach.cpp and run.cpp: showing a live stream (docs/live.md).
#pragma once

#include <memory>

#include "live/stream_source.hpp"
#include "report/symbolizer.hpp"

namespace memray::cli {

// A free port on 127.0.0.1 for the tracked process to listen on.
int choose_live_port();
// UsageError "cannot listen on 127.0.0.1:PORT: ..." when the tracked process could not listen
// there (the port is in use): said before the program starts, not by the program.
void check_live_port(int port);
// The live view on a terminal (stdin and stdout), else the table as text until the stream ends
// or SIGINT/SIGTERM. Closes the source. Throws UsageError when the stream failed (not ours, ...).
int show_live(live::StreamSource& source);
// The symbolizer the live view names native frames with.
std::unique_ptr<report::Symbolizer> live_symbolizer();

}  // namespace memray::cli
