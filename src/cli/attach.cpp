// placeholder: being written
#include "cli/commands.hpp"

namespace memray::cli {

void register_attach(CLI::App& app) {
    auto* sub = app.add_subcommand("attach", "Begin tracking allocations in an already-started process (not supported yet)");
    sub->allow_extras();
    sub->callback([] { throw UsageError("'memray attach' is not supported yet", 2); });
}

}  // namespace memray::cli
