#include "report/stack_resolver.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <string_view>

#include "report/output_path.hpp"
#include "report/python_lines.hpp"

namespace memray::report {

namespace {

constexpr const char* k_bootstrap_file = "<memray>";
constexpr std::string_view k_eval_loop = "_PyEval_EvalFrameDefault";
// The Tracker's marker stack is [marker, Tracker.__enter__, with-frame, callers...].
constexpr size_t k_marker_frames_kept = 3;

// GCC may split the loop into "_PyEval_EvalFrameDefault.cold" and similar parts.
bool is_eval_loop(const std::string& function) {
    if (function.compare(0, k_eval_loop.size(), k_eval_loop) != 0) return false;
    return function.size() == k_eval_loop.size() || function[k_eval_loop.size()] == '.';
}

}  // namespace

size_t FrameHash::operator()(const Frame& f) const {
    size_t h = std::hash<std::string>()(f.function);
    h ^= std::hash<std::string>()(f.file) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h ^ (size_t(f.line) * 0x100000001b3ull) ^ size_t(f.native);
}

StackResolver::StackResolver(const format::Reader& reader, Symbolizer* symbolizer)
    : m_reader(reader), m_symbolizer(symbolizer) {
    const auto& objects = reader.all_objects();
    for (uint32_t i = 0; i < objects.size(); ++i) {
        for (const auto& [vaddr, memsz] : objects[i].segments) {
            uint64_t start = objects[i].load_bias + vaddr;
            m_ranges.push_back({start, start + memsz, i});
        }
    }
    // Equal starts: the later object (a library loaded at a reused address) first.
    std::stable_sort(m_ranges.begin(), m_ranges.end(), [](const Range& a, const Range& b) {
        return a.start < b.start || (a.start == b.start && a.object > b.object);
    });
    for (const auto& n : reader.nodes()) {
        if (n.kind == format::FrameKind::Native) {
            m_has_native = true;
            break;
        }
    }
    m_node_info.resize(reader.nodes().size());
    find_tracker_root();
}

void StackResolver::find_tracker_root() {
    const auto& codes = m_reader.codes();
    const auto& nodes = m_reader.nodes();
    std::vector<bool> marker(codes.size());
    bool any = false;
    for (size_t i = 1; i < codes.size(); ++i) {
        // 3.11+ store the qualified name; either way the marker is a module-level function.
        if (codes[i].file == k_bootstrap_file && codes[i].function == k_root_marker) {
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
        // The first marker found stands for the Tracker (a capture has one).
        for (size_t i = k_marker_frames_kept; i < python.size(); ++i)
            m_hidden.push_back(m_node_frames[node_frames(python[i]).first]);
        return;
    }
}

const StackResolver::Range* StackResolver::range_of(uint64_t ip) const {
    auto it = std::upper_bound(m_ranges.begin(), m_ranges.end(), ip,
                               [](uint64_t a, const Range& r) { return a < r.start; });
    // Ranges only overlap when an address was reused after dlclose: look back a little.
    for (int back = 0; it != m_ranges.begin() && back < 8; ++back) {
        --it;
        if (ip < it->end) return &*it;
    }
    return nullptr;
}

uint32_t StackResolver::intern(Frame f) const {
    auto [it, fresh] = m_frame_ids.try_emplace(f, uint32_t(m_frames.size()));
    if (fresh) m_frames.push_back(std::move(f));
    return it->second;
}

const StackResolver::NodeFrames& StackResolver::node_frames(uint32_t node) const {
    NodeFrames& info = m_node_info[node];
    if (info.done) return info;
    info.done = true;
    info.first = uint32_t(m_node_frames.size());
    const format::StackNode& n = m_reader.nodes()[node];
    if (n.kind == format::FrameKind::Python) {
        const auto& codes = m_reader.codes();
        uint32_t id;
        if (n.code == 0 || n.code >= codes.size()) {
            id = intern({"???", "???", 0, false, {}});
        } else {
            const format::CodeInfo& c = codes[n.code];
            uint32_t line = python_line(c.line_format, c.line_table, c.first_line, n.offset);
            uint32_t& slot = m_code_lines[(uint64_t(n.code) << 32) | line];  // id + 1
            if (slot == 0) slot = intern({c.function, c.file, line, false, {}}) + 1;
            id = slot - 1;
        }
        m_node_frames.push_back(id);
        info.count = 1;
        return info;
    }
    const Range* r = range_of(n.ip);
    if (r == nullptr) {
        m_node_frames.push_back(intern({fmt::format("0x{:x}", n.ip), "???", 0, true, {}}));
        info.count = 1;
        return info;
    }
    const format::ObjectInfo& o = m_reader.all_objects()[r->object];
    const std::string& path = o.path.empty() ? m_reader.header().executable : o.path;
    std::string fallback = fmt::format("{}+0x{:x}", basename_of(path), n.ip - o.load_bias);
    if (m_symbolizer) {
        format::ObjectInfo named = o;
        named.path = path;
        const std::vector<SourceFrame>& sym = m_symbolizer->symbolize(named, r->object, n.ip);
        // Bounded: a pathological inline chain must not overflow the count.
        size_t count = std::min<size_t>(sym.size(), 1000);
        for (size_t i = 0; i < count; ++i) {
            const SourceFrame& s = sym[i];
            m_node_frames.push_back(intern({s.function.empty() ? fallback : s.function,
                                            s.file.empty() ? path : s.file, s.line, true, path}));
        }
        info.count = uint16_t(count);
        if (count > 0) {
            info.eval = is_eval_loop(sym[count - 1].function);
            return info;
        }
    }
    m_node_frames.push_back(intern({std::move(fallback), path, 0, true, path}));
    info.count = 1;
    return info;
}

const std::string* StackResolver::object_path(uint64_t ip) const {
    const Range* r = range_of(ip);
    if (r == nullptr) return nullptr;
    const format::ObjectInfo& o = m_reader.all_objects()[r->object];
    return o.path.empty() ? &m_reader.header().executable : &o.path;
}

bool StackResolver::is_bootstrap(uint32_t node) const {
    const auto& nodes = m_reader.nodes();
    if (node >= nodes.size() || nodes[node].kind != format::FrameKind::Python) return false;
    const auto& codes = m_reader.codes();
    uint32_t code = nodes[node].code;
    return code < codes.size() && codes[code].file == k_bootstrap_file;
}

Frame StackResolver::frame(uint32_t node) const {
    if (node == 0 || node >= m_reader.nodes().size()) return {"???", "???", 0, false, {}};
    const NodeFrames& info = node_frames(node);
    return m_frames[m_node_frames[info.first]];
}

void StackResolver::stack_ids(uint32_t node, std::vector<uint32_t>& out) const {
    all_stack_ids(node, out);
    if (!m_hidden.empty()) drop_tracker_callers(out);
}

void StackResolver::drop_tracker_callers(std::vector<uint32_t>& ids) const {
    // Python frames are interned from (function, file, line) alone: equal ids, equal frames.
    size_t python = 0;
    for (uint32_t id : ids) python += !m_frames[id].native;
    size_t k = m_hidden.size();
    if (python < k) return;
    size_t kept = python - k, seen = 0, cut = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (m_frames[ids[i]].native) continue;
        if (seen >= kept && ids[i] != m_hidden[seen - kept]) return;  // not the callers
        if (++seen == kept) cut = i + 1;
    }
    // Cut right outside the outermost kept Python frame (everything when none is kept).
    ids.resize(cut);
}

void StackResolver::all_stack_ids(uint32_t node, std::vector<uint32_t>& out) const {
    out.clear();
    const auto& nodes = m_reader.nodes();
    m_python.clear();
    m_native.clear();
    // Bounded walk: a corrupt (cyclic) parent chain must not loop forever.
    // `memray run`'s bootstrap frames and everything outside them (the `python -c` stub that
    // runs the bootstrap) are ours, not the user's: drop them.
    bool outside_user_code = false;
    for (size_t steps = 0; node != 0 && node < nodes.size() && steps < nodes.size(); ++steps) {
        if (nodes[node].kind == format::FrameKind::Python) {
            if (is_bootstrap(node)) outside_user_code = true;
            if (!outside_user_code) m_python.push_back(node);
        } else {
            m_native.push_back(node);
        }
        node = nodes[node].parent;
    }
    auto append = [&](uint32_t n) {
        const NodeFrames& info = node_frames(n);
        out.insert(out.end(), m_node_frames.begin() + info.first,
                   m_node_frames.begin() + info.first + info.count);
    };
    // Allocations of the bootstrap itself (before the user's code runs) have no user frames.
    if (m_python.empty() && outside_user_code) return;
    if (m_native.empty() || m_python.empty()) {
        for (uint32_t n : m_python) append(n);
        for (uint32_t n : m_native) append(n);
        return;
    }
    // Captures without entry marks (3.8-3.10 before they were written) ran one frame per call.
    bool marked = false;
    for (uint32_t n : m_python) marked = marked || nodes[n].entry;
    size_t next = 0;  // next Python frame to place
    for (uint32_t n : m_native) {
        if (node_frames(n).eval) {
            if (next < m_python.size()) {
                while (next < m_python.size()) {
                    uint32_t p = m_python[next++];
                    append(p);
                    if (!marked || nodes[p].entry) break;
                }
                // Under `memray run` the stack starts at the user's outermost frame.
                if (outside_user_code && next == m_python.size()) return;
                continue;
            }
            if (outside_user_code) return;
        }
        append(n);
    }
    for (; next < m_python.size(); ++next) append(m_python[next]);
}

std::vector<Frame> StackResolver::stack(uint32_t node) const {
    std::vector<uint32_t> ids;
    stack_ids(node, ids);
    std::vector<Frame> out;
    out.reserve(ids.size());
    for (uint32_t id : ids) out.push_back(m_frames[id]);
    return out;
}

bool StackResolver::top_frame(uint32_t node, Frame& out) const {
    const auto& nodes = m_reader.nodes();
    if (!m_has_native && m_hidden.empty()) {
        // Python only: the innermost frame that is not the bootstrap's, without building the
        // whole stack (stats and table ask for many).
        for (size_t steps = 0; node != 0 && node < nodes.size() && steps < nodes.size(); ++steps) {
            if (is_bootstrap(node)) return false;
            if (nodes[node].kind == format::FrameKind::Python) {
                out = frame(node);
                return true;
            }
            node = nodes[node].parent;
        }
        return false;
    }
    std::vector<uint32_t> ids;
    stack_ids(node, ids);
    if (ids.empty()) return false;
    out = m_frames[ids[0]];
    return true;
}

}  // namespace memray::report
