// placeholder: being written
#include "cli/commands.hpp"

namespace memray::cli {

void register_flamegraph(CLI::App& app) {
    auto* sub = app.add_subcommand("flamegraph", "Generate an HTML flame graph for peak memory usage (not supported yet)");
    sub->allow_extras();
    sub->callback([] { throw UsageError("'memray flamegraph' is not supported yet", 2); });
}

}  // namespace memray::cli
