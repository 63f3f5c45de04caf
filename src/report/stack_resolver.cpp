#include "report/stack_resolver.hpp"

#include <fmt/core.h>

#include <algorithm>

#include "report/python_lines.hpp"

namespace memray::report {

namespace {

constexpr const char* k_bootstrap_file = "<memray>";

std::string basename_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

StackResolver::StackResolver(const format::Reader& reader) : m_reader(reader) {
    const auto& objects = reader.objects();
    for (uint32_t i = 0; i < objects.size(); ++i) {
        for (const auto& [vaddr, memsz] : objects[i].segments) {
            uint64_t start = objects[i].load_bias + vaddr;
            m_ranges.push_back({start, start + memsz, i});
        }
    }
    std::sort(m_ranges.begin(), m_ranges.end(),
              [](const Range& a, const Range& b) { return a.start < b.start; });
}

Frame StackResolver::frame(uint32_t node) const {
    const auto& nodes = m_reader.nodes();
    if (node == 0 || node >= nodes.size()) return {"???", "???", 0, false};
    const format::StackNode& n = nodes[node];
    if (n.kind == format::FrameKind::Python) {
        const auto& codes = m_reader.codes();
        if (n.code == 0 || n.code >= codes.size()) return {"???", "???", 0, false};
        const format::CodeInfo& c = codes[n.code];
        uint32_t line = python_line(c.line_format, c.line_table, c.first_line, n.offset);
        return {c.function, c.file, line, false};
    }
    // Native: the object whose segment holds the address (the last one starting at or below it).
    auto it = std::upper_bound(m_ranges.begin(), m_ranges.end(), n.ip,
                               [](uint64_t ip, const Range& r) { return ip < r.start; });
    if (it != m_ranges.begin()) {
        --it;
        if (n.ip < it->end) {
            const format::ObjectInfo& o = m_reader.objects()[it->object];
            std::string path = o.path.empty() ? m_reader.header().executable : o.path;
            return {fmt::format("{}+0x{:x}", basename_of(path), n.ip - o.load_bias), path, 0,
                    true};
        }
    }
    return {fmt::format("0x{:x}", n.ip), "???", 0, true};
}

const std::string* StackResolver::object_path(uint64_t ip) const {
    auto it = std::upper_bound(m_ranges.begin(), m_ranges.end(), ip,
                               [](uint64_t a, const Range& r) { return a < r.start; });
    if (it == m_ranges.begin()) return nullptr;
    --it;
    if (ip >= it->end) return nullptr;
    const format::ObjectInfo& o = m_reader.objects()[it->object];
    return o.path.empty() ? &m_reader.header().executable : &o.path;
}

bool StackResolver::is_bootstrap(uint32_t node) const {
    const auto& nodes = m_reader.nodes();
    if (node >= nodes.size() || nodes[node].kind != format::FrameKind::Python) return false;
    const auto& codes = m_reader.codes();
    uint32_t code = nodes[node].code;
    return code < codes.size() && codes[code].file == k_bootstrap_file;
}

std::vector<Frame> StackResolver::stack(uint32_t node) const {
    const auto& nodes = m_reader.nodes();
    std::vector<uint32_t> python, native;
    // Bounded walk: a corrupt (cyclic) parent chain must not loop forever.
    // `memray run`'s bootstrap frames and everything outside them (the `python -c` stub that
    // runs the bootstrap) are ours, not the user's: drop them.
    bool outside_user_code = false;
    for (size_t steps = 0; node != 0 && node < nodes.size() && steps < nodes.size(); ++steps) {
        if (nodes[node].kind == format::FrameKind::Python) {
            if (is_bootstrap(node)) outside_user_code = true;
            if (!outside_user_code) python.push_back(node);
        } else {
            native.push_back(node);
        }
        node = nodes[node].parent;
    }
    const auto& chosen = python.empty() ? native : python;
    std::vector<Frame> out;
    out.reserve(chosen.size());
    for (uint32_t n : chosen) out.push_back(frame(n));
    return out;
}

bool StackResolver::top_frame(uint32_t node, Frame& out) const {
    const auto& nodes = m_reader.nodes();
    uint32_t first_native = 0;
    for (size_t steps = 0; node != 0 && node < nodes.size() && steps < nodes.size(); ++steps) {
        if (nodes[node].kind == format::FrameKind::Python) {
            if (!is_bootstrap(node)) {
                out = frame(node);
                return true;
            }
        } else if (first_native == 0) {
            first_native = node;
        }
        node = nodes[node].parent;
    }
    if (first_native == 0) return false;
    out = frame(first_native);
    return true;
}

}  // namespace memray::report
