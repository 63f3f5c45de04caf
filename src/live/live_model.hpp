// What is alive now, folded from a record stream as it arrives (docs/live.md, "The model"): the
// part of the live stream that knows nothing of sockets, so that it can be tested and benched on
// capture files and synthetic events.
//
// The table is kept up to date on each event, so that a redraw costs a pass over the rows, not
// over the stacks. A row is a location: (function, file) of a shown frame, as in memray's live
// table. Its numbers are kept per (location, thread) in a "slot". Each (stack node, thread) seen
// gets, once, the list of the distinct slots of its shown frames (innermost first: the first is
// the one whose "own" numbers it feeds); each event then adds to or takes from the slots of its
// list. Resolving a stack needs the reader's tables and the symbolizer, so a new (node, thread)
// is only counted in its slots at the next rows() (it waits in m_pending until then); from then
// on its events update the slots directly.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "format/reader.hpp"
#include "live/source.hpp"
#include "report/flat_map.hpp"
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"
#include "report/symbolizer.hpp"

namespace memray::live {

class LiveModel {
  public:
    static constexpr size_t k_max_history = 4096;  // heap points kept; older ones are thinned

    // `symbolizer` (may be null: native frames stay module+0xoffset) must outlive the model.
    explicit LiveModel(report::Symbolizer* symbolizer = nullptr) : m_symbolizer(symbolizer) {}

    inline void on_event(const format::Event& e);
    void on_sample(const format::MemorySample& s);

    uint64_t heap() const { return m_heap; }
    uint64_t peak() const { return m_peak; }
    uint64_t last_rss() const { return m_last_rss; }
    // The latest time the stream told of (an event's or a memory sample's), since tracking
    // started: samples keep coming every 10 ms while the program allocates nothing.
    uint64_t last_time_us() const { return m_last_time_us; }
    const std::vector<HeapPoint>& history() const { return m_history; }

    // The table for thread `thread_index` (0 = all merged), unsorted. `reader` is the one the
    // events came from; its tables may have grown since the last call.
    std::vector<Row> rows(const format::Reader& reader, uint32_t thread_index, bool hide_internal);
    // What is alive now as a report snapshot (kind Leaks: alive at the end of what was read),
    // for the flame graph reporter; `resolver()` resolves its nodes.
    report::Snapshot snapshot(const format::Reader& reader) const;
    const report::StackResolver& resolver(const format::Reader& reader);

  private:
    static constexpr uint32_t k_unresolved = ~0u;
    static constexpr uint32_t k_big_size = ~0u;

    // A (stack node, thread): what it holds now, and where its slot list is (k_unresolved: not
    // counted in any slot yet).
    // Counts of live blocks fit 32 bits (each is an entry of m_live or m_mmaps). Both records
    // are aligned (a cache line, half of one), so none spans two lines: each event touches one
    // Location and the Slots of its stack.
    static constexpr uint32_t k_inline_slots = 9;
    struct alignas(64) Location {
        uint32_t node = 0;
        uint32_t thread = 0;
        uint64_t live_bytes = 0;
        uint32_t live_count = 0;
        uint32_t slots_count = k_unresolved;
        // The slot list: here when it is short (no second cache miss per event), else
        // m_location_slots from slots[0] on.
        uint32_t slots[k_inline_slots] = {};
        const uint32_t* list(const std::vector<uint32_t>& outside) const {
            return slots_count <= k_inline_slots ? slots : &outside[slots[0]];
        }
    };
    // A row's numbers for one thread. Unsigned arithmetic: a release adds the negated amount.
    struct alignas(32) Slot {
        uint64_t total_bytes = 0;
        uint64_t own_bytes = 0;
        uint32_t total_count = 0;
        uint32_t own_count = 0;
        uint32_t key = 0;
        uint32_t thread = 0;
    };
    // A live block: its size (k_big_size: in m_big_sizes) and its location. 16 bytes a slot.
    struct Live {
        uint32_t size;
        uint32_t location;
    };
    struct MmapRange {
        uint64_t end;
        uint32_t location;
    };
    struct Span {
        uint32_t first = 0;
        uint32_t count = 0;
        bool done = false;
    };
    struct Key {
        std::string function, file;
        uint32_t line;  // of the first frame seen with this (function, file)
    };

    uint32_t location(uint32_t node, uint32_t thread) {
        // Arrays per thread indexed by node: one load per allocation (a hash map cost more than
        // the rest of the fold).
        if (thread >= m_location_ids.size()) [[unlikely]]
            m_location_ids.resize(size_t(thread) + 1);
        std::vector<uint32_t>& ids = m_location_ids[thread];
        if (node >= ids.size()) [[unlikely]]
            ids.resize(std::max<size_t>(size_t(node) + 1, ids.size() * 2), 0);
        uint32_t& id = ids[node];
        if (id == 0) [[unlikely]]
            id = new_location(node, thread);
        return id;
    }
    uint32_t new_location(uint32_t node, uint32_t thread);
    // Adds (bytes, count) (two's complement for a release) to location l and its slots.
    void change(uint32_t l, uint64_t bytes, uint32_t count) {
        Location& loc = m_locations[l];
        loc.live_bytes += bytes;
        loc.live_count += count;
        if (loc.slots_count == k_unresolved || loc.slots_count == 0) return;
        const uint32_t* s = loc.list(m_location_slots);
        Slot& own = m_slots[s[0]];
        own.own_bytes += bytes;
        own.own_count += count;
        for (uint32_t i = 0; i < loc.slots_count; ++i) {
            Slot& slot = m_slots[s[i]];
            slot.total_bytes += bytes;
            slot.total_count += count;
        }
    }
    void on_alloc(const format::Event& e);
    void release(uint64_t address);
    void on_mmap(const format::Event& e);
    void on_munmap(uint64_t address, uint64_t size);

