#include "report/snapshot.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <vector>

#include "report/allocation_tracker.hpp"
#include "report/event_pump.hpp"
#include "report/flat_map.hpp"

namespace memray::report {

namespace {

using format::Allocator;
using format::Event;

bool is_sample(const Event& e) { return e.allocator == k_sample_marker; }

// Names each allocation's location (node, thread, allocator) with a dense id and writes it into
// the event's `node` field, so that the AllocationTracker downstream keeps its per-"node" numbers
// per location. Runs on the decoding thread (event_pump's Transform).
//
// The three fields are packed into one 64-bit key of an open-addressing map: one probe, nearly
// always in the first slot. (A chain of a node's locations measured 40% of a pass: a hot node
// has a location per thread and allocator, and walking them mispredicted at every link.) The
// allocations of a batch are listed first without a branch (frees and allocations interleave at
// random), then looked up with the map slots prefetched a few events ahead.
class LocationIndex {
  public:
    struct Key {
        uint32_t node;
        uint32_t thread;
        Allocator allocator;
    };

    LocationIndex(format::Reader& reader, const SnapshotOptions& options)
        : m_reader(reader), m_progress(options.progress) {}

    void operator()(Event* events, size_t n) {
        if (n > m_allocs.size()) m_allocs.resize(n);
        uint32_t* allocs = m_allocs.data();
        size_t k = 0;
        for (size_t i = 0; i < n; ++i) {
            allocs[k] = uint32_t(i);
            unsigned a = unsigned(events[i].allocator);
            k += (k_named_bits >> (a & 31)) & 1;
        }
        constexpr size_t k_ahead = 8;
        for (size_t j = 0; j < std::min(k, k_ahead); ++j) m_map.prefetch(key_of(events[allocs[j]]));
        for (size_t j = 0; j < k; ++j) {
            if (j + k_ahead < k) m_map.prefetch(key_of(events[allocs[j + k_ahead]]));
            Event& e = events[allocs[j]];
            e.node = id(e);
        }
        // Every ~1 M events: cheap enough to ignore, often enough for a smooth bar.
        m_since_progress += n;
        if (m_progress && m_since_progress >= (1u << 20)) {
            m_since_progress = 0;
            m_progress(m_reader.bytes_consumed(), m_reader.file_size());
        }
    }

    const std::vector<Key>& keys() const { return m_keys; }

  private:
    // Allocator numbers that name a location: allocations (not frees, not the sample marker).
    static constexpr uint32_t k_named_bits = [] {
        uint32_t bits = 0;
        for (unsigned a = 1; a <= format::k_allocator_max; ++a)
            if (!format::is_deallocator(Allocator(a))) bits |= 1u << a;
        return bits;
    }();
    // key = thread (27 bits) | allocator (5 bits) | node (32 bits). Thread indexes are dense and
    // small; a larger one (only a hostile file) goes to a side map.
    static constexpr uint32_t k_thread_limit = 1u << 27;
    static uint64_t key_of(const Event& e) {
        return uint64_t(e.thread) << 37 | uint64_t(uint8_t(e.allocator) & 31) << 32 | e.node;
    }

    uint32_t id(const Event& e) {
        if (e.thread >= k_thread_limit) [[unlikely]]
            return id_slow(e);
        uint32_t& slot = m_map[key_of(e)];
        if (slot == 0) [[unlikely]]
            slot = fresh(e);
        return slot;
    }
    uint32_t id_slow(const Event& e) {
        uint64_t key = uint64_t(e.thread) << 32 | e.node;
        uint32_t& slot = m_far[key][uint8_t(e.allocator) & 31];
        if (slot == 0) slot = fresh(e);
        return slot;
    }
    uint32_t fresh(const Event& e) {
        m_keys.push_back({e.node, e.thread, e.allocator});
        return uint32_t(m_keys.size() - 1);
    }

    format::Reader& m_reader;
    const std::function<void(uint64_t, uint64_t)>& m_progress;
    uint64_t m_since_progress = 0;
    FlatMap<uint32_t> m_map;  // key_of() -> location id
    std::map<uint64_t, std::array<uint32_t, 32>> m_far;
    std::vector<uint32_t> m_allocs;            // per batch: indexes of the allocations
    std::vector<Key> m_keys = std::vector<Key>(1);  // id 0 is never handed out
};

// Per-location amounts outside the tracker: temporary allocations and, for --temporal, the
// interval in which each live block was born.
class Extras {
  public:
    explicit Extras(const SnapshotOptions& o)
        : m_temporary(o.kind == SnapshotKind::Temporary), m_temporal(o.temporal),
          m_ring_capacity(size_t(std::min<uint64_t>(o.temporary_threshold, 1u << 20)) + 1),
          m_max_points(std::clamp<size_t>(o.max_memory_records, 1, k_max_points)) {}

    void prefetch(const Event& e) const {
        if (m_temporal) m_born.prefetch(e.address);
    }

