// The interactive `memray tree` without a terminal: which rows are shown, which one is selected,
// what the keys do and what the detail pane says. tree_view.cpp only draws it.
//
// As memray's tree: the root is selected first, the root and the chain of biggest children below
// it are expanded; children are sorted biggest first; when locations were left out by
// --biggest-allocs, a last row under the root sums them up. Uninteresting frames (CPython's
// internals, runpy, the import system: report/frame_rule.hpp) are hidden, their memory counted
// by the nearest visible caller, until `u` shows them. `i` hides import-system frames together
// with their callees. Toggling a filter rebuilds the tree and starts over as on opening.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "report/tree_report.hpp"

namespace memray::tui {

class TreeModel {
  public:
    static constexpr size_t k_elided = size_t(-1);  // Row::node of the "below the threshold" row

    struct Row {
        size_t node = 0;     // index into nodes(), or k_elided
        size_t depth = 0;    // 0 = the root
        std::string guides;  // tree lines left of the connector ("│   " / "    " per level)
        bool last = true;    // the last child of its parent
    };

    // A line of source around the selected frame, for the detail pane.
    struct SourceLine {
        uint32_t line = 0;
        std::string text;
        bool selected = false;
    };

    // `biggest` is --biggest-allocs, named in the elided row's explanation.
    TreeModel(report::TreeStacks stacks, size_t biggest);

    const std::vector<Row>& rows() const { return m_rows; }
    size_t cursor() const { return m_cursor; }
    const std::vector<report::TreeNode>& nodes() const { return m_nodes; }
    bool expanded(size_t node) const { return m_expanded[node]; }
    bool expandable(size_t node) const { return !m_nodes[node].children.empty(); }
    bool import_system_hidden() const { return m_hide_import; }
    bool uninteresting_shown() const { return m_show_uninteresting; }
    const report::TreeStacks& stacks() const { return m_stacks; }

    // Keys. Moves are clamped to the rows.
    void move(long delta);        // up/down, PgUp/PgDn
    void move_to(size_t row);     // Home/End
    void toggle();                // Enter/space: expand or collapse the selected node
    void left();                  // collapse, or (collapsed or leaf) select the parent
    void right();                 // expand, or (expanded) select the first child
    void expand_linear_group();   // e: expand down the chain of single children
    void toggle_import_system();  // i
    void toggle_uninteresting();  // u

    // A row's text in parts the view colours differently; amount says it all for the root and
    // the elided row.
    struct Label {
        std::string amount;  // "1.000kB (50.00 %) 2"
        std::string function;
        std::string location;      // "file:line", "file", or ""
        std::string text() const;  // as the static tree prints it, without the icon
    };
    Label label(const Row& row) const;
    // Share of the total of every location, 0..1, for the colour.
    double share(const Row& row) const;
    // The detail pane's lines for the selected row (function, location, allocations, size,
    // thread; an explanation for the elided row).
    std::vector<std::string> details() const;
    // Up to `height` lines of the selected frame's source file around its line (none for the
    // root, native frames and files that cannot be read).
    std::vector<SourceLine> source(size_t height) const;

  private:
    void rebuild();
    void refresh_rows();
    void add_rows(size_t node, size_t depth, const std::string& guides, bool last);
    uint64_t elided_bytes() const { return m_stacks.total_bytes - m_shown_bytes; }
    uint64_t elided_count() const { return m_stacks.total_count - m_shown_count; }
    std::string thread_text(const report::TreeNode& n) const;

    report::TreeStacks m_stacks;
    size_t m_biggest;
    uint64_t m_shown_bytes = 0, m_shown_count = 0;
    bool m_hide_import = false;
    bool m_show_uninteresting = false;
    std::vector<report::TreeNode> m_nodes;
    std::vector<bool> m_expanded;
    std::vector<Row> m_rows;
    size_t m_cursor = 0;
};

}  // namespace memray::tui
