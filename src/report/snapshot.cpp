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

// --temporal high-water mark: each location's share of the heap at the highest moment of every
// interval, as runs of intervals with the same share. Kept lazily, as the tracker keeps its
// at_peak(): a location is brought up to date only when it changes (its share at a peak it has
// not changed since is its share now), so a new peak costs nothing per location.
class PeakHistory {
  public:
    struct Run {
        uint32_t location, first, end;  // intervals [first, end); end k_never: to the last
        Amount amount;
    };

    // Intervals are merged pairwise once there are twice as many as memory points may be; the
    // end merges them to the points' resolution (which is never finer).
    explicit PeakHistory(size_t max_points) : m_limit(2 * max_points) {}

    void add(uint32_t location, uint64_t bytes) {
        State& st = touch(location);
        st.live.count += 1;
        st.live.bytes += bytes;
    }
    void remove(uint32_t location, uint64_t bytes) {
        State& st = touch(location);
        st.live.count -= 1;
        st.live.bytes -= bytes;
    }
    // After each event, with the tracked heap: ">=", the latest of equal peaks counts.
    void after_event(uint64_t heap) {
        if (heap >= m_peak) {
            m_peak = heap;
            ++m_peak_id;
        }
    }
    // Memory sample number `raw` (before any merging) was read; `heap` is the heap now.
    void on_sample(uint64_t raw, uint64_t heap) {
        // The first interval also holds what came before the first sample.
        if (raw == 0 || (raw & ((uint64_t(1) << m_shift) - 1)) != 0) return;
        end_interval();
        uint64_t next = raw >> m_shift;
        if (next >= m_limit) {
            merge_all(uint32_t(next), 1);
            next >>= 1;
        }
        m_current = uint32_t(next);
        // The heap as the interval starts is its first candidate peak.
        m_peak = heap;
        ++m_peak_id;
    }
    // Runs and per-interval peaks at 2^`shift` samples per interval (the memory points').
    void finish(unsigned shift, std::vector<Run>& runs, std::vector<uint64_t>& peaks) {
        end_interval();
        uint32_t end = m_current + 1;
        for (uint32_t loc = 0; loc < m_states.size(); ++loc) {
            State& st = m_states[loc];
            if (st.interval != end) bring_up(st, loc, end);
            close_run(st, loc, IntervalAmount::k_never);
        }
        if (shift > m_shift) remap(shift - m_shift);
        // Merging closed every run: join the pieces of one again.
        std::sort(m_runs.begin(), m_runs.end(), [](const Run& a, const Run& b) {
            return a.location != b.location ? a.location < b.location : a.first < b.first;
        });
        size_t w = 0;
        for (const Run& r : m_runs) {
            if (w > 0) {
                Run& last = m_runs[w - 1];
                if (last.location == r.location && last.end == r.first &&
                    last.amount.count == r.amount.count && last.amount.bytes == r.amount.bytes) {
                    last.end = r.end;
                    continue;
                }
            }
            m_runs[w++] = r;
        }
        m_runs.resize(w);
        runs = std::move(m_runs);
        peaks = std::move(m_peaks);
    }

  private:
    struct State {
        Amount live;        // now
        Amount at_peak;     // at peak number peak_id
        Amount run;         // of the open run, from interval run_first on
        uint64_t peak_id = 0;
        uint32_t interval = 0;  // the interval of the latest change
        uint32_t run_first = 0;
    };

