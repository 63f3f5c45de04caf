// `memray flamegraph [-o FILE] [-f] [--leaks | --temporary-allocations |
//  --temporary-allocation-threshold N] [--temporal] [--split-threads] [--inverted]
//  [--max-memory-records N] [--no-web] [--confidential-files all|none|default] capture`, and the
// code `memray table` shares with it.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "cli/html_reporter.hpp"
#include "cli/view_options.hpp"
#include "report/capture.hpp"
#include "report/html_report.hpp"
#include "report/output_path.hpp"
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"

namespace memray::cli {

namespace {

struct HtmlReportOptions {
    std::string results;
    std::string output;
    bool force = false;
    bool leaks = false;
    bool temporary = false;
    int64_t temporary_threshold = -1;  // < 0: not given
    bool temporal = false;
    bool split_threads = false;
    bool inverted = false;
    size_t max_memory_records = 10000;
    bool no_web = false;
    std::string confidential_files = "default";
    report::SymbolizerOptions symbols;
};

const char* reporter_name(HtmlReporter which) {
    return which == HtmlReporter::Table ? "table" : "flamegraph";
}

void run_html_report(const HtmlReportOptions& o, HtmlReporter which) {
    int modes = int(o.leaks) + int(o.temporary) + int(o.temporary_threshold >= 0);
    if (modes > 1)
        throw UsageError("--leaks, --temporary-allocations and --temporary-allocation-threshold "
                         "are mutually exclusive", 2);
    if (o.temporal && (o.temporary || o.temporary_threshold >= 0))
        throw UsageError("Can't create a temporal flame graph of temporary allocations", 2);
    if (o.max_memory_records < 2)
        throw UsageError("--max-memory-records must be at least 2", 2);

    std::string output = o.output.empty()
                             ? report::default_output_path(o.results, reporter_name(which), ".html")
                             : o.output;
    // Before reading the capture: a big capture takes a while, the refusal does not.
    auto reader = report::open_capture(o.results);
    try {
        report::check_output_path(output, o.force);
    } catch (const report::OutputExists& e) {
        throw UsageError(e.what());
    }

    report::SnapshotOptions so = view_snapshot_options(o.leaks, o.temporary, o.temporary_threshold);
    so.temporal = o.temporal && which == HtmlReporter::Flamegraph;
    so.max_memory_records = o.max_memory_records;
    // MEMRAY_HTML_TIMING=1: where the time goes (reading vs building the page), for bench/.
    bool timing = std::getenv("MEMRAY_HTML_TIMING") != nullptr;
    auto t0 = std::chrono::steady_clock::now();
    auto seconds = [&t0] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    report::Snapshot snapshot = read_snapshot(*reader, so, o.results);
    double snapshot_s = seconds();
    ReportStacks stacks(*reader, o.symbols);
    const report::StackResolver& resolver = stacks.resolver();

    report::HtmlOptions ho;
    ho.split_threads = o.split_threads;
    ho.inverted = o.inverted;
    ho.capture_path = o.results;
    ho.reporter_name = reporter_name(which);
    std::string html = which == HtmlReporter::Table
                           ? report::render_table_html(snapshot, resolver, *reader, ho)
                           : report::render_flamegraph_html(snapshot, resolver, *reader, ho);
    stacks.print_warnings();
    if (timing)
        std::fprintf(stderr, "timing: snapshot %.3f s (%zu locations, %zu intervals), page %.3f s "
                     "(%zu bytes)\n", snapshot_s, snapshot.locations.size(),
                     snapshot.intervals.size(), seconds() - snapshot_s, html.size());
    report::write_output_file(output, html);
    std::printf("Wrote %s\n", output.c_str());
}

}  // namespace

void register_html_reporter(CLI::App& app, HtmlReporter which) {
    auto opts = std::make_shared<HtmlReportOptions>();
    bool table = which == HtmlReporter::Table;
    auto* sub = app.add_subcommand(
        reporter_name(which),
        table ? "Generate an HTML table with all records in the peak memory usage"
              : "Generate an HTML flame graph for peak memory usage");
    sub->add_option("results", opts->results, "Results of the tracker run")->required();
    add_symbol_options(sub, opts->symbols);
    sub->add_option("-o,--output", opts->output, "Output file name");
    sub->add_flag("-f,--force", opts->force, "If the output file already exists, overwrite it");
    auto* leaks = sub->add_flag("--leaks", opts->leaks,
                                "Show memory leaks, instead of peak memory usage");
    auto [thr, temp] = add_temporary_options(sub, opts->temporary_threshold, opts->temporary);
    leaks->excludes(temp)->excludes(thr);
    sub->add_flag("--split-threads", opts->split_threads,
                  table ? "Do not merge allocations across threads"
                        : "Show threads as the first level of the flame graph");
    if (!table) {
        sub->add_flag("--temporal", opts->temporal,
                      "Pick a time window on the memory plot and show what was alive at the "
                      "highest heap within it (with --leaks: what was allocated in it and not "
                      "freed by its end)");
        sub->add_flag("--inverted", opts->inverted,
                      "Start with the inverted flame graph (allocating functions at the root)");
        sub->add_option("--max-memory-records", opts->max_memory_records,
                        "Maximum number of memory samples in the plot (default 10000)");
        sub->add_option("--confidential-files", opts->confidential_files,
                        "Accepted for memray compatibility: the page never holds source lines, "
                        "only function names, file names and line numbers (memray's 'all')")
            ->check(CLI::IsMember({"all", "none", "default"}));
    }
    sub->add_flag("--no-web", opts->no_web,
                  "Accepted for memray compatibility: every asset is always inlined");
    sub->callback([opts, which] { run_html_report(*opts, which); });
}

void register_flamegraph(CLI::App& app) { register_html_reporter(app, HtmlReporter::Flamegraph); }

}  // namespace memray::cli
