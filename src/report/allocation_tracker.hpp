// One pass over a capture's events: live allocations, the tracked heap and its high-water mark,
// and per-stack totals (everything allocated, alive at the peak, alive at the end).
//
// Memory is bounded by the live allocations and the distinct stacks: per-stack numbers live in a
// vector indexed by node id (32 bytes a stack, plus 16 for the totals when kept), live
// allocations in an open-addressing map keyed by address.
//
// The allocations alive at the high-water mark are found in the same pass without snapshots: the
// peak gets an epoch number, and the first time a stack's live numbers change after a peak, their
// old values (= their values at that peak) are saved with the epoch. At the end a stack whose
// saved epoch is the last peak's reports the saved values, any other stack was not touched since
// the peak and reports its current ones. O(1) per event.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "format/reader.hpp"
#include "format/records.hpp"
#include "report/flat_map.hpp"

namespace memray::report {

struct Amount {
    uint64_t count = 0;
    uint64_t bytes = 0;
};

class AllocationTracker {
  public:
    // `count_sizes` keeps the distinct-size histogram that `stats` needs; `stack_totals` the
    // per-stack total() (without it total() is zero: the snapshot's many locations need only
    // at_peak()/at_end(), and the smaller records keep more of them in the cache).
    explicit AllocationTracker(bool count_sizes = true, bool stack_totals = true)
        : m_count_sizes(count_sizes), m_stack_totals(stack_totals) {}

    inline void on_event(const format::Event& e);
    // Starts fetching the memory on_event(e) will touch: the live-map slot of the address, the
    // stack line of an allocation, its size counter. The caller runs it k_prefetch_ahead events
    // before on_event(e), which hides the cache misses of a live set bigger than the caches.
    // (A second stage that looked a free's stack up in the live map ahead of time cost more, in
    // mispredicted branches, than the miss it hid.)
    __attribute__((always_inline)) void prefetch(const format::Event& e) const {
        m_live.prefetch(e.address);
        if (e.node < m_nodes.size()) {
            __builtin_prefetch(&m_nodes[e.node]);
            if (m_stack_totals) __builtin_prefetch(&m_totals[e.node]);
        }
        if (m_count_sizes && e.size >= k_dense_sizes) m_by_size.prefetch(e.size);
    }
    static constexpr size_t k_prefetch_ahead = 32;

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
    // Allocations made with this stack over the whole capture.
    Amount total(uint32_t id) const { return id < m_totals.size() ? m_totals[id] : Amount{}; }
    Amount at_peak(uint32_t id) const {
        const NodeStats& n = m_nodes[id];
        if (m_epoch != 0 && n.saved_epoch == m_epoch) return {n.saved_count, n.saved_bytes};
        return {n.live_count, n.live_bytes};
    }
    Amount at_end(uint32_t id) const { return {m_nodes[id].live_count, m_nodes[id].live_bytes}; }

  private:
    // A live-map slot is 16 bytes (key + this), four to a cache line. Sizes of 4 GiB and more
    // are rare enough to live in a side map, marked by k_big_size.
    struct Live {
        uint32_t size;
        uint32_t node;
    };
    static constexpr uint32_t k_big_size = ~uint32_t(0);
    struct MmapRange {
        uint64_t end;
        uint32_t node;
    };
    // What an event changes per stack, half a cache line each: the snapshot names many more
    // locations than a capture has stacks, and its pass is bound by the misses on these records.
    // Counts of live blocks fit 32 bits (each is an entry of the live map or of m_mmaps); the
    // epoch is 32 bits too, renumbered when it would wrap (renumber_epochs).
    struct alignas(32) NodeStats {
        uint64_t live_bytes = 0;  // alive now (at the end of the stream: leaks)
        uint64_t saved_bytes = 0;  // live_* at peak number saved_epoch
        uint32_t live_count = 0;
        uint32_t saved_count = 0;
        uint32_t saved_epoch = 0;
    };

