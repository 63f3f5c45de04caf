// placeholder: being written
#include "cli/commands.hpp"

namespace memray::cli {

void register_table(CLI::App& app) {
    auto* sub = app.add_subcommand("table", "Generate an HTML table with all records in the peak memory usage (not supported yet)");
    sub->allow_extras();
    sub->callback([] { throw UsageError("'memray table' is not supported yet", 2); });
}

}  // namespace memray::cli
