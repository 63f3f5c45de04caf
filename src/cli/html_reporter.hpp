// Shared by `memray flamegraph` (flamegraph.cpp, which defines it) and `memray table`
// (table.cpp): the options, output naming and writing of the HTML reporters.
#pragma once

#include "cli/commands.hpp"

namespace memray::cli {

enum class HtmlReporter { Flamegraph, Table };
void register_html_reporter(CLI::App& app, HtmlReporter which);

}  // namespace memray::cli