    NodeStats& node_for_update(uint32_t id) {
        if (id >= m_nodes.size()) [[unlikely]]
            grow_nodes(id);
        NodeStats& n = m_nodes[id];
        if (n.saved_epoch != m_epoch) {  // first change since the latest peak: remember it
            n.saved_count = n.live_count;
            n.saved_bytes = n.live_bytes;
            n.saved_epoch = m_epoch;
        }
        return n;
    }
    void acquire(uint32_t node, uint64_t bytes) {
        NodeStats& n = node_for_update(node);
        if (m_stack_totals) {
            Amount& t = m_totals[node];  // node_for_update sized m_totals too
            t.count += 1;
            t.bytes += bytes;
        }
        n.live_count += 1;
        n.live_bytes += bytes;
        m_heap += bytes;
    }
    void release(uint32_t node, uint64_t bytes, uint64_t count) {
        NodeStats& n = node_for_update(node);
        n.live_bytes -= bytes;
        n.live_count -= uint32_t(count);
        m_heap -= bytes;
    }
    // Takes the live block at `address` out of the map; false when there was none.
    bool take_live(uint64_t address, uint64_t& size, uint32_t& node) {
        Live old;
        if (!m_live.erase(address, &old)) return false;
        size = old.size;
        node = old.node;
        if (old.size == k_big_size) [[unlikely]]
            m_big_sizes.erase(address, &size);
        return true;
    }
    void update_peak(uint64_t time_us) {
        // ">=": when the peak is reached several times, the latest one counts (as memray).
        if (m_heap >= m_peak) {
            m_peak = m_heap;
            m_peak_time_us = time_us;
            if (++m_epoch == 0) [[unlikely]]
                renumber_epochs();
        }
    }
    __attribute__((always_inline)) void count_size(uint64_t size) {
        if (!m_count_sizes) return;
        if (size < k_dense_sizes) ++m_by_small_size[size];
        else m_by_size[size] += 1;
    }
    void on_mmap(const format::Event& e);
    void on_munmap(uint64_t address, uint64_t size);
    void on_reused_address(uint64_t address, const Live& old);
    void grow_nodes(uint32_t id);
    void renumber_epochs();

    // Most allocations are small: their sizes are counted in a dense array that stays in L1,
    // the rest in a map.
    static constexpr uint64_t k_dense_sizes = 4096;

    bool m_count_sizes;
    bool m_stack_totals;
    uint64_t m_allocations = 0;
    uint64_t m_deallocations = 0;
    uint64_t m_total_bytes = 0;
    uint64_t m_heap = 0;
    uint64_t m_peak = 0;
    uint64_t m_peak_time_us = 0;
    uint32_t m_epoch = 0;  // number of the latest peak (0 = none yet)
    std::array<uint64_t, format::k_allocator_max + 1> m_by_allocator{};
    std::vector<uint64_t> m_by_small_size = std::vector<uint64_t>(k_dense_sizes);
    FlatMap<uint64_t> m_by_size;
    mutable FlatMap<Live> m_live;
    FlatMap<uint64_t> m_big_sizes;  // address -> size of live blocks of k_big_size bytes or more
    // mmap ranges are few and may be trimmed or split by munmap: an ordered map by start.
    std::map<uint64_t, MmapRange> m_mmaps;
    uint64_t m_mmap_count = 0;
    std::vector<NodeStats> m_nodes = std::vector<NodeStats>(1);
    std::vector<Amount> m_totals = std::vector<Amount>(m_stack_totals ? 1 : 0);  // by node
};

inline void AllocationTracker::on_event(const format::Event& e) {
    using format::Allocator;
    switch (e.allocator) {
        case Allocator::Free:
        case Allocator::PymallocFree: {
            ++m_deallocations;
            uint64_t size;
            uint32_t node;
            if (take_live(e.address, size, node)) release(node, size, 1);
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

    bool big = e.size >= k_big_size;
    Live fresh{big ? k_big_size : uint32_t(e.size), e.node};
    Live old;
    if (!m_live.insert(e.address, fresh, &old)) [[unlikely]]
        on_reused_address(e.address, old);
    if (big) [[unlikely]]
        m_big_sizes.insert(e.address, e.size);
    acquire(e.node, e.size);
    update_peak(e.time_us);
}

// How track_capture() splits the work: Auto decodes on a second thread when the capture is big
// and a second CPU exists; the results are the same either way.
enum class TrackThreads { Auto, One, Two };

// Reads every event and sample of `reader` into `tracker`. Returns the number of events.
uint64_t track_capture(format::Reader& reader, AllocationTracker& tracker,
                       TrackThreads threads = TrackThreads::Auto);

}  // namespace memray::report