    State& touch(uint32_t location) {
        if (location >= m_states.size()) m_states.resize(size_t(location) + 1);
        State& st = m_states[location];
        if (st.interval != m_current) bring_up(st, location, m_current);
        if (st.peak_id != m_peak_id) {  // first change since the latest peak: remember it
            st.at_peak = st.live;
            st.peak_id = m_peak_id;
        }
        return st;
    }
    // Records the shares of a location for its intervals from st.interval to `to` (exclusive),
    // all ended: at the last one's peak if it changed after that peak, else what it holds now.
    void bring_up(State& st, uint32_t location, uint32_t to) {
        uint32_t k = st.interval;
        push(st, location, k, st.peak_id == m_final_peak_id[k] ? st.at_peak : st.live);
        if (k + 1 < to) push(st, location, k + 1, st.live);
        st.interval = to;
    }
    void push(State& st, uint32_t location, uint32_t k, Amount a) {
        if (a.count == st.run.count && a.bytes == st.run.bytes) return;
        close_run(st, location, k);
        st.run_first = k;
        st.run = a;
    }
    void close_run(State& st, uint32_t location, uint32_t end) {
        if (st.run.count != 0 || st.run.bytes != 0)
            m_runs.push_back({location, st.run_first, end, st.run});
        st.run = {};
        st.run_first = end;
    }
    void end_interval() {
        m_final_peak_id.push_back(m_peak_id);
        m_peaks.push_back(m_peak);
    }
    // Brings every location up to interval `next` (just starting), then merges 2^`shift`
    // intervals into one.
    void merge_all(uint32_t next, unsigned shift) {
        for (uint32_t loc = 0; loc < m_states.size(); ++loc) {
            State& st = m_states[loc];
            if (st.interval != next) bring_up(st, loc, next);
            close_run(st, loc, next);
            st.interval = next >> shift;
            st.run_first = next >> shift;
        }
        remap(shift);
        m_final_peak_id.assign(m_peaks.size(), 0);  // every location is past them
    }
    void remap(unsigned shift) {
        std::vector<uint64_t> merged;
        std::vector<uint32_t> chosen = choose_peaks(m_peaks, shift, merged);
        size_t w = 0;
        for (Run r : m_runs)
            if (coarsen_peak_run(chosen, r.first, r.end)) m_runs[w++] = r;
        m_runs.resize(w);
        m_peaks = std::move(merged);
        m_shift += shift;
    }

    uint64_t m_limit;
    unsigned m_shift = 0;    // 2^m_shift samples per interval
    uint32_t m_current = 0;  // the interval events fall into now
    uint64_t m_peak = 0;     // highest heap of the current interval so far
    uint64_t m_peak_id = 0;  // number of the latest peak
    std::vector<uint64_t> m_final_peak_id;  // per ended interval: its last peak's number
    std::vector<uint64_t> m_peaks;          // per ended interval: its highest heap
    std::vector<State> m_states;            // by location
    std::vector<Run> m_runs;                // closed runs
};

// Per-location amounts outside the tracker: temporary allocations and, for --temporal, the
// interval in which each live block was born.
class Extras {
  public:
    explicit Extras(const SnapshotOptions& o)
        : m_temporary(o.kind == SnapshotKind::Temporary), m_temporal(o.temporal),
          m_peaks(o.temporal && o.kind == SnapshotKind::HighWaterMark),
          m_ring_capacity(size_t(std::min<uint64_t>(o.temporary_threshold, 1u << 20)) + 1),
          m_max_points(std::clamp<size_t>(o.max_memory_records, 1, k_max_points)),
          m_history(m_max_points) {}

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
        if (m_peaks) m_history.on_sample(j, heap);
    }

    // `heap`: the tracked heap after the event.
    void on_allocation(const Event& e, uint64_t heap) {
        if (m_temporary) remember(e);
        if (m_temporal) {
            Born old;
            if (!m_born.insert(e.address, {e.node, current_raw(), e.size}, &old)) [[unlikely]]
                close(old);  // reused without a recorded free: the old block is gone
            if (m_peaks) {
                m_history.add(e.node, e.size);
                m_history.after_event(heap);
            }
        }
    }

    void on_deallocation(const Event& e, uint64_t heap) {
        if (m_temporary) forget(e);
        if (m_temporal) {
            // munmap of part of a mapping is not followed here: only the mapping's start address.
            Born b;
            if (m_born.erase(e.address, &b)) close(b);
            if (m_peaks) m_history.after_event(heap);
        }
    }

    const std::vector<Amount>& temporary() const { return m_temp; }
    std::vector<MemoryPoint>& points() { return m_points; }

    // The high-water-mark runs and per-interval peaks (temporal HighWaterMark view).
    void peak_history(std::vector<PeakHistory::Run>& runs, std::vector<uint64_t>& peaks) {
        m_history.finish(m_shift, runs, peaks);
    }

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
        if (m_peaks) {
            m_history.remove(b.location, b.size);
            return;
        }
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
    bool m_peaks;  // temporal high-water mark: m_history instead of m_intervals
    size_t m_ring_capacity;
    size_t m_max_points;
    PeakHistory m_history;
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
            if (format::is_deallocator(e.allocator)) m_extras.on_deallocation(e, m_tracker.heap());
            else m_extras.on_allocation(e, m_tracker.heap());
        }
    }

  private:
    AllocationTracker& m_tracker;
    Extras& m_extras;
};

}  // namespace

