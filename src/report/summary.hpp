// `memray summary`: per (function, file) totals of the allocations alive at the high-water mark
// (or of the temporary allocations), with own memory (allocated in the function itself) and
// total memory (in it or its callees).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "report/allocation_tracker.hpp"
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"

namespace memray::report {

struct SummaryRow {
    std::string function;
    std::string file;
    uint64_t total_memory = 0;
    uint64_t own_memory = 0;
    uint64_t n_allocations = 0;
};

struct Summary {
    std::vector<SummaryRow> rows;  // in first-seen order (stack order)
    uint64_t snapshot_bytes = 0;   // bytes in the snapshot (alive at the peak, or temporary)
    uint64_t snapshot_count = 0;
};

enum class SummaryView { Peak, Leaks };

Summary compute_summary(const AllocationTracker& tracker, const StackResolver& resolver,
                        SummaryView which = SummaryView::Peak);
// The same from a view read by build_snapshot (threads and allocators merged), e.g. temporary
// allocations.
Summary compute_summary(const Snapshot& snapshot, const StackResolver& resolver);

struct TableStyle {
    bool color = false;
    size_t width = 0;  // terminal width; 0 = unlimited (never truncate)
};

// `sort_column` 1-5 as memray's -s; `max_rows` already resolved (> 0).
std::string render_summary(const Summary& s, int sort_column, size_t max_rows,
                           const TableStyle& style);

}  // namespace memray::report
