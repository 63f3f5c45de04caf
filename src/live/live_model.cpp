#include "live/live_model.hpp"

#include <algorithm>

#include "report/frame_rule.hpp"

namespace memray::live {

void LiveModel::on_sample(const format::MemorySample& s) {
    m_last_rss = s.rss;
    if (s.time_us > m_last_time_us) m_last_time_us = s.time_us;
    // Keep every m_thin_every-th sample; when the history is full, drop every other point and
    // double the stride, so the graph always spans the whole session.
    if (m_samples_seen++ % m_thin_every != 0) return;
    m_history.push_back({s.time_us / 1000, m_heap, s.rss});
    if (m_history.size() >= k_max_history) {
        size_t kept = 0;
        for (size_t i = 0; i < m_history.size(); i += 2) m_history[kept++] = m_history[i];
        m_history.resize(kept);
        m_thin_every *= 2;
    }
}

uint32_t LiveModel::new_location(uint32_t node, uint32_t thread) {
    uint32_t id = uint32_t(m_locations.size());
    Location loc;
    loc.node = node;
    loc.thread = thread;
    m_locations.push_back(loc);
    m_pending.push_back(id);
    return id;
}

void LiveModel::on_mmap(const format::Event& e) {
    ++m_allocations;
    m_total_bytes += e.size;
    if (e.size == 0) return;
    uint32_t l = location(e.node, e.thread);
    // A mapping placed over live ones (MAP_FIXED) replaces them.
    on_munmap(e.address, e.size);
    m_mmaps.emplace(e.address, MmapRange{e.address + e.size, l});
    m_heap += e.size;
    if (m_heap >= m_peak) {
        m_peak = m_heap;
        m_peak_time_us = e.time_us;
    }
    change(l, e.size, 1);
}

void LiveModel::on_munmap(uint64_t address, uint64_t size) {
    if (size == 0 || m_mmaps.empty()) return;
    uint64_t end = address + size;
    auto it = m_mmaps.upper_bound(address);
    if (it != m_mmaps.begin()) --it;
    while (it != m_mmaps.end() && it->first < end) {
        uint64_t start = it->first;
        MmapRange r = it->second;
        if (r.end <= address) {
            ++it;
            continue;
        }
        uint64_t cut_start = std::max(start, address);
        uint64_t cut_end = std::min(r.end, end);
        bool left = start < cut_start, right = cut_end < r.end;
        it = m_mmaps.erase(it);
        if (left) m_mmaps.emplace(start, MmapRange{cut_start, r.location});
        if (right) it = std::next(m_mmaps.emplace(cut_end, MmapRange{r.end, r.location}).first);
        // Each piece left counts as an allocation of its own (as memray's interval tree does).
        m_heap -= cut_end - cut_start;
        change(r.location, uint64_t(0) - (cut_end - cut_start),
               uint32_t(int32_t(left) + int32_t(right) - 1));
    }
}

const report::StackResolver& LiveModel::resolver(const format::Reader& reader) {
    // The resolver reads the reader's tables as they are when it is made: make a new one when
    // they grew (our per-node spans survive it; nodes never change).
    if (!m_resolver || reader.nodes().size() != m_resolver_nodes ||
        reader.all_objects().size() != m_resolver_objects ||
        reader.codes().size() != m_resolver_codes) {
        m_resolver = std::make_unique<report::StackResolver>(reader, m_symbolizer);
        m_resolver_nodes = reader.nodes().size();
        m_resolver_objects = reader.all_objects().size();
        m_resolver_codes = reader.codes().size();
    }
    return *m_resolver;
}

uint32_t LiveModel::key_of(const report::Frame& f) {
    // A row is (function, file), as in memray's live table: the lines of a function are one row.
    // A native frame without line information is named by its module (memray does too).
    std::string file = f.file;
    uint32_t line = f.line;
    if (f.native && file.empty()) {
        size_t slash = f.object.rfind('/');
        file = slash == std::string::npos ? f.object : f.object.substr(slash + 1);
        line = 0;
    }
    std::string id = f.function;
    id.push_back('\0');
    id += file;
    auto [it, fresh] = m_key_ids.try_emplace(std::move(id), uint32_t(m_keys.size()));
    if (fresh) {
        m_keys.push_back({f.function, std::move(file), line});
        m_stamp.push_back(0);
    }
    return it->second;
}

LiveModel::Span LiveModel::shown(const format::Reader& reader, uint32_t node) {
    if (node >= m_spans.size()) m_spans.resize(size_t(node) + 1);
    if (m_spans[node].done) return m_spans[node];
    Span span;
    span.done = true;
    span.first = uint32_t(m_span_keys.size());
    const report::StackResolver& r = resolver(reader);
    std::vector<uint32_t> ids;
    r.stack_ids(node, ids);
    ++m_stamp_no;
    for (uint32_t id : ids) {
        const report::Frame& f = r.frame_at(id);
        if (m_hide_internal && (report::frame_flags(f) & report::k_frame_irrelevant)) continue;
        uint32_t k = key_of(f);
        if (m_stamp[k] == m_stamp_no) continue;  // a recursion: once per stack
        m_stamp[k] = m_stamp_no;
        m_span_keys.push_back(k);
        ++span.count;
    }
    return m_spans[node] = span;
}

uint32_t LiveModel::slot_of(uint32_t thread, uint32_t key) {
    if (thread >= m_slot_ids.size()) m_slot_ids.resize(size_t(thread) + 1);
    std::vector<uint32_t>& ids = m_slot_ids[thread];
    if (key >= ids.size()) ids.resize(std::max<size_t>(size_t(key) + 1, ids.size() * 2), 0);
    uint32_t& id = ids[key];
    if (id == 0) {
        Slot s;
        s.key = key;
        s.thread = thread;
        m_slots.push_back(s);
        id = uint32_t(m_slots.size());
        if (thread >= m_thread_slots.size()) m_thread_slots.resize(size_t(thread) + 1);
        m_thread_slots[thread].push_back(id - 1);
    }
    return id - 1;
}

void LiveModel::resolve(const format::Reader& reader, uint32_t l) {
    Location& loc = m_locations[l];
    loc.slots_count = 0;
    if (loc.node == 0) return;  // no stack recorded: in the heap, in no row
    std::vector<uint32_t>& list = m_resolve_scratch;
    list.clear();
    if (loc.node >= reader.nodes().size()) {
        // A node lost with blocks the target dropped (or not arrived yet) is shown as such
        // rather than guessed, until it comes.
        if (m_unknown_key == ~0u)
            m_unknown_key = key_of({"<stack unknown: blocks dropped>", "", 0, false, {}});
        list.push_back(slot_of(loc.thread, m_unknown_key));
        m_unknown.push_back(l);
    } else {
        Span span = shown(reader, loc.node);
        for (uint32_t i = 0; i < span.count; ++i)
            list.push_back(slot_of(loc.thread, m_span_keys[span.first + i]));
    }
    if (list.size() <= k_inline_slots) {
        std::copy(list.begin(), list.end(), loc.slots);
    } else {
        loc.slots[0] = uint32_t(m_location_slots.size());
        m_location_slots.insert(m_location_slots.end(), list.begin(), list.end());
    }
    loc.slots_count = uint32_t(list.size());
    // Now counted: what it holds goes into its slots.
    uint64_t bytes = loc.live_bytes;
    uint32_t count = loc.live_count;
    loc.live_bytes = 0;
    loc.live_count = 0;
    change(l, bytes, count);
}

void LiveModel::unresolve(uint32_t l) {
    Location& loc = m_locations[l];
    uint64_t bytes = loc.live_bytes;
    uint32_t count = loc.live_count;
    change(l, uint64_t(0) - bytes, uint32_t(0) - count);
    loc.live_bytes = bytes;
    loc.live_count = count;
    loc.slots_count = k_unresolved;
    m_pending.push_back(l);
}

void LiveModel::switch_mode(bool hide_internal) {
    // Another hide rule gives other slot lists: count everything afresh (once per `u` key).
    m_hide_internal = hide_internal;
    for (Slot& s : m_slots) s.total_bytes = s.total_count = s.own_bytes = s.own_count = 0;
    m_location_slots.clear();
    m_spans.clear();
    m_span_keys.clear();
    m_unknown.clear();
    m_pending.clear();
    for (uint32_t l = 1; l < m_locations.size(); ++l) {
        m_locations[l].slots_count = k_unresolved;
        m_pending.push_back(l);
    }
}

std::vector<Row> LiveModel::rows(const format::Reader& reader, uint32_t thread_index,
                                 bool hide_internal) {
    if (hide_internal != m_hide_internal) switch_mode(hide_internal);
    if (!m_unknown.empty()) {
        std::vector<uint32_t> unknown;
        unknown.swap(m_unknown);
        for (uint32_t l : unknown) {
            if (m_locations[l].node < reader.nodes().size()) unresolve(l);
            else m_unknown.push_back(l);
        }
    }
    std::vector<uint32_t> pending;
    pending.swap(m_pending);
    for (uint32_t l : pending) resolve(reader, l);

    // One pass over the slots with something alive (of the thread, or of all merged by key).
    std::vector<Row> out;
    out.reserve(m_last_rows);
    m_row_of.resize(m_keys.size(), ~0u);
    auto add = [&](const Slot& s) {
        if (s.total_count == 0 && s.total_bytes == 0) return;
        uint32_t& r = m_row_of[s.key];
        if (r == ~0u) {
            r = uint32_t(out.size());
            const Key& key = m_keys[s.key];
            out.push_back({key.function, key.file, key.line, 0, 0, 0, 0});
        }
        Row& row = out[r];
        row.total_bytes += s.total_bytes;
        row.total_allocations += s.total_count;
        row.own_bytes += s.own_bytes;
        row.own_allocations += s.own_count;
    };
    if (thread_index == 0) {
        for (const Slot& s : m_slots) add(s);
        for (const Slot& s : m_slots) m_row_of[s.key] = ~0u;
    } else if (thread_index < m_thread_slots.size()) {
        for (uint32_t i : m_thread_slots[thread_index]) add(m_slots[i]);
        for (uint32_t i : m_thread_slots[thread_index]) m_row_of[m_slots[i].key] = ~0u;
    }
    m_last_rows = out.size();
    return out;
}

report::Snapshot LiveModel::snapshot(const format::Reader& reader) const {
    report::Snapshot s;
    s.kind = report::SnapshotKind::Leaks;
    for (uint32_t l = 1; l < m_locations.size(); ++l) {
        const Location& loc = m_locations[l];
        if (loc.live_count == 0 && loc.live_bytes == 0) continue;
        // Nodes not (yet) in the reader's tables cannot be drawn.
        if (loc.node >= reader.nodes().size()) continue;
        s.locations.push_back({loc.node, loc.thread, format::Allocator::Malloc, loc.live_count,
                               loc.live_bytes});
    }
    for (const format::ThreadInfo& t : reader.threads()) s.threads.push_back({t.tid, t.name});
    if (s.threads.empty()) s.threads.push_back({});
    for (const HeapPoint& p : m_history) s.memory.push_back({p.time_ms * 1000, p.rss_bytes, p.heap_bytes});
    s.total_allocations = m_allocations;
    s.total_bytes = m_total_bytes;
    s.peak_bytes = m_peak;
    s.peak_time_us = m_peak_time_us;
    s.duration_us = std::max(reader.last_time_us(), m_last_time_us);
    return s;
}

}  // namespace memray::live
