// `memray tree [-b N] [--temporary-allocations | --temporary-allocation-threshold N] capture`:
// the interactive tree on a terminal, the static tree when stdout (or stdin) is not one.
#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cli/view_options.hpp"
#include "report/capture.hpp"
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"
#include "report/tree_report.hpp"
#include "tui/terminal.hpp"
#include "tui/tree_model.hpp"
#include "tui/tree_view.hpp"

namespace memray::cli {

namespace {

struct TreeCliOptions {
    std::string results;
    int biggest = 200;
    int64_t threshold = -1;
    bool temporary = false;
    report::SymbolizerOptions symbols;
};

void run_tree(const TreeCliOptions& o) {
    if (o.biggest < 1) throw UsageError("--biggest-allocs must be at least 1", 2);
    auto reader = report::open_capture(o.results);
    report::SnapshotOptions so = view_snapshot_options(false, o.temporary, o.threshold);
    report::TreeOptions to;
    to.biggest = size_t(o.biggest);
    if (so.kind == report::SnapshotKind::Temporary)
        to.title = fmt::format(
            "Temporary allocations (freed after at most {} other allocations on their thread)",
            so.temporary_threshold);
    report::Snapshot snapshot = read_snapshot(*reader, so, o.results);
    ReportStacks stacks(*reader, o.symbols);
    const report::StackResolver& resolver = stacks.resolver();
    if (isatty(0) && isatty(1)) {
        tui::TreeModel model(report::biggest_stacks(snapshot, resolver, to), to.biggest);
        try {
            tui::run_tree_view(model);
            stacks.print_warnings();  // after the full-screen session, which would hide them
            return;
        } catch (const tui::TerminalError&) {
            // e.g. TERM names no known terminal: the static tree still works there
        }
    }
    to.color = isatty(1) != 0;
    std::string text = report::render_tree(snapshot, resolver, to);
    stacks.print_warnings();
    std::fwrite(text.data(), 1, text.size(), stdout);
}

}  // namespace

void register_tree(CLI::App& app) {
    auto opts = std::make_shared<TreeCliOptions>();
    auto* sub = app.add_subcommand(
        "tree", "Generate a tree view in the terminal for peak memory usage");
    sub->add_option("results", opts->results, "Results of the tracker run")->required();
    add_symbol_options(sub, opts->symbols);
    sub->add_option("-b,--biggest-allocs", opts->biggest,
                    "Show the N biggest allocations (default: 200)")
        ->type_name("N");
    add_temporary_options(sub, opts->threshold, opts->temporary);
    sub->callback([opts] { run_tree(*opts); });
}

}  // namespace memray::cli
