#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "cli/commands.hpp"
#include "format/reader.hpp"
#include "memray_config.h"

namespace {

// memray's global -v (repeatable): more log output. Ours is the payload's, whose level
// MEMRAY_LOG_LEVEL sets (launch::log_level_from_environment); an explicit value wins.
void raise_verbosity(std::int64_t count) {
    if (count <= 0 || std::getenv("MEMRAY_LOG_LEVEL")) return;
    ::setenv("MEMRAY_LOG_LEVEL", count == 1 ? "1" : "0", 1);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"memray: memory profiler for Python and native programs"};
    app.set_version_flag("-V,--version", std::string("memray ") + MEMRAY_VERSION);
    app.add_flag_function("-v,--verbose", raise_verbosity,
                          "More log output from the tracked process (-v info, -vv debug); "
                          "MEMRAY_LOG_LEVEL wins when set");
    app.require_subcommand(1);
    int exit_status = 0;
    memray::cli::register_run(app, exit_status);
    memray::cli::register_summary(app);
    memray::cli::register_stats(app);
    memray::cli::register_parse(app);
    memray::cli::register_attach(app);
    memray::cli::register_detach(app);
    memray::cli::register_flamegraph(app);
    memray::cli::register_table(app);
    memray::cli::register_tree(app);
    memray::cli::register_transform(app);
    memray::cli::register_live(app);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version exit 0; every command-line mistake exits 2, as memray's argparse.
        return app.exit(e) == 0 ? 0 : memray::cli::k_usage_exit;
    } catch (const memray::cli::UsageError& e) {
        std::fprintf(stderr, "memray: error: %s\n", e.what());
        return e.code();
    } catch (const memray::format::FormatError& e) {
        std::fprintf(stderr, "memray: error: %s\n", e.what());
        return 1;
    } catch (const memray::format::FileError& e) {
        std::fprintf(stderr, "memray: error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "memray: error: %s\n", e.what());
        return 1;
    }
    return exit_status;
}
