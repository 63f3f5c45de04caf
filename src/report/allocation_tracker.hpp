// One pass over a capture's events: live allocations, the tracked heap and its high-water mark,
// and per-stack totals (everything allocated, alive at the peak, alive at the end).
//
// Memory is bounded by the live allocations and the distinct stacks: per-stack numbers live in a
// vector indexed by node id, live allocations in an open-addressing map keyed by address.
//
// The allocations alive at the high-water mark are found in the same pass without snapshots: the
// peak gets an epoch number, and the first time a stack's live numbers change after a peak, their
// old values (= their values at that peak) are saved with the epoch. At the end a stack whose
// saved epoch is the last peak's reports the saved values, any other stack was not touched since
// the peak and reports its current ones. O(1) per event.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "format/reader.hpp"
#include "format/records.hpp"
#include "report/flat_map.hpp"

namespace memray::report {

struct NodeStats {
    uint64_t total_count = 0;  // allocations made with this stack over the whole capture
    uint64_t total_bytes = 0;
    uint64_t live_count = 0;   // alive now (at the end of the stream: leaks)
    uint64_t live_bytes = 0;
    uint64_t saved_count = 0;  // live_* at peak number saved_epoch
    uint64_t saved_bytes = 0;
    uint64_t saved_epoch = 0;
};

struct Amount {
    uint64_t count = 0;
    uint64_t bytes = 0;
};

class AllocationTracker {
  public:
    // `count_sizes` keeps the distinct-size histogram that `stats` needs.
    explicit AllocationTracker(bool count_sizes = true) : m_count_sizes(count_sizes) {}

    inline void on_event(const format::Event& e);
    // Starts fetching the memory on_event(e) will touch; called a few events ahead, it hides the
    // cache misses of random frees in a big live set.
    __attribute__((always_inline)) void prefetch(const format::Event& e) const {
        m_live.prefetch(e.address);
        if (e.node < m_nodes.size()) __builtin_prefetch(&m_nodes[e.node]);
        if (m_count_sizes && e.size >= k_dense_sizes) m_by_size.prefetch(e.size);
    }

    uint64_t allocations() const { return m_allocations; }      // allocation events
    uint64_t deallocations() const { return m_deallocations; }  // deallocation events
    uint64_t total_bytes() const { return m_total_bytes; }      // bytes requested by allocations
    uint64_t heap() const { return m_heap; }                    // tracked heap now
    uint64_t peak() const { return m_peak; }                    // high-water mark of heap()
    uint64_t peak_time_us() const { return m_peak_time_us; }
    uint64_t live_allocations() const { return m_live.size() + m_mmap_count; }

    const std::array<uint64_t, format::k_allocator_max + 1>& count_by_allocator() const {
        return m_by_allocator;
    }
    // (size, number of allocations of that size), ascending (only with count_sizes).
    std::vector<std::pair<uint64_t, uint64_t>> count_by_size() const;

    // Per-stack numbers, indexed by node id (0 = empty stack).
    size_t node_count() const { return m_nodes.size(); }
    const NodeStats& node(uint32_t id) const { return m_nodes[id]; }
    Amount at_peak(uint32_t id) const {
        const NodeStats& n = m_nodes[id];
        if (m_epoch != 0 && n.saved_epoch == m_epoch) return {n.saved_count, n.saved_bytes};
        return {n.live_count, n.live_bytes};
    }
    Amount at_end(uint32_t id) const { return {m_nodes[id].live_count, m_nodes[id].live_bytes}; }

  private:
    struct Live {
        uint64_t size;
        uint32_t node;
        uint16_t thread;
        uint8_t allocator;
    };
    struct MmapRange {
        uint64_t end;
        uint32_t node;
    };

    NodeStats& node_for_update(uint32_t id) {
        if (id >= m_nodes.size()) [[unlikely]]
            m_nodes.resize(std::max<size_t>(id + 1, m_nodes.size() * 2));
        NodeStats& n = m_nodes[id];
        if (n.saved_epoch != m_epoch) {  // first change since the latest peak: remember it
            n.saved_count = n.live_count;
            n.saved_bytes = n.live_bytes;
            n.saved_epoch = m_epoch;
        }
        return n;
    }
    void release(uint32_t node, uint64_t bytes, uint64_t count) {
        NodeStats& n = node_for_update(node);
        n.live_bytes -= bytes;
        n.live_count -= count;
        m_heap -= bytes;
    }
    void update_peak(uint64_t time_us) {
        // ">=": when the peak is reached several times, the latest one counts (as memray).
        if (m_heap >= m_peak) {
            m_peak = m_heap;
            m_peak_time_us = time_us;
            ++m_epoch;
        }
    }
    void count_size(uint64_t size) {
        if (!m_count_sizes) return;
        if (size < k_dense_sizes) ++m_by_small_size[size];
        else m_by_size[size] += 1;
    }
    void on_mmap(const format::Event& e);
    void on_munmap(uint64_t address, uint64_t size);

    // Most allocations are small: their sizes are counted in a dense array that stays in L1,
    // the rest in a map.
    static constexpr uint64_t k_dense_sizes = 4096;

    bool m_count_sizes;
    uint64_t m_allocations = 0;
    uint64_t m_deallocations = 0;
    uint64_t m_total_bytes = 0;
    uint64_t m_heap = 0;
    uint64_t m_peak = 0;
    uint64_t m_peak_time_us = 0;
    uint64_t m_epoch = 0;
    std::array<uint64_t, format::k_allocator_max + 1> m_by_allocator{};
    std::vector<uint64_t> m_by_small_size = std::vector<uint64_t>(k_dense_sizes);
    FlatMap<uint64_t> m_by_size;
    mutable FlatMap<Live> m_live;
    // mmap ranges are few and may be trimmed or split by munmap: an ordered map by start.
    std::map<uint64_t, MmapRange> m_mmaps;
    uint64_t m_mmap_count = 0;
    std::vector<NodeStats> m_nodes = std::vector<NodeStats>(1);
};

inline void AllocationTracker::on_event(const format::Event& e) {
    using format::Allocator;
    switch (e.allocator) {
        case Allocator::Free:
        case Allocator::PymallocFree: {
            ++m_deallocations;
            Live old;
            if (m_live.erase(e.address, &old)) release(old.node, old.size, 1);
            update_peak(e.time_us);
            return;
        }
        case Allocator::Munmap:
            ++m_deallocations;
            on_munmap(e.address, e.size);
            update_peak(e.time_us);
            return;
        case Allocator::Mmap:
            on_mmap(e);
            update_peak(e.time_us);
            return;
        default:
            break;
    }
    ++m_allocations;
    m_total_bytes += e.size;
    m_by_allocator[uint8_t(e.allocator) & format::k_allocator_max] += 1;
    count_size(e.size);

    Live old;
    Live fresh{e.size, e.node, uint16_t(e.thread), uint8_t(e.allocator)};
    if (!m_live.insert(e.address, fresh, &old)) [[unlikely]] {
        // The address was handed out again without a recorded free (the free happened where we
        // do not see it): the old block is gone.
        release(old.node, old.size, 1);
    }
    NodeStats& n = node_for_update(e.node);
    n.total_count += 1;
    n.total_bytes += e.size;
    n.live_count += 1;
    n.live_bytes += e.size;
    m_heap += e.size;
    update_peak(e.time_us);
}

// Reads every event and sample of `reader` into `tracker`. Returns the number of events.
uint64_t track_capture(format::Reader& reader, AllocationTracker& tracker);

}  // namespace memray::report
