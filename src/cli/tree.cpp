// placeholder: being written
#include "cli/commands.hpp"

namespace memray::cli {

void register_tree(CLI::App& app) {
    auto* sub = app.add_subcommand("tree", "Generate a tree view in the terminal for peak memory usage (not supported yet)");
    sub->allow_extras();
    sub->callback([] { throw UsageError("'memray tree' is not supported yet", 2); });
}

}  // namespace memray::cli
