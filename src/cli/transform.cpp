// placeholder: being written
#include "cli/commands.hpp"

namespace memray::cli {

void register_transform(CLI::App& app) {
    auto* sub = app.add_subcommand("transform", "Generate reports files in different formats (not supported yet)");
    sub->allow_extras();
    sub->callback([] { throw UsageError("'memray transform' is not supported yet", 2); });
}

}  // namespace memray::cli
