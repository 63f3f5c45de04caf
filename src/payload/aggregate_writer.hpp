// The aggregating side of the writer (--aggregate; docs/architecture.md, "Output"): instead of
// encoding every event, the writer thread hands it here, and every checkpoint writes the tables
// kept here. Per location (stack node, thread, allocator): what is alive now and what was alive
// at the high-water mark so far, exactly, as the reports compute them from a full capture
// (src/report/allocation_tracker.hpp is the reference: same rules for reused addresses, mmap
// ranges cut by munmap, and the latest peak on ties).
//
// Memory: the live allocations (address -> size, location) and the locations, in mmap'd
// tables that grow by doubling; nothing else grows with the capture. Writer thread only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/encoder.hpp"
#include "format/records.hpp"

namespace memray::payload {

struct AggregateLocationView {
    uint32_t node;
    uint32_t thread;
    format::Allocator allocator;
    format::AggregateAmounts amounts;
};

// Starts empty tables for a new session (keeps the mappings of an earlier one). False when the
// first mapping fails.
bool aggregate_start() noexcept;
// One merged event, in time order. `thread` is the writer's thread index. `ahead`, unless 0, is
// the address of an event a few places later: its live-table slot is fetched now, which hides
// the cache miss of a live set larger than the caches (the writer must keep up with every
// producer thread, or they wait for room in their rings).
void aggregate_event(uint32_t thread, format::Allocator kind, uint64_t address, uint64_t size,
                     uint32_t node, uint64_t time_us, uint64_t ahead = 0) noexcept;
// False once a table could not grow: the numbers are incomplete from then on.
bool aggregate_ok() noexcept;
// The tracked heap now (for the heap samples).
uint64_t aggregate_heap() noexcept;
// Totals for the Checkpoint record (`locations` is left to the caller, who counts what it wrote).
format::CheckpointFields aggregate_totals() noexcept;
// Calls `fn` for every location with a nonzero amount, in order of first allocation.
void aggregate_for_each_location(void (*fn)(const AggregateLocationView&, void*),
                                 void* ctx) noexcept;
// Returns the tables' memory to the system (a forked child, which writes nothing).
void aggregate_release() noexcept;

}  // namespace memray::payload
