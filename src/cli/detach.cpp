// placeholder: being written
#include "cli/commands.hpp"

namespace memray::cli {

void register_detach(CLI::App& app) {
    auto* sub = app.add_subcommand("detach", "End the tracking started by a previous `memray attach` (not supported yet)");
    sub->allow_extras();
    sub->callback([] { throw UsageError("'memray detach' is not supported yet", 2); });
}

}  // namespace memray::cli
