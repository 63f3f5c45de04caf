#include "python/capture.hpp"

#include <algorithm>
#include <unordered_map>

#include "report/capture.hpp"
#include "report/progress.hpp"

namespace memray::python {

namespace {

report::Snapshot read_view(format::Reader& reader, report::SnapshotOptions options, bool progress,
                           const char* what) {
    std::unique_ptr<report::ProgressBar> bar;
    if (progress) {
        bar = std::make_unique<report::ProgressBar>(std::string(what) + " " + reader.path());
        options.progress = bar->callback();
    }
    report::Snapshot s = report::build_snapshot(reader, options);
    if (bar) bar->finish();
    return s;
}

}  // namespace

Capture::Capture(const std::string& path, size_t max_memory_records, bool progress)
    : m_path(path), m_max_memory_records(max_memory_records), m_progress(progress),
      m_reader(report::open_capture(path)) {
    report::SnapshotOptions options;
    options.kind = report::SnapshotKind::HighWaterMark;
    options.max_memory_records = max_memory_records;
    m_hwm = read_view(*m_reader, options, progress, "Calculating high watermark of");
    const auto& trailer = m_reader->trailer();
    // Without a trailer (a cut capture) the deallocations were not counted: allocations only.
    m_total_records = trailer ? trailer->allocations + trailer->deallocations
                              : m_hwm.total_allocations;
}

uint64_t Capture::end_time_us() const {
    return m_reader->trailer() ? m_reader->trailer()->end_time_us : m_reader->last_time_us();
}

report::Snapshot Capture::view(report::SnapshotKind kind, uint64_t threshold, bool temporal) const {
    format::Reader reader(m_path);
    report::SnapshotOptions options;
    options.kind = kind;
    options.temporary_threshold = threshold;
    options.temporal = temporal;
    options.max_memory_records = m_max_memory_records;
    return read_view(reader, options, m_progress, "Processing allocation records of");
}

namespace {

// One location's numbers in the temporal high-water-mark pass (epochs as in
// report/allocation_tracker.hpp: the first change after a peak saves the values at that peak).
struct TemporalSlot {
    uint64_t live_bytes = 0, saved_bytes = 0, shown_bytes = 0;
    uint64_t live_count = 0, saved_count = 0, shown_count = 0;
    uint32_t saved_epoch = 0;
    uint32_t open_start = TemporalRun::k_open;  // raw interval where the shown share began
    bool dirty = false;  // changed since the last interval's peak: its share must be looked at
};

}  // namespace

TemporalHighWaterMark Capture::temporal_high_water_mark(bool merge_threads) const {
    format::Reader reader(m_path);
    TemporalHighWaterMark out;
    std::vector<TemporalSlot> slots;
    std::unordered_map<uint64_t, uint32_t> ids;  // thread | allocator | node -> location
    std::unordered_map<uint64_t, std::pair<uint32_t, uint64_t>> live;  // address -> (location, size)
    std::vector<uint32_t> dirty, still_dirty;
    std::vector<uint64_t> raw_hwm;  // per raw interval (every memory sample is a boundary)
    std::vector<TemporalRun> raw_runs;
    uint64_t heap = 0, peak = 0;
    uint32_t epoch = 1, raw = 0;

    auto touch = [&](uint32_t id) -> TemporalSlot& {
        TemporalSlot& t = slots[id];
        if (t.saved_epoch != epoch) {
            t.saved_count = t.live_count;
            t.saved_bytes = t.live_bytes;
            t.saved_epoch = epoch;
        }
        if (!t.dirty) {
            t.dirty = true;
            dirty.push_back(id);
        }
        return t;
    };
    auto update_peak = [&] {
        if (heap >= peak) {  // the latest of equal peaks counts, as memray
            peak = heap;
            ++epoch;
        }
    };
    auto release = [&](uint64_t address) {
        auto it = live.find(address);
        if (it == live.end()) return;
        TemporalSlot& t = touch(it->second.first);
        t.live_count -= 1;
        t.live_bytes -= it->second.second;
        heap -= it->second.second;
        live.erase(it);
    };
    auto end_interval = [&] {
        raw_hwm.push_back(peak);
        still_dirty.clear();
        for (uint32_t id : dirty) {
            TemporalSlot& t = slots[id];
            bool changed_after_peak = t.saved_epoch == epoch;
            uint64_t bytes = changed_after_peak ? t.saved_bytes : t.live_bytes;
            uint64_t count = changed_after_peak ? t.saved_count : t.live_count;
            if (bytes != t.shown_bytes || count != t.shown_count) {
                if (t.open_start != TemporalRun::k_open)
                    raw_runs.push_back({id, t.open_start, raw, t.shown_count, t.shown_bytes});
                t.open_start = (bytes != 0 || count != 0) ? raw : TemporalRun::k_open;
                t.shown_bytes = bytes;
                t.shown_count = count;
            }
            // Changed after this interval's peak: its share of the next one may differ too.
            if (changed_after_peak) still_dirty.push_back(id);
            else t.dirty = false;
        }
        dirty.swap(still_dirty);
        ++raw;
        peak = heap;  // the start of an interval counts as a peak
        ++epoch;
    };

    for (;;) {
        format::Reader::Item item = reader.next();
        if (item == format::Reader::Item::End) break;
        if (item == format::Reader::Item::Sample) {
            end_interval();
            continue;
        }
        const format::Event& e = reader.event();
        if (format::is_deallocator(e.allocator)) {
            // munmap of part of a mapping is not followed: only the mapping's start address.
            release(e.address);
            update_peak();
            continue;
        }
        release(e.address);  // reused without a recorded free: the old block is gone
        uint32_t thread = merge_threads ? 0 : e.thread;
        uint64_t key = uint64_t(thread) << 37 | uint64_t(uint8_t(e.allocator) & 31) << 32 | e.node;
        auto [it, fresh] = ids.try_emplace(key, uint32_t(slots.size()));
        if (fresh) {
            slots.emplace_back();
            out.locations.push_back({e.node, thread, e.allocator});
        }
        TemporalSlot& t = touch(it->second);
        t.live_count += 1;
        t.live_bytes += e.size;
        heap += e.size;
        live[e.address] = {it->second, e.size};
        update_peak();
    }
    end_interval();  // the last interval, after the last sample
    for (uint32_t id = 0; id < slots.size(); ++id) {
        if (slots[id].open_start != TemporalRun::k_open)
            raw_runs.push_back({id, slots[id].open_start, TemporalRun::k_open, slots[id].shown_count,
                                slots[id].shown_bytes});
    }

    // The first pass merged memory samples 2^shift at a time (report/snapshot.cpp): snapshot j
    // is raw sample j << shift. Each interval's share is the one at its highest raw peak.
    uint64_t samples = raw_hwm.size() - 1;
    size_t max_points = std::clamp<size_t>(m_max_memory_records, 1, 65535);
    unsigned shift = 0;
    while (samples != 0 && ((samples - 1) >> shift) >= max_points) ++shift;
    uint64_t group = uint64_t(1) << shift;
    std::vector<uint32_t> rep;  // raw interval standing for each interval
    for (uint64_t first = 0; first < raw_hwm.size();) {
        uint64_t last = first == 0 ? 0 : std::min<uint64_t>(first + group - 1, raw_hwm.size() - 1);
        uint64_t best = first;
        for (uint64_t r = first; r <= last; ++r)
            if (raw_hwm[r] >= raw_hwm[best]) best = r;
        rep.push_back(uint32_t(best));
        out.hwm_bytes.push_back(raw_hwm[best]);
        first = last + 1;
    }
    std::stable_sort(raw_runs.begin(), raw_runs.end(), [](const TemporalRun& a, const TemporalRun& b) {
        return a.location != b.location ? a.location < b.location : a.start < b.start;
    });
    for (const TemporalRun& r : raw_runs) {
        uint32_t from = uint32_t(std::lower_bound(rep.begin(), rep.end(), r.start) - rep.begin());
        uint32_t to = r.end == TemporalRun::k_open
                          ? uint32_t(rep.size())
                          : uint32_t(std::lower_bound(rep.begin(), rep.end(), r.end) - rep.begin());
        if (from >= to) continue;  // no interval's peak falls in this run
        uint32_t end = to == rep.size() ? TemporalRun::k_open : to;
        TemporalRun* prev = out.runs.empty() ? nullptr : &out.runs.back();
        if (prev && prev->location == r.location && prev->end == from && prev->count == r.count &&
            prev->bytes == r.bytes) {
            prev->end = end;
        } else {
            out.runs.push_back({r.location, from, end, r.count, r.bytes});
        }
    }
    return out;
}

uint64_t Capture::tid_of(uint32_t thread) const {
    const auto& threads = m_reader->threads();
    return thread < threads.size() ? threads[thread].tid : 0;
}

std::string Capture::thread_name_of(uint32_t thread) const {
    const auto& threads = m_reader->threads();
    return thread < threads.size() ? threads[thread].name : std::string();
}

const report::StackResolver& Capture::resolver(bool native) const {
    bool has_native = (m_reader->header().flags & format::k_flag_native) != 0;
    if (!native || !has_native) {
        if (!m_plain) m_plain = std::make_unique<report::StackResolver>(*m_reader);
        return *m_plain;
    }
    if (!m_symbolized) {
        m_symbolizer = std::make_unique<report::Symbolizer>();
        m_symbolized = std::make_unique<report::StackResolver>(*m_reader, m_symbolizer.get());
    }
    return *m_symbolized;
}

std::vector<report::Frame> Capture::stack(uint32_t node, StackKind kind, size_t max) const {
    std::vector<report::Frame> out;
    if (kind == StackKind::Native) {
        // The native frames alone, eval-loop frames included (the hybrid stack replaces them).
        const report::StackResolver& r = resolver(true);
        const auto& nodes = m_reader->nodes();
        for (size_t steps = 0; node != 0 && node < nodes.size() && steps < nodes.size(); ++steps) {
            if (nodes[node].kind == format::FrameKind::Native) out.push_back(r.frame(node));
            node = nodes[node].parent;
        }
    } else {
        // The resolver already dropped the Tracker's callers (and, in a hybrid stack, the
        // native frames outside them).
        out = resolver(kind == StackKind::Hybrid).stack(node);
        if (kind == StackKind::Python)
            out.erase(std::remove_if(out.begin(), out.end(),
                                     [](const report::Frame& f) { return f.native; }),
                      out.end());
    }
    if (max != 0 && out.size() > max) out.resize(max);
    return out;
}

}  // namespace memray::python
