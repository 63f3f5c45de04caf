// `memray table [-o FILE] [-f] [--leaks | --temporary-allocations |
//  --temporary-allocation-threshold N] [--split-threads] [--no-web] capture`: see html_reporter.hpp.
#include "cli/html_reporter.hpp"

namespace memray::cli {

void register_table(CLI::App& app) { register_html_reporter(app, HtmlReporter::Table); }

}  // namespace memray::cli
