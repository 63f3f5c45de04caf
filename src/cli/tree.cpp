// `memray tree [-b N] [--temporary-allocations | --temporary-allocation-threshold N] capture`
#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "report/capture.hpp"
#include "report/progress.hpp"
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"
#include "report/tree_report.hpp"

namespace memray::cli {

namespace {

struct TreeCliOptions {
    std::string results;
    int biggest = 200;
    int64_t threshold = -1;
    bool temporary = false;
};

void run_tree(const TreeCliOptions& o) {
    if (o.biggest < 1) throw UsageError("--biggest-allocs must be at least 1", 2);
    auto reader = report::open_capture(o.results);
    report::SnapshotOptions so;
    report::TreeOptions to;
    to.biggest = size_t(o.biggest);
    if (o.temporary || o.threshold >= 0) {
        so.kind = report::SnapshotKind::Temporary;
        so.temporary_threshold = o.threshold >= 0 ? uint64_t(o.threshold) : 1;
        to.title = fmt::format(
            "Temporary allocations (freed after at most {} other allocations on their thread)",
            so.temporary_threshold);
    }
    auto slash = o.results.rfind('/');
    report::ProgressBar bar("Reading " +
                            (slash == std::string::npos ? o.results : o.results.substr(slash + 1)));
    so.progress = bar.callback();
    report::Snapshot snapshot = report::build_snapshot(*reader, so);
    bar.finish();
    report::warn_if_truncated(*reader);
    report::StackResolver resolver(*reader);
    to.color = isatty(1) != 0;
    std::string text = report::render_tree(snapshot, resolver, to);
    std::fwrite(text.data(), 1, text.size(), stdout);
}

}  // namespace

void register_tree(CLI::App& app) {
    auto opts = std::make_shared<TreeCliOptions>();
    auto* sub = app.add_subcommand(
        "tree", "Generate a tree view in the terminal for peak memory usage");
    sub->add_option("results", opts->results, "Results of the tracker run")->required();
    sub->add_option("-b,--biggest-allocs", opts->biggest,
                    "Show the N biggest allocations (default: 200)")
        ->type_name("N");
    auto* threshold = sub->add_option(
        "--temporary-allocation-threshold", opts->threshold,
        "Report temporary allocations: an allocation is temporary if at most N other "
        "allocations occur (on its thread) before it is deallocated");
    threshold->type_name("N")->check(CLI::NonNegativeNumber);
    auto* temporary = sub->add_flag("--temporary-allocations", opts->temporary,
                                    "Equivalent to --temporary-allocation-threshold=1");
    threshold->excludes(temporary);
    temporary->excludes(threshold);
    sub->callback([opts] { run_tree(*opts); });
}

}  // namespace memray::cli
