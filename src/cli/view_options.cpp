#include "cli/view_options.hpp"

#include <cstdio>

#include "report/capture.hpp"
#include "report/progress.hpp"

namespace memray::cli {

std::pair<CLI::Option*, CLI::Option*> add_temporary_options(CLI::App* sub, int64_t& threshold,
                                                            bool& temporary) {
    auto* thr = sub->add_option(
        "--temporary-allocation-threshold", threshold,
        "Report temporary allocations: an allocation is temporary if at most N other "
        "allocations occur (on its thread) before it is deallocated");
    thr->type_name("N")->check(CLI::NonNegativeNumber);
    auto* temp = sub->add_flag("--temporary-allocations", temporary,
                               "Equivalent to --temporary-allocation-threshold=1");
    thr->excludes(temp);
    temp->excludes(thr);
    return {thr, temp};
}

report::SnapshotOptions view_snapshot_options(bool leaks, bool temporary, int64_t threshold) {
    report::SnapshotOptions so;
    if (leaks) so.kind = report::SnapshotKind::Leaks;
    if (temporary || threshold >= 0) {
        so.kind = report::SnapshotKind::Temporary;
        so.temporary_threshold = threshold >= 0 ? uint64_t(threshold) : 1;
    }
    return so;
}

report::Snapshot read_snapshot(format::Reader& reader, report::SnapshotOptions options,
                               const std::string& capture_path) {
    auto slash = capture_path.rfind('/');
    report::ProgressBar bar("Reading " + (slash == std::string::npos
                                              ? capture_path
                                              : capture_path.substr(slash + 1)));
    options.progress = bar.callback();
    report::Snapshot snapshot = report::build_snapshot(reader, options);
    bar.finish();
    report::warn_if_truncated(reader);
    return snapshot;
}

void add_symbol_options(CLI::App* sub, report::SymbolizerOptions& options) {
    sub->add_option("--debug-dir", options.debug_dirs,
                    "Directory with copies of the capture's binaries or their debug files "
                    "(by file name, by full path below DIR, or in DIR/.build-id/); repeatable")
        ->type_name("DIR")
        ->allow_extra_args(false)
        ->check(CLI::ExistingDirectory);
    sub->add_option("--sysroot", options.sysroot,
                    "Look up the capture's binaries below DIR first (a copy of the capturing "
                    "machine's file system)")
        ->type_name("DIR")
        ->check(CLI::ExistingDirectory);
    auto* none = sub->add_flag("--no-symbolize", [&options](int64_t) { options.enabled = false; },
                               "Show native frames as module+0xoffset without reading any binary "
                               "or debug file");
    none->excludes(sub->get_option("--debug-dir"))->excludes(sub->get_option("--sysroot"));
}

ReportStacks::ReportStacks(const format::Reader& reader, const report::SymbolizerOptions& options)
    : m_symbolizer(options), m_resolver(reader, options.enabled ? &m_symbolizer : nullptr) {}

void ReportStacks::print_warnings() {
    for (const std::string& w : m_symbolizer.take_warnings())
        std::fprintf(stderr, "memray: warning: %s\n", w.c_str());
}

}  // namespace memray::cli
