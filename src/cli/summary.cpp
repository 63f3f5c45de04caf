// `memray summary [-s N] [-r N] [--temporary-allocations | --temporary-allocation-threshold N]
//  capture`
#include <fmt/core.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cli/view_options.hpp"
#include "report/allocation_tracker.hpp"
#include "report/capture.hpp"
#include "report/stack_resolver.hpp"
#include "report/summary.hpp"

namespace memray::cli {

namespace {

struct SummaryOptions {
    std::string results;
    int sort_column = 1;
    int max_rows = 0;
    int64_t threshold = -1;  // --temporary-allocation-threshold; < 0: not given
    bool temporary = false;
    report::SymbolizerOptions symbols;
};

void run_summary(const SummaryOptions& o) {
    if (o.sort_column < 1 || o.sort_column > 5)
        throw UsageError("The --sort-column argument must be between 1 and 5", 2);
    auto reader = report::open_capture(o.results);
    report::Summary summary;
    // An aggregated capture has no events for the tracker: its checkpoint is the snapshot.
    if (o.temporary || o.threshold >= 0 || reader->aggregated()) {
        report::SnapshotOptions so = view_snapshot_options(false, o.temporary, o.threshold);
        report::Snapshot snapshot = read_snapshot(*reader, so, o.results);
        ReportStacks stacks(*reader, o.symbols);
        summary = report::compute_summary(snapshot, stacks.resolver());
        stacks.print_warnings();
    } else {
        report::AllocationTracker tracker(false, false);  // no size histogram, no per-stack totals
        report::track_capture(*reader, tracker);
        report::warn_if_truncated(*reader);
        ReportStacks stacks(*reader, o.symbols);
        summary = report::compute_summary(tracker, stacks.resolver(), report::SummaryView::Peak);
        stacks.print_warnings();
    }

    report::TableStyle style;
    size_t lines = 24;  // memray's default when the size is unknown
    if (isatty(1)) {
        style.color = true;
        winsize ws{};
        if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
            style.width = ws.ws_col;
            lines = ws.ws_row;
        }
    }
    size_t max_rows = o.max_rows > 0 ? size_t(o.max_rows)
                                     : std::max<size_t>(lines > 5 ? lines - 5 : 0, 10);
    std::string text = report::render_summary(summary, o.sort_column, max_rows, style);
    std::fwrite(text.data(), 1, text.size(), stdout);
}

}  // namespace

void register_summary(CLI::App& app) {
    auto opts = std::make_shared<SummaryOptions>();
    auto* sub = app.add_subcommand(
        "summary", "Generate a terminal-based summary report of the functions that allocate most "
                   "memory");
    sub->add_option("results", opts->results, "Results of the tracker run")->required();
    add_symbol_options(sub, opts->symbols);
    sub->add_option("-s,--sort-column", opts->sort_column, "Column number to sort on (1-5)");
    sub->add_option("-r,--max-rows", opts->max_rows, "Maximum number of rows to display");
    add_temporary_options(sub, opts->threshold, opts->temporary);
    sub->callback([opts] { run_summary(*opts); });
}

}  // namespace memray::cli
