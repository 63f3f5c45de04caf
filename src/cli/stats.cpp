// `memray stats [-n N] [--json] [-o FILE] [-f] capture`
#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <sys/stat.h>

#include "cli/commands.hpp"
#include "cli/view_options.hpp"
#include "report/allocation_tracker.hpp"
#include "report/capture.hpp"
#include "report/stack_resolver.hpp"
#include "report/stats.hpp"

namespace memray::cli {

namespace {

struct StatsOptions {
    std::string results;
    int num_largest = 5;
    bool json = false;
    std::string output;
    bool force = false;
    report::SymbolizerOptions symbols;
};

bool path_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

// memray's default: memray-stats-<capture name without "memray-">.json next to the capture.
std::string default_json_path(const std::string& capture) {
    auto slash = capture.rfind('/');
    std::string dir = slash == std::string::npos ? "" : capture.substr(0, slash + 1);
    std::string name = (slash == std::string::npos ? capture : capture.substr(slash + 1)) + ".json";
    if (name.rfind("memray-", 0) == 0) name = name.substr(7);
    return dir + "memray-stats-" + name;
}

void run_stats(const StatsOptions& o) {
    auto reader = report::open_capture(o.results);
    if (reader->header().flags & format::k_flag_aggregated)
        throw UsageError("Can't compute statistics using a pre-aggregated capture file.");
    std::string json_path;
    if (o.json) {
        json_path = o.output.empty() ? default_json_path(o.results) : o.output;
        if (!o.force && path_exists(json_path))
            throw UsageError("File already exists, will not overwrite without --force: " +
                             json_path);
    }
    report::AllocationTracker tracker(true);
    report::track_capture(*reader, tracker);
    report::warn_if_truncated(*reader);
    ReportStacks stacks(*reader, o.symbols);
    const report::StackResolver& resolver = stacks.resolver();
    report::Stats stats =
        report::compute_stats(*reader, tracker, resolver, size_t(o.num_largest));
    stacks.print_warnings();
    if (o.json) {
        std::ofstream out(json_path, std::ios::binary | std::ios::trunc);
        if (!out) throw UsageError("cannot write " + json_path);
        out << report::render_stats_json(stats);
        out.close();
        if (!out) throw UsageError("cannot write " + json_path);
        std::printf("Wrote %s\n", json_path.c_str());
        return;
    }
    std::string text = report::render_stats_text(stats, size_t(o.num_largest), isatty(1) != 0);
    std::fwrite(text.data(), 1, text.size(), stdout);
}

}  // namespace

void register_stats(CLI::App& app) {
    auto opts = std::make_shared<StatsOptions>();
    auto* sub = app.add_subcommand("stats",
                                   "Generate high level stats of the memory usage in the terminal");
    sub->add_option("results", opts->results, "Results of the tracker run")->required();
    add_symbol_options(sub, opts->symbols);
    sub->add_option("-n,--num-largest", opts->num_largest,
                    "Displays the top 'n' largest allocating functions. Default is 5")
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                try {
                    size_t used = 0;
                    if (std::stoi(v, &used) > 0 && used == v.size()) return {};
                } catch (const std::exception&) {
                }
                return v + " is an invalid positive int value";
            },
            "POSITIVE"));
    sub->add_flag("--json", opts->json, "Exports stats to a JSON file");
    sub->add_option("-o,--output", opts->output, "Output file name for JSON output");
    sub->add_flag("-f,--force", opts->force, "If the JSON output file already exists, overwrite it");
    sub->callback([opts] { run_stats(*opts); });
}

}  // namespace memray::cli
