// `memray stats`: totals, size histogram, allocator distribution, top locations and modules,
// rendered as memray renders them (terminal text or JSON).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "format/reader.hpp"
#include "report/allocation_tracker.hpp"
#include "report/stack_resolver.hpp"

namespace memray::report {

struct StatsMetadata {
    std::string start_time;  // "YYYY-MM-DD HH:MM:SS[.ffffff]+HH:MM", local time
    std::string end_time;
    uint64_t total_allocations = 0;  // records processed (allocations and deallocations)
    uint64_t total_frames = 0;
    uint64_t peak_memory = 0;
    std::string command_line;
    uint64_t pid = 0;
    uint64_t main_thread_id = 0;
    std::string python_allocator;
    bool has_native_traces = false;
    bool trace_python_allocators = false;
    int file_format = 0;
};

struct ModuleTotal {
    std::string module;
    uint64_t num_allocations = 0;
    uint64_t total_bytes = 0;
};

struct Stats {
    uint64_t total_num_allocations = 0;
    uint64_t total_bytes_allocated = 0;
    uint64_t peak_memory = 0;
    std::vector<std::pair<uint64_t, uint64_t>> count_by_size;  // (size, count), ascending size
    std::vector<std::pair<std::string, uint64_t>> allocator_distribution;  // by count, descending
    std::vector<std::pair<std::string, uint64_t>> top_by_size;   // (location, bytes)
    std::vector<std::pair<std::string, uint64_t>> top_by_count;  // (location, count)
    std::vector<ModuleTotal> top_modules_by_size;
    std::vector<ModuleTotal> top_modules_by_count;
    StatsMetadata metadata;
};

// Builds the stats from a tracker that has seen the whole capture of `reader`.
Stats compute_stats(const format::Reader& reader, AllocationTracker& tracker,
                    const StackResolver& resolver, size_t num_largest);

// Log-scale histogram of allocation sizes: (upper bound, count) per bin, as memray computes it.
std::vector<std::pair<uint64_t, uint64_t>> histogram_bins(
    const std::vector<std::pair<uint64_t, uint64_t>>& count_by_size, int bins);
// The histogram block of the terminal report (without the leading tab).
std::string draw_histogram(const std::vector<std::pair<uint64_t, uint64_t>>& count_by_size,
                           int bins, int scale = 25);

std::string render_stats_text(const Stats& s, size_t num_largest, bool color);
std::string render_stats_json(const Stats& s);

// Top-level module name for a stack (innermost non-stdlib frame), "<root>" when none.
std::string module_for_stack(const std::vector<Frame>& frames);

// memray's label for the allocator name a capture header records (format::Header::
// python_allocator): "pymalloc", "pymalloc debug", "malloc", "mimalloc", "mimalloc debug", and
// "unknown" for anything else (malloc_debug, a replaced allocator, a capture of no Python).
std::string python_allocator_label(const std::string& recorded);

// Local-time rendering of a Unix time in milliseconds, as Python's str(datetime.astimezone()).
std::string format_local_time(uint64_t unix_ms);

}  // namespace memray::report
