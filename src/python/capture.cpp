#include "python/capture.hpp"

#include <algorithm>

#include "report/capture.hpp"
#include "report/progress.hpp"

namespace memray::python {

namespace {

// The Tracker's marker stack is [marker, Tracker.__enter__, with-frame, callers...].
constexpr size_t k_marker_frames_kept = 3;

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
    find_tracker_root();
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

void Capture::find_tracker_root() {
    const auto& codes = m_reader->codes();
    const auto& nodes = m_reader->nodes();
    std::vector<bool> marker(codes.size());
    bool any = false;
    for (size_t i = 1; i < codes.size(); ++i) {
        // 3.11+ store the qualified name; either way the marker is a module-level function.
        if (codes[i].file == "<memray>" && codes[i].function == k_root_marker) {
            marker[i] = true;
            any = true;
        }
    }
    if (!any) return;
    for (uint32_t id = 1; id < nodes.size(); ++id) {
        const format::StackNode& n = nodes[id];
        if (n.kind != format::FrameKind::Python || n.code >= marker.size() || !marker[n.code])
            continue;
        std::vector<uint32_t> python;
        uint32_t node = id;
        for (size_t steps = 0; node != 0 && node < nodes.size() && steps < nodes.size(); ++steps) {
            if (nodes[node].kind == format::FrameKind::Python) python.push_back(node);
            node = nodes[node].parent;
        }
        if (python.size() < k_marker_frames_kept) continue;
        const report::StackResolver& r = resolver(false);
        for (size_t i = k_marker_frames_kept; i < python.size(); ++i)
            m_hidden.push_back(r.frame(python[i]));
        return;
    }
}

size_t Capture::hidden_python_frames(const std::vector<report::Frame>& python) const {
    size_t k = m_hidden.size();
    if (k == 0 || python.size() < k) return 0;
    size_t offset = python.size() - k;
    for (size_t i = 0; i < k; ++i) {
        const report::Frame& a = python[offset + i];
        const report::Frame& b = m_hidden[i];
        if (a.function != b.function || a.file != b.file || a.line != b.line) return 0;
    }
    return k;
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
        std::vector<report::Frame> frames = resolver(kind == StackKind::Hybrid).stack(node);
        std::vector<report::Frame> python;
        for (const report::Frame& f : frames)
            if (!f.native) python.push_back(f);
        size_t hidden = hidden_python_frames(python);
        if (kind == StackKind::Python) {
            python.resize(python.size() - hidden);
            out = std::move(python);
        } else {
            out = std::move(frames);
            if (hidden != 0) {
                // Cut right outside the outermost kept Python frame (everything if none is kept).
                size_t kept = python.size() - hidden;
                size_t seen = 0, cut = 0;
                for (size_t i = 0; i < out.size() && seen < kept; ++i) {
                    if (!out[i].native && ++seen == kept) cut = i + 1;
                }
                out.resize(cut);
            }
        }
    }
    if (max != 0 && out.size() > max) out.resize(max);
    return out;
}

}  // namespace memray::python
