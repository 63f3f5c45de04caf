#include "tui/tree_model.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <fstream>
#include <utility>

#include "report/frame_rule.hpp"
#include "report/size_format.hpp"

namespace memray::tui {

TreeModel::TreeModel(report::TreeStacks stacks, size_t biggest)
    : m_stacks(std::move(stacks)), m_biggest(biggest) {
    for (const report::TreeStack& t : m_stacks.stacks) {
        m_shown_bytes += t.bytes;
        m_shown_count += t.count;
    }
    rebuild();
}

void TreeModel::rebuild() {
    // The import system is uninteresting too: `u` shows it, `i` removes it with its callees.
    uint32_t hide = m_show_uninteresting ? 0 : report::k_frame_irrelevant | report::k_frame_import;
    uint32_t cut = m_hide_import ? report::k_frame_import : 0;
    m_nodes = report::build_tree(m_stacks, hide, cut);
    m_expanded.assign(m_nodes.size(), false);
    // As memray opens its tree: the root and the chain of biggest children below it.
    for (size_t n = 0;; n = m_nodes[n].children.front()) {
        m_expanded[n] = true;
        if (m_nodes[n].children.empty()) break;
    }
    m_cursor = 0;
    refresh_rows();
}

void TreeModel::refresh_rows() {
    m_rows.clear();
    m_rows.push_back({0, 0, "", true});
    if (!m_expanded[0]) return;
    bool elided = m_stacks.locations > m_stacks.stacks.size();
    const std::vector<size_t>& kids = m_nodes[0].children;
    for (size_t i = 0; i < kids.size(); ++i)
        add_rows(kids[i], 1, "", i + 1 == kids.size() && !elided);
    if (elided) m_rows.push_back({k_elided, 1, "", true});
}

void TreeModel::add_rows(size_t node, size_t depth, const std::string& guides, bool last) {
    m_rows.push_back({node, depth, guides, last});
    if (!m_expanded[node]) return;
    std::string below = guides + (last ? "    " : "│   ");
    const std::vector<size_t>& kids = m_nodes[node].children;
    for (size_t i = 0; i < kids.size(); ++i)
        add_rows(kids[i], depth + 1, below, i + 1 == kids.size());
}

void TreeModel::move(long delta) {
    long to = long(m_cursor) + delta;
    m_cursor = size_t(std::clamp(to, 0L, long(m_rows.size()) - 1));
}

void TreeModel::move_to(size_t row) { m_cursor = std::min(row, m_rows.size() - 1); }

void TreeModel::toggle() {
    size_t n = m_rows[m_cursor].node;
    if (n == k_elided || !expandable(n)) return;
    m_expanded[n] = !m_expanded[n];
    refresh_rows();  // only rows below the cursor change
}

void TreeModel::left() {
    size_t n = m_rows[m_cursor].node;
    if (n != k_elided && expandable(n) && m_expanded[n]) {
        m_expanded[n] = false;
        refresh_rows();
        return;
    }
    size_t parent = n == k_elided ? 0 : m_nodes[n].parent;
    while (m_cursor > 0 && m_rows[m_cursor].node != parent) --m_cursor;
}

void TreeModel::right() {
    size_t n = m_rows[m_cursor].node;
    if (n == k_elided || !expandable(n)) return;
    if (!m_expanded[n]) {
        m_expanded[n] = true;
        refresh_rows();
    } else {
        ++m_cursor;  // the first child's row follows its expanded parent
    }
}

void TreeModel::expand_linear_group() {
    size_t n = m_rows[m_cursor].node;
    if (n == k_elided) return;
    for (;;) {
        m_expanded[n] = true;
        if (m_nodes[n].children.size() != 1) break;
        n = m_nodes[n].children.front();
    }
    refresh_rows();
}

void TreeModel::toggle_import_system() {
    m_hide_import = !m_hide_import;
    rebuild();
}

void TreeModel::toggle_uninteresting() {
    m_show_uninteresting = !m_show_uninteresting;
    rebuild();
}

double TreeModel::share(const Row& row) const {
    if (m_stacks.total_bytes == 0) return 0.0;
    uint64_t bytes = row.node == k_elided ? elided_bytes() : m_nodes[row.node].bytes;
    return double(bytes) / double(m_stacks.total_bytes);
}

std::string TreeModel::Label::text() const {
    std::string out = amount;
    if (!function.empty()) out += "  " + function;
    if (!location.empty()) out += "  " + location;
    return out;
}

TreeModel::Label TreeModel::label(const Row& row) const {
    // The amounts as the static tree prints them (report/tree_report.hpp).
    double pct = share(row) * 100;
    if (row.node == k_elided)
        return {fmt::format("{} ({:.2f} %) {} allocations from {} locations below the threshold",
                            report::size_fmt(elided_bytes()), pct, elided_count(),
                            m_stacks.locations - m_stacks.stacks.size()),
                "", ""};
    if (row.node == 0)
        return {fmt::format("{} ({:.2f} %) {} allocations", report::size_fmt(m_stacks.total_bytes),
                            100.0, m_stacks.total_count),
                "", ""};
    const report::TreeNode& n = m_nodes[row.node];
    Label out{fmt::format("{} ({:.2f} %) {}", report::size_fmt(n.bytes), pct, n.count),
              n.frame.function, n.frame.file};
    if (n.frame.line > 0) out.location += fmt::format(":{}", n.frame.line);
    return out;
}

std::string TreeModel::thread_text(const report::TreeNode& n) const {
    if (n.many_threads) return "several threads";
    if (n.thread >= m_stacks.threads.size()) return "unknown";
    const report::SnapshotThread& t = m_stacks.threads[n.thread];
    if (t.name.empty()) return fmt::format("tid {}", t.tid);
    return fmt::format("{} (tid {})", t.name, t.tid);
}

std::vector<std::string> TreeModel::details() const {
    const Row& row = m_rows[m_cursor];
    std::vector<std::string> out;
    if (row.node == k_elided) {
        out.push_back(fmt::format("Allocations: {}", elided_count()));
        out.push_back(fmt::format("Size: {}", report::size_fmt(elided_bytes())));
        out.push_back("");
        out.push_back(fmt::format(
            "Only the {} biggest allocation locations are in the tree; the {} smaller ones are "
            "summed up here. Run again with a larger --biggest-allocs to see them.",
            m_biggest, m_stacks.locations - m_stacks.stacks.size()));
        return out;
    }
    const report::TreeNode& n = m_nodes[row.node];
    if (row.node == 0) {
        // The root counts every location, as its row does.
        out.push_back(fmt::format("Allocations: {}", m_stacks.total_count));
        out.push_back(fmt::format("Size: {}", report::size_fmt(m_stacks.total_bytes)));
        return out;
    }
    out.push_back("Function: " + n.frame.function);
    std::string where = n.frame.file.empty() ? n.frame.object : n.frame.file;
    if (n.frame.line > 0) where += fmt::format(":{}", n.frame.line);
    out.push_back("Location: " + where);
    out.push_back(fmt::format("Allocations: {}", n.count));
    out.push_back(fmt::format("Size: {} ({:.2f} %)", report::size_fmt(n.bytes), share(row) * 100));
    out.push_back("Thread: " + thread_text(n));
    return out;
}

std::vector<TreeModel::SourceLine> TreeModel::source(size_t height) const {
    std::vector<SourceLine> out;
    size_t n = m_rows[m_cursor].node;
    if (n == k_elided || n == 0 || height == 0) return out;
    const report::Frame& f = m_nodes[n].frame;
    if (f.line == 0 || f.file.empty()) return out;
    std::ifstream in(f.file);
    if (!in) return out;
    // The frame's line in the middle, as far as the file allows.
    uint32_t first = f.line > height / 2 ? f.line - uint32_t(height / 2) : 1;
    std::string text;
    for (uint32_t line = 1; std::getline(in, text) && out.size() < height; ++line) {
        if (line < first) continue;
        while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.pop_back();
        out.push_back({line, text, line == f.line});
    }
    // A file that changed since the capture may no longer reach the line: show nothing.
    if (out.empty() || out.back().line < f.line) out.clear();
    return out;
}

}  // namespace memray::tui