std::vector<uint32_t> choose_peaks(const std::vector<uint64_t>& peaks, unsigned shift,
                                   std::vector<uint64_t>& merged) {
    const size_t group = size_t(1) << shift;
    std::vector<uint32_t> chosen;
    merged.clear();
    for (size_t first = 0; first < peaks.size(); first += group) {
        size_t best = first;
        for (size_t k = first + 1; k < std::min(peaks.size(), first + group); ++k)
            if (peaks[k] >= peaks[best]) best = k;
        chosen.push_back(uint32_t(best));
        merged.push_back(peaks[best]);
    }
    return chosen;
}

bool coarsen_peak_run(const std::vector<uint32_t>& chosen, uint32_t& allocated_in,
                      uint32_t& freed_in) {
    // `chosen` ascends: the groups a run covers are consecutive.
    auto first = uint32_t(std::lower_bound(chosen.begin(), chosen.end(), allocated_in) -
                          chosen.begin());
    uint32_t end = freed_in == IntervalAmount::k_never
                       ? uint32_t(chosen.size())
                       : uint32_t(std::lower_bound(chosen.begin(), chosen.end(), freed_in) -
                                  chosen.begin());
    if (first >= end) return false;
    allocated_in = first;
    if (freed_in != IntervalAmount::k_never) freed_in = end;
    return true;
}

namespace {

// An aggregated capture (--aggregate) holds the per-location tables already: read to the end and
// take the last complete checkpoint. Its locations come in the order of their first allocation,
// as build_snapshot() numbers them, so both give the reporters the same input.
Snapshot aggregated_snapshot(format::Reader& reader, const SnapshotOptions& options) {
    if (options.kind == SnapshotKind::Temporary)
        throw AggregatedCaptureError(
            "Can't find temporary allocations using a pre-aggregated capture file.");
    if (options.temporal)
        throw AggregatedCaptureError(
            "Can't get allocation history using a pre-aggregated capture file.");
    while (reader.next() != format::Reader::Item::End) {
    }
    if (options.progress) options.progress(reader.file_size(), reader.file_size());
    const format::Aggregate& agg = reader.aggregate();

    Snapshot s;
    s.kind = options.kind;
    for (const format::ThreadInfo& t : reader.threads()) s.threads.push_back({t.tid, t.name});
    if (s.threads.empty()) s.threads.push_back({});
    s.total_allocations = agg.totals.allocations;
    s.total_bytes = agg.totals.total_bytes;
    s.peak_bytes = agg.totals.peak_bytes;
    s.peak_time_us = agg.totals.peak_time_us;
    s.duration_us = reader.trailer() ? reader.trailer()->end_time_us : agg.totals.time_us;
    Extras extras(options);
    for (const format::HeapSample& h : agg.samples) {
        Event e;
        e.allocator = k_sample_marker;
        e.address = h.rss;
        e.time_us = h.time_us;
        extras.on_sample(e, h.heap);
    }
    s.memory = std::move(extras.points());
    if (s.memory.empty()) s.memory.push_back({});
    for (const format::AggregateLocation& l : agg.locations) {
        uint64_t count = options.kind == SnapshotKind::Leaks ? l.amounts.end_count
                                                              : l.amounts.peak_count;
        uint64_t bytes = options.kind == SnapshotKind::Leaks ? l.amounts.end_bytes
                                                              : l.amounts.peak_bytes;
        if (count != 0 || bytes != 0) s.locations.push_back({l.node, l.thread, l.allocator, count, bytes});
    }
    return s;
}

}  // namespace

Snapshot build_snapshot(format::Reader& reader, const SnapshotOptions& options) {
    if (reader.aggregated()) return aggregated_snapshot(reader, options);
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
    if (options.temporal && options.kind == SnapshotKind::HighWaterMark) {
        std::vector<PeakHistory::Run> runs;
        extras.peak_history(runs, s.interval_peaks);
        for (const PeakHistory::Run& r : runs) {
            pending.push_back({r.location, r.first, r.end, r.amount});
            in_intervals[r.location] = true;
        }
    } else if (options.temporal) {
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