    void on_sample(const Event& e, uint64_t heap) {
        uint64_t j = m_samples++;
        while ((j >> m_shift) >= m_max_points) halve();
        size_t p = size_t(j >> m_shift);
        if (p < m_points.size()) {
            // A merged point spans several samples: it starts at the first and shows the
            // highest values, so that downsampling never hides a spike.
            MemoryPoint& m = m_points.back();
            m.rss = std::max(m.rss, e.address);
            m.heap = std::max(m.heap, heap);
        } else {
            m_points.push_back({e.time_us, e.address, heap});
        }
    }

    void on_allocation(const Event& e) {
        if (m_temporary) remember(e);
        if (m_temporal) {
            Born old;
            if (!m_born.insert(e.address, {e.node, current_raw(), e.size}, &old)) [[unlikely]]
                close(old);  // reused without a recorded free: the old block is gone
        }
    }

    void on_deallocation(const Event& e) {
        if (m_temporary) forget(e);
        if (m_temporal) {
            // munmap of part of a mapping is not followed here: only the mapping's start address.
            Born b;
            if (m_born.erase(e.address, &b)) close(b);
        }
    }

    const std::vector<Amount>& temporary() const { return m_temp; }
    std::vector<MemoryPoint>& points() { return m_points; }

    // (location, allocated_in, freed_in, amount) with the blocks alive at the end as k_never.
    template <typename F>
    void for_each_interval(F&& f) {
        m_born.for_each([&](uint64_t, const Born& b) {
            add(b.location, uint32_t(b.raw >> m_shift), IntervalAmount::k_never, b.size);
        });
        m_born.clear();
        m_intervals.for_each([&](uint64_t key, const Amount& a) {
            uint32_t loc = uint32_t(key >> 34);
            uint32_t born = uint32_t(key >> 17) & k_field;
            uint32_t freed = uint32_t(key) & k_field;
            f(loc, born, freed == k_field ? IntervalAmount::k_never : freed, a);
        });
    }

  private:
    // Interval keys pack (location, born, freed) in 30 + 17 + 17 bits; k_field means "never".
    static constexpr uint32_t k_field = (1u << 17) - 1;
    static constexpr size_t k_max_points = 65535;

    struct Recent {
        uint64_t address;
        uint64_t size;
        uint32_t location;
    };
    struct Ring {  // the last allocations of one thread, oldest first
        std::vector<Recent> items;
    };
    struct Born {
        uint32_t location;
        uint32_t raw;  // memory-sample index (before downsampling) when it was allocated
        uint64_t size;
    };

    uint32_t current_raw() const { return m_samples == 0 ? 0 : uint32_t(m_samples - 1); }

    Ring& ring(uint32_t thread) {
        if (thread >= m_rings.size()) m_rings.resize(size_t(thread) + 1);
        return m_rings[thread];
    }
    void remember(const Event& e) {
        auto& items = ring(e.thread).items;
        if (items.size() == m_ring_capacity) items.erase(items.begin());
        items.push_back({e.address, e.size, e.node});
    }
    void forget(const Event& e) {
        auto& items = ring(e.thread).items;
        for (size_t i = items.size(); i-- > 0;) {
            if (items[i].address != e.address) continue;
            if (items[i].location >= m_temp.size()) m_temp.resize(size_t(items[i].location) + 1);
            m_temp[items[i].location].count += 1;
            m_temp[items[i].location].bytes += items[i].size;
            items.erase(items.begin() + long(i));
            return;
        }
    }

    void close(const Born& b) {
        uint32_t born = uint32_t(b.raw >> m_shift);
        uint32_t freed = uint32_t(current_raw() >> m_shift);
        // Freed in the interval it was born in: no window [a, b] shows it (it needs freed > b
        // >= born), so it is not kept.
        if (born != freed) add(b.location, born, freed, b.size);
    }
    void add(uint32_t loc, uint32_t born, uint32_t freed, uint64_t size) {
        uint32_t f = freed == IntervalAmount::k_never ? k_field : freed;
        Amount& a = m_intervals[(uint64_t(loc) << 34) | (uint64_t(born) << 17) | f];
        a.count += 1;
        a.bytes += size;
    }
    // Too many memory points: merge them pairwise, and the intervals with them.
    void halve() {
        ++m_shift;
        std::vector<MemoryPoint> merged;
        for (size_t i = 0; i < m_points.size(); i += 2) {
            MemoryPoint m = m_points[i];
            if (i + 1 < m_points.size()) {
                m.rss = std::max(m.rss, m_points[i + 1].rss);
                m.heap = std::max(m.heap, m_points[i + 1].heap);
            }
            merged.push_back(m);
        }
        m_points = std::move(merged);
        std::vector<std::pair<uint64_t, Amount>> old;
        old.reserve(m_intervals.size());
        m_intervals.for_each([&](uint64_t key, const Amount& a) { old.emplace_back(key, a); });
        m_intervals.clear();
        for (const auto& [key, a] : old) {
            uint32_t born = (uint32_t(key >> 17) & k_field) >> 1;
            uint32_t freed = uint32_t(key) & k_field;
            if (freed != k_field) freed >>= 1;
            if (born == freed) continue;
            Amount& to = m_intervals[(key >> 34 << 34) | (uint64_t(born) << 17) | freed];
            to.count += a.count;
            to.bytes += a.bytes;
        }
    }

