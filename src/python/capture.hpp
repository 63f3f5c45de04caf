// What `memray.FileReader` needs from a capture, in plain C++ (no Python here; module.cpp turns
// it into Python objects): the first pass (peak, memory snapshots, the high-water-mark view), the
// other views on demand, and stacks as the Python API shows them.
//
// Stacks drop what is not the user's code as StackResolver does for every report: the `memray
// run` bootstrap and, for a capture written by `memray.Tracker`, the frames above the `with`
// statement (docs/python-api.md describes the convention).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "format/reader.hpp"
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"
#include "report/symbolizer.hpp"

namespace memray::python {

enum class StackKind { Python, Native, Hybrid };

// get_temporal_high_water_mark_allocation_records: for each interval between memory snapshots
// (interval k runs from snapshot k - 1 to snapshot k; interval 0 is before the first, the last
// after the last), the heap's high-water mark in it, and each location's share of it as runs of
// equal shares, as memray computes them (the start of an interval counts as a peak).
struct TemporalLocation {
    uint32_t node = 0;
    uint32_t thread = 0;  // capture thread index; 0 when merged
    format::Allocator allocator{};
};
struct TemporalRun {
    static constexpr uint32_t k_open = ~uint32_t(0);
    uint32_t location = 0;   // index into TemporalHighWaterMark::locations
    uint32_t start = 0;      // first interval
    uint32_t end = k_open;   // interval after the last (k_open: to the end)
    uint64_t count = 0;
    uint64_t bytes = 0;
};
struct TemporalHighWaterMark {
    std::vector<TemporalLocation> locations;
    std::vector<TemporalRun> runs;    // by location, then start
    std::vector<uint64_t> hwm_bytes;  // per interval: memory snapshots + 1
};

class Capture {
  public:
    // Opens `path` and reads it once (the high-water mark and the memory snapshots, at most
    // `max_memory_records` of them). Throws format::FileError / format::FormatError.
    Capture(const std::string& path, size_t max_memory_records, bool progress);

    const std::string& path() const { return m_path; }
    const format::Reader& reader() const { return *m_reader; }
    const report::Snapshot& high_water_mark() const { return m_hwm; }
    // Allocation plus deallocation events (memray's "total_allocations").
    uint64_t total_records() const { return m_total_records; }
    uint64_t end_time_us() const;

    // Another view, read from the file again. Memory-sample intervals follow the first pass.
    report::Snapshot view(report::SnapshotKind kind, uint64_t threshold, bool temporal) const;

    // Reads the file again. Intervals follow the memory snapshots of the first pass.
    TemporalHighWaterMark temporal_high_water_mark(bool merge_threads) const;

    // Frames of `node`, innermost first, as (function, file, line). `max` 0 = all.
    std::vector<report::Frame> stack(uint32_t node, StackKind kind, size_t max) const;

    // OS thread id / name of a thread index of the capture (0 and unknown: 0 / "").
    uint64_t tid_of(uint32_t thread) const;
    std::string thread_name_of(uint32_t thread) const;

  private:
    const report::StackResolver& resolver(bool native) const;

    std::string m_path;
    size_t m_max_memory_records;
    bool m_progress;
    std::unique_ptr<format::Reader> m_reader;
    report::Snapshot m_hwm;
    uint64_t m_total_records = 0;

    // Native frames need the symbolizer (LLVM reads the binaries): made on first use.
    mutable std::unique_ptr<report::Symbolizer> m_symbolizer;
    mutable std::unique_ptr<report::StackResolver> m_plain;      // without symbolizer
    mutable std::unique_ptr<report::StackResolver> m_symbolized;  // with it
};

}  // namespace memray::python