    // Counts location l in its slots (resolving its stack), or takes it out of them.
    void resolve(const format::Reader& reader, uint32_t l);
    void unresolve(uint32_t l);
    void switch_mode(bool hide_internal);
    uint32_t slot_of(uint32_t thread, uint32_t key);
    // Key ids of the frames shown for `node`, innermost first, each once (cached per node).
    Span shown(const format::Reader& reader, uint32_t node);
    uint32_t key_of(const report::Frame& f);

    report::Symbolizer* m_symbolizer;

    // The fold: live blocks by address, per-location amounts, the heap.
    report::FlatMap<Live> m_live;
    report::FlatMap<uint64_t> m_big_sizes;  // address -> size of live blocks of 4 GiB or more
    std::map<uint64_t, MmapRange> m_mmaps;  // by start; munmap may trim or split them
    uint64_t m_heap = 0, m_peak = 0, m_peak_time_us = 0;
    uint64_t m_allocations = 0, m_total_bytes = 0;
    uint64_t m_last_time_us = 0;
    // Location 0 stands for nothing; ids are dense from 1.
    std::vector<Location> m_locations = std::vector<Location>(1);
    std::vector<std::vector<uint32_t>> m_location_ids;  // [thread][node] -> location (0: none)

    // The table, for the hide rule m_hide_internal.
    bool m_hide_internal = false;
    std::vector<Slot> m_slots;
    // [thread][key] -> slot + 1 (0: none yet): arrays, so that resolving a new (node, thread)
    // costs one load per frame rather than a hash lookup.
    std::vector<std::vector<uint32_t>> m_slot_ids;
    std::vector<std::vector<uint32_t>> m_thread_slots;  // [thread] -> its slots
    std::vector<uint32_t> m_location_slots;             // the locations' long slot lists
    std::vector<uint32_t> m_resolve_scratch;
    std::vector<uint32_t> m_pending;                    // locations not counted in slots yet
    std::vector<uint32_t> m_unknown;                    // counted as "<stack unknown ...>"

    std::unique_ptr<report::StackResolver> m_resolver;
    size_t m_resolver_nodes = 0, m_resolver_objects = 0, m_resolver_codes = 0;
    // Shown frames per node under m_hide_internal (cleared when it changes).
    std::vector<Span> m_spans;
    std::vector<uint32_t> m_span_keys;
    // Distinct (function, file) of the table.
    std::vector<Key> m_keys;
    std::unordered_map<std::string, uint32_t> m_key_ids;
    std::vector<uint32_t> m_stamp;   // per key: last node that counted it (shown())
    uint32_t m_stamp_no = 0;
    std::vector<uint32_t> m_row_of;  // rows() scratch, per key
    size_t m_last_rows = 0;
    uint32_t m_unknown_key = ~0u;

    std::vector<HeapPoint> m_history;
    uint64_t m_thin_every = 1, m_samples_seen = 0;
    uint64_t m_last_rss = 0;
};

inline void LiveModel::on_event(const format::Event& e) {
    if (e.time_us > m_last_time_us) m_last_time_us = e.time_us;
    switch (e.allocator) {
        case format::Allocator::Free:
        case format::Allocator::PymallocFree:
            release(e.address);
            return;
        case format::Allocator::Munmap:
            on_munmap(e.address, e.size);
            return;
        case format::Allocator::Mmap:
            on_mmap(e);
            return;
        default:
            on_alloc(e);
    }
}

inline void LiveModel::on_alloc(const format::Event& e) {
    ++m_allocations;
    m_total_bytes += e.size;
    uint32_t l = location(e.node, e.thread);
    bool big = e.size >= k_big_size;
    Live old;
    if (!m_live.insert(e.address, Live{big ? k_big_size : uint32_t(e.size), l}, &old)) [[unlikely]] {
        // Handed out again without a free we saw: the old block is gone.
        uint64_t size = old.size;
        if (old.size == k_big_size) m_big_sizes.erase(e.address, &size);
        m_heap -= size;
        change(old.location, uint64_t(0) - size, uint32_t(0) - 1);
    }
    if (big) [[unlikely]]
        m_big_sizes.insert(e.address, e.size);
    m_heap += e.size;
    if (m_heap >= m_peak) {
        m_peak = m_heap;
        m_peak_time_us = e.time_us;
    }
    change(l, e.size, 1);
}

inline void LiveModel::release(uint64_t address) {
    Live old;
    if (!m_live.erase(address, &old)) return;
    uint64_t size = old.size;
    if (old.size == k_big_size) [[unlikely]]
        m_big_sizes.erase(address, &size);
    m_heap -= size;
    change(old.location, uint64_t(0) - size, uint32_t(0) - 1);
}

}  // namespace memray::live
