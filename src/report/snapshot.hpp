// What the reporters (flamegraph, table, tree, transform) show, computed in one streaming pass:
// per-location amounts for one view of the capture, the threads, the memory-over-time samples
// and, for --temporal, per-interval amounts.
//
// A location is (stack node, thread, allocator). Reporters merge what they do not show
// (threads unless --split-threads, allocators outside `table`/csv) and turn node ids into frames
// with StackResolver. Memory is bounded by the live allocations and the distinct locations.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "format/reader.hpp"
#include "format/records.hpp"

namespace memray::report {

enum class SnapshotKind {
    HighWaterMark,  // allocations alive at the latest moment of peak heap (memray's default)
    Leaks,          // allocations alive when tracking stopped (--leaks)
    Temporary,      // allocations freed after at most `temporary_threshold` other allocations
                    // on the same thread (--temporary-allocations[-threshold N])
};

struct SnapshotOptions {
    SnapshotKind kind = SnapshotKind::HighWaterMark;
    uint64_t temporary_threshold = 1;
    // --temporal: also fill Snapshot::intervals (see IntervalAmount) and, for HighWaterMark,
    // Snapshot::interval_peaks.
    bool temporal = false;
    // At most this many memory points (and temporal intervals); more are merged evenly.
    size_t max_memory_records = 10000;
    // Called now and then with (bytes read, file size) for a progress bar, from the thread that
    // reads the file (not always the caller's), and once at the end; may be empty.
    std::function<void(uint64_t, uint64_t)> progress;
    // Decode and aggregate on 1 or 2 threads; 0 decides by file size (tests force both).
    int threads = 0;
};

struct LocationAmount {
    uint32_t node = 0;    // stack node id (0 = empty stack); frames via StackResolver
    uint32_t thread = 0;  // index into Snapshot::threads
    format::Allocator allocator{};
    uint64_t count = 0;  // allocations
    uint64_t bytes = 0;
};

struct SnapshotThread {
    uint64_t tid = 0;  // OS thread id
    std::string name;  // OS or Python threading name, may be empty
};

struct MemoryPoint {
    uint64_t time_us = 0;  // since the capture's start
    uint64_t rss = 0;      // resident set size, bytes
    uint64_t heap = 0;     // tracked heap at that time, bytes
};

// --temporal, per location. Interval i runs from memory[i].time_us to memory[i+1].time_us (the
// first also holds what came before memory[0], the last what came after its sample). A window
// is the intervals [a, b]; what the entries mean depends on the view:
//  - Leaks: the allocations made in interval `allocated_in` and freed in `freed_in` (k_never:
//    alive at the end). The window shows those with a <= allocated_in <= b and freed_in > b.
//  - HighWaterMark: the location's share of the heap at the highest moment of each interval
//    (Snapshot::interval_peaks; the latest such moment on ties) is `bytes`/`count` for the
//    intervals allocated_in <= h < freed_in. The window shows that share at its highest
//    interval h (the latest on ties), as memray's temporal flame graph does.
struct IntervalAmount {
    static constexpr uint32_t k_never = ~uint32_t(0);
    uint32_t location = 0;  // index into Snapshot::locations
    uint32_t allocated_in = 0;
    uint32_t freed_in = k_never;
    uint64_t count = 0;
    uint64_t bytes = 0;
};

// Coarsening of HighWaterMark intervals: groups of 2^`shift` consecutive intervals become one,
// whose peak is the group's highest (the latest on ties) and whose shares are that interval's.
// Returns the chosen fine interval of each group; `merged` gets the groups' peaks.
std::vector<uint32_t> choose_peaks(const std::vector<uint64_t>& peaks, unsigned shift,
                                   std::vector<uint64_t>& merged);
// A high-water-mark run [allocated_in, freed_in) over fine intervals, in groups: the groups
// whose chosen interval it covers. False when it covers none.
bool coarsen_peak_run(const std::vector<uint32_t>& chosen, uint32_t& allocated_in,
                      uint32_t& freed_in);

struct Snapshot {
    SnapshotKind kind = SnapshotKind::HighWaterMark;
    // Every location with a nonzero amount in this view; with `temporal`, every location that
    // appears in `intervals`.
    std::vector<LocationAmount> locations;
    std::vector<SnapshotThread> threads;
    std::vector<MemoryPoint> memory;
    std::vector<IntervalAmount> intervals;  // only with SnapshotOptions::temporal
    // With temporal and HighWaterMark: the heap's highest value in each interval (one per
    // memory point).
    std::vector<uint64_t> interval_peaks;

    // Capture-wide numbers for the stats panel.
    uint64_t total_allocations = 0;
    uint64_t total_bytes = 0;
    uint64_t peak_bytes = 0;
    uint64_t peak_time_us = 0;
    uint64_t duration_us = 0;
};

// A view that an aggregated capture (--aggregate) cannot give (temporary allocations, --temporal,
// statistics). what() is memray's sentence for it.
class AggregatedCaptureError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Reads the whole capture. The reader stays usable for StackResolver afterwards. An aggregated
// capture gives its last complete checkpoint (throws AggregatedCaptureError for a Temporary or
// temporal view).
Snapshot build_snapshot(format::Reader& reader, const SnapshotOptions& options);

}  // namespace memray::report
