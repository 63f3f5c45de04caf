// What tree, transform, flamegraph and table share: the temporary-allocation options and how a
// view's options turn into SnapshotOptions, and reading the snapshot with a progress bar.
#pragma once

#include <cstdint>
#include <string>

#include "cli/commands.hpp"
#include "format/reader.hpp"
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"
#include "report/symbolizer.hpp"

namespace memray::cli {

// --temporary-allocation-threshold N / --temporary-allocations, exclusive of each other.
// `threshold` < 0 means not given. Returns {threshold option, temporary flag} for further
// exclusions.
std::pair<CLI::Option*, CLI::Option*> add_temporary_options(CLI::App* sub, int64_t& threshold,
                                                            bool& temporary);

// The view: leaks, temporary allocations (threshold < 0 and `temporary`: threshold 1), or the
// high-water mark.
report::SnapshotOptions view_snapshot_options(bool leaks, bool temporary, int64_t threshold);

// build_snapshot with a progress bar named after the capture, then the truncation warning.
report::Snapshot read_snapshot(format::Reader& reader, report::SnapshotOptions options,
                               const std::string& capture_path);

// --debug-dir DIR (repeatable) and --sysroot DIR: where native frames' binaries and debug files
// are found when the capture was taken elsewhere or the files moved.
void add_symbol_options(CLI::App* sub, report::SymbolizerOptions& options);

// Every reporter's stacks: native frames symbolised, Python frames in place of the eval loop.
class ReportStacks {
  public:
    ReportStacks(const format::Reader& reader, const report::SymbolizerOptions& options);
    const report::StackResolver& resolver() const { return m_resolver; }
    // "memray: warning: ..." on stderr for each problem the symbolizer met (a build-id
    // mismatch, a file not found), once each. Call after the report was written.
    void print_warnings();

  private:
    report::Symbolizer m_symbolizer;
    report::StackResolver m_resolver;
};

}  // namespace memray::cli
