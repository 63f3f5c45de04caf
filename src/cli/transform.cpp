// `memray transform {gprof2dot,csv,speedscope,pprof} [-o FILE] [-f] [--leaks |
//  --temporary-allocations | --temporary-allocation-threshold N] [--split-threads] capture`
#include <fmt/core.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cli/view_options.hpp"
#include "memray_config.h"
#include "report/capture.hpp"
#include "report/output_path.hpp"
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"
#include "report/transform.hpp"

namespace memray::cli {

namespace {

struct TransformCliOptions {
    std::string format;
    std::string results;
    std::string output;
    bool force = false;
    bool leaks = false;
    int64_t threshold = -1;  // >= 0: temporary allocations
    bool temporary = false;
    bool split_threads = false;
    report::SymbolizerOptions symbols;
};

void run_transform(const TransformCliOptions& o) {
    auto fmt_kind = report::parse_transform_format(o.format);
    if (!fmt_kind) throw UsageError("Format not supported: " + o.format);
    auto reader = report::open_capture(o.results);
    std::string out = o.output.empty()
                          ? report::default_output_path(o.results,
                                                        report::transform_format_name(*fmt_kind),
                                                        report::transform_suffix(*fmt_kind))
                          : o.output;
    try {
        report::check_output_path(out, o.force);
    } catch (const report::OutputExists& e) {
        throw UsageError(e.what());
    }

    report::Snapshot snapshot = read_snapshot(
        *reader, view_snapshot_options(o.leaks, o.temporary, o.threshold), o.results);

    ReportStacks stacks(*reader, o.symbols);
    const report::StackResolver& resolver = stacks.resolver();
    report::TransformOptions to;
    to.split_threads = o.split_threads;
    to.exporter = std::string("memray@") + MEMRAY_VERSION;
    report::write_output_file(
        out, report::render_transform(*fmt_kind, snapshot, resolver, reader->header(), to));
    stacks.print_warnings();
    std::printf("Wrote %s\n", out.c_str());
    if (*fmt_kind == report::TransformFormat::Gprof2dot) {
        std::printf("\nTo generate a graph from the transform file, run for example:\n");
        std::printf("gprof2dot -f json %s | dot -Tpng -o output.png\n", out.c_str());
    }
}

}  // namespace

void register_transform(CLI::App& app) {
    auto opts = std::make_shared<TransformCliOptions>();
    auto* sub = app.add_subcommand("transform", "Generate reports files in different formats");
    sub->add_option("format", opts->format,
                    "Format to use for the report. Available formats: gprof2dot, csv, "
                    "speedscope, pprof")
        ->required();
    sub->add_option("results", opts->results, "Results of the tracker run")->required();
    add_symbol_options(sub, opts->symbols);
    sub->add_option("-o,--output", opts->output, "Output file name");
    sub->add_flag("-f,--force", opts->force, "If the output file already exists, overwrite it");
    auto* leaks = sub->add_flag("--leaks", opts->leaks,
                                "Show memory leaks, instead of peak memory usage");
    auto [threshold, temporary] = add_temporary_options(sub, opts->threshold, opts->temporary);
    leaks->excludes(threshold)->excludes(temporary);
    threshold->excludes(leaks);
    temporary->excludes(leaks);
    sub->add_flag("--split-threads", opts->split_threads,
                  "csv: one row per thread instead of merging threads (memray merges)");
    sub->callback([opts] { run_transform(*opts); });
}

}  // namespace memray::cli
