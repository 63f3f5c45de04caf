#include "report/allocation_tracker.hpp"

#include <algorithm>
#include <iterator>

#include "report/event_pump.hpp"

namespace memray::report {

void AllocationTracker::on_mmap(const format::Event& e) {
    ++m_allocations;
    m_total_bytes += e.size;
    m_by_allocator[uint8_t(format::Allocator::Mmap)] += 1;
    count_size(e.size);
    if (e.size == 0) return;
    // A mapping placed over live ones (MAP_FIXED) replaces them.
    on_munmap(e.address, e.size);
    m_mmaps.emplace(e.address, MmapRange{e.address + e.size, e.node});
    ++m_mmap_count;
    acquire(e.node, e.size);
}

// The address was handed out again without a recorded free (the free happened where we do not
// see it): the old block is gone.
void AllocationTracker::on_reused_address(uint64_t address, const Live& old) {
    uint64_t size = old.size;
    if (old.size == k_big_size) m_big_sizes.erase(address, &size);
    release(old.node, size, 1);
}

void AllocationTracker::on_munmap(uint64_t address, uint64_t size) {
    if (size == 0 || m_mmaps.empty()) return;
    uint64_t end = address + size;
    auto it = m_mmaps.upper_bound(address);
    if (it != m_mmaps.begin()) --it;
    while (it != m_mmaps.end() && it->first < end) {
        uint64_t r_start = it->first;
        MmapRange r = it->second;
        if (r.end <= address) {
            ++it;
            continue;
        }
        uint64_t cut_start = std::max(r_start, address);
        uint64_t cut_end = std::min(r.end, end);
        bool keep_left = r_start < cut_start;
        bool keep_right = cut_end < r.end;
        // Each remaining piece counts as one allocation, as memray's interval tree does.
        int64_t count_delta = int64_t(keep_left) + int64_t(keep_right) - 1;
        it = m_mmaps.erase(it);
        if (keep_left) m_mmaps.emplace(r_start, MmapRange{cut_start, r.node});
        if (keep_right) it = std::next(m_mmaps.emplace(cut_end, MmapRange{r.end, r.node}).first);
        m_mmap_count += uint64_t(count_delta);
        NodeStats& n = node_for_update(r.node);
        n.live_bytes -= cut_end - cut_start;
        n.live_count += uint32_t(count_delta);
        m_heap -= cut_end - cut_start;
    }
}

void AllocationTracker::grow_nodes(uint32_t id) {
    size_t n = std::max<size_t>(size_t(id) + 1, m_nodes.size() * 2);
    m_nodes.resize(n);
    if (m_stack_totals) m_totals.resize(n);
}

// The 32-bit peak number wrapped (after 4 G peaks). At a new peak every saved value is stale,
// so marking all of them as saved before peak 1 and restarting at 1 changes no result.
void AllocationTracker::renumber_epochs() {
    for (NodeStats& n : m_nodes) n.saved_epoch = 0;
    m_epoch = 1;
}

std::vector<std::pair<uint64_t, uint64_t>> AllocationTracker::count_by_size() const {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (uint64_t size = 0; size < k_dense_sizes; ++size)
        if (m_by_small_size[size]) out.emplace_back(size, m_by_small_size[size]);
    m_by_size.for_each([&](uint64_t size, const uint64_t& count) { out.emplace_back(size, count); });
    std::sort(out.begin(), out.end());
    return out;
}

uint64_t track_capture(format::Reader& reader, AllocationTracker& tracker, TrackThreads threads) {
    return pump_events(reader, tracker, threads);
}

}  // namespace memray::report