    bool m_temporary;
    bool m_temporal;
    size_t m_ring_capacity;
    size_t m_max_points;
    std::vector<Ring> m_rings;
    std::vector<Amount> m_temp;  // by location
    mutable FlatMap<Born> m_born;
    FlatMap<Amount> m_intervals;
    std::vector<MemoryPoint> m_points;
    uint64_t m_samples = 0;
    unsigned m_shift = 0;
};

// The aggregating side. Only temporary and temporal views pay for the Extras; the default and
// leaks views run the tracker alone (WithExtras = false).
template <bool WithExtras>
class SnapshotSink {
  public:
    SnapshotSink(AllocationTracker& tracker, Extras& extras) : m_tracker(tracker), m_extras(extras) {}

    __attribute__((always_inline)) void prefetch(const Event& e) const {
        m_tracker.prefetch(e);
        if (WithExtras) m_extras.prefetch(e);
    }
    void on_event(const Event& e) {
        if (is_sample(e)) [[unlikely]] {
            m_extras.on_sample(e, m_tracker.heap());
            return;
        }
        m_tracker.on_event(e);
        if (WithExtras) {
            if (format::is_deallocator(e.allocator)) m_extras.on_deallocation(e);
            else m_extras.on_allocation(e);
        }
    }

  private:
    AllocationTracker& m_tracker;
    Extras& m_extras;
};

}  // namespace

Snapshot build_snapshot(format::Reader& reader, const SnapshotOptions& options) {
    AllocationTracker tracker(false, false);  // no sizes, no per-location totals
    LocationIndex index(reader, options);
    Extras extras(options);
    TrackThreads threads = options.threads == 1   ? TrackThreads::One
                           : options.threads == 2 ? TrackThreads::Two
                                                  : TrackThreads::Auto;
    if (options.kind == SnapshotKind::Temporary || options.temporal) {
        SnapshotSink<true> sink(tracker, extras);
        pump_events<true>(reader, sink, threads, std::ref(index));
    } else {
        SnapshotSink<false> sink(tracker, extras);
        pump_events<true>(reader, sink, threads, std::ref(index));
    }
    if (options.progress) options.progress(reader.file_size(), reader.file_size());

    Snapshot s;
    s.kind = options.kind;
    for (const format::ThreadInfo& t : reader.threads()) s.threads.push_back({t.tid, t.name});
    if (s.threads.empty()) s.threads.push_back({});
    s.total_allocations = tracker.allocations();
    s.total_bytes = tracker.total_bytes();
    s.peak_bytes = tracker.peak();
    s.peak_time_us = tracker.peak_time_us();
    s.duration_us = reader.trailer() ? reader.trailer()->end_time_us : reader.last_time_us();
    s.memory = std::move(extras.points());
    if (s.memory.empty()) s.memory.push_back({});

    const auto& keys = index.keys();
    std::vector<uint32_t> out_index(keys.size(), ~uint32_t(0));
    auto emit = [&](uint32_t loc, Amount a) {
        out_index[loc] = uint32_t(s.locations.size());
        s.locations.push_back({keys[loc].node, keys[loc].thread, keys[loc].allocator, a.count,
                               a.bytes});
    };
    const std::vector<Amount>& temp = extras.temporary();
    auto amount_of = [&](uint32_t loc) -> Amount {
        if (options.kind == SnapshotKind::Temporary)
            return loc < temp.size() ? temp[loc] : Amount{};
        if (loc >= tracker.node_count()) return {};
        return options.kind == SnapshotKind::Leaks ? tracker.at_end(loc) : tracker.at_peak(loc);
    };
    struct Pending {
        uint32_t loc, born, freed;
        Amount amount;
    };
    std::vector<Pending> pending;
    std::vector<bool> in_intervals(options.temporal ? keys.size() : 0);
    if (options.temporal) {
        extras.for_each_interval([&](uint32_t loc, uint32_t born, uint32_t freed, Amount a) {
            pending.push_back({loc, born, freed, a});
            in_intervals[loc] = true;
        });
    }
    for (uint32_t loc = 1; loc < keys.size(); ++loc) {
        Amount a = amount_of(loc);
        if (a.count != 0 || a.bytes != 0 || (options.temporal && in_intervals[loc])) emit(loc, a);
    }
    for (const Pending& p : pending)
        s.intervals.push_back({out_index[p.loc], p.born, p.freed, p.amount.count, p.amount.bytes});
    std::sort(s.intervals.begin(), s.intervals.end(),
              [](const IntervalAmount& a, const IntervalAmount& b) {
                  if (a.location != b.location) return a.location < b.location;
                  if (a.allocated_in != b.allocated_in) return a.allocated_in < b.allocated_in;
                  return a.freed_in < b.freed_in;
              });
    return s;
}

}  // namespace memray::report
