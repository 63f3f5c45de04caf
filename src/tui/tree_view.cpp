#include "tui/tree_view.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "tui/terminal.hpp"

namespace memray::tui {

namespace {

// Below this width the detail pane goes under the tree instead of beside it.
constexpr int k_side_by_side_min = 70;
constexpr int k_detail_max_width = 100;  // as memray's detail column
constexpr int k_detail_min_height = 8;   // under the tree
constexpr int k_level_width = 4;         // columns per tree level ("│   ", "├── ")

Style amount_style(double share) {
    // The static tree's colours (report/tree_report.cpp): red for the biggest shares.
    if (share > 0.6) return {Color::Red};
    if (share > 0.2) return {Color::Yellow};
    return {Color::Green};
}

// Hard-wraps text at `width` columns, at a space when there is one.
std::vector<std::string> wrap(std::string_view text, int width) {
    std::vector<std::string> out;
    if (width <= 0) return out;
    while (text_width(text) > width) {
        std::string_view head = clip_text(text, width);
        size_t space = head.rfind(' ');
        size_t cut = space != std::string_view::npos && space > 0 ? space : head.size();
        out.emplace_back(text.substr(0, cut));
        text.remove_prefix(cut);
        while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    }
    out.emplace_back(text);
    return out;
}

class TreeView {
  public:
    TreeView(Terminal& t, TreeModel& m) : m_t(t), m_m(m) {}

    void run() {
        draw();
        for (;;) {
            Key k = m_t.read_key(-1);
            if (k.kind == KeyKind::Interrupt || k.kind == KeyKind::Escape || k.is('q')) return;
            handle(k);
            draw();
        }
    }

  private:
    struct Box {
        int y = 0, x = 0, h = 0, w = 0;
    };

    void handle(const Key& k) {
        long page = std::max(1, m_tree.h - 1);
        switch (k.kind) {
            case KeyKind::Up: m_m.move(-1); break;
            case KeyKind::Down: m_m.move(1); break;
            case KeyKind::PageUp: m_m.move(-page); break;
            case KeyKind::PageDown: m_m.move(page); break;
            case KeyKind::Home: m_m.move_to(0); break;
            case KeyKind::End: m_m.move_to(m_m.rows().size() - 1); break;
            case KeyKind::Left: m_m.left(); break;
            case KeyKind::Right: m_m.right(); break;
            case KeyKind::Enter: m_m.toggle(); break;
            case KeyKind::Char:
                if (k.is(' '))
                    m_m.toggle();
                else if (k.is('e'))
                    m_m.expand_linear_group();
                else if (k.is('i'))
                    m_m.toggle_import_system();
                else if (k.is('u'))
                    m_m.toggle_uninteresting();
                break;
            default: break;  // Resize: draw() lays out again
        }
    }

    std::string_view glyph(std::string_view utf8, std::string_view ascii) const {
        return m_t.utf8() ? utf8 : ascii;
    }

    void layout() {
        int w = m_t.width(), h = m_t.height();
        int body = std::max(0, h - 2);  // the title above, the footer below
        if (w >= k_side_by_side_min) {
            int dw = std::min(k_detail_max_width, w * 2 / 5);
            m_tree = {1, 0, body, w - dw - 1};
            m_detail = {1, w - dw + 1, body, dw - 1};
            m_split_vertical = true;
        } else {
            int dh = std::min(k_detail_min_height, body / 2);
            m_tree = {1, 0, body - dh - (dh > 0), w};
            m_detail = {1 + m_tree.h + 1, 1, dh, w - 1};
            m_split_vertical = false;
        }
    }

    void draw() {
        layout();
        m_t.clear();
        m_t.put(0, 0, m_m.stacks().title, {Color::Default, true});
        draw_tree();
        if (m_split_vertical) {
            for (int y = m_tree.y; y < m_tree.y + m_tree.h; ++y)
                m_t.put(y, m_tree.w, glyph("│", "|"), {Color::Default, false, true});
        } else if (m_detail.h > 0) {
            std::string rule;
            for (int i = 0; i < m_t.width(); ++i) rule += glyph("─", "-");
            m_t.put(m_detail.y - 1, 0, rule, {Color::Default, false, true});
        }
        draw_detail();
        draw_footer();
        m_t.set_cursor(-1, -1);
        m_t.present();
    }

    void draw_tree() {
        const std::vector<TreeModel::Row>& rows = m_m.rows();
        size_t cursor = m_m.cursor();
        size_t h = size_t(std::max(1, m_tree.h));
        if (cursor < m_top) m_top = cursor;
        if (cursor >= m_top + h) m_top = cursor + 1 - h;
        if (m_top + h > rows.size()) m_top = rows.size() > h ? rows.size() - h : 0;
        // Deep stacks would push the selected row's label off the pane: scroll left in steps of
        // one level so that its indentation takes at most half the pane.
        int indent = int(rows[cursor].depth) * k_level_width;
        int shift = 0;
        if (indent > m_tree.w / 2)
            shift = (indent - m_tree.w / 2 + k_level_width - 1) / k_level_width * k_level_width;
        for (size_t i = m_top; i < rows.size() && i < m_top + size_t(m_tree.h); ++i) {
            int y = m_tree.y + int(i - m_top);
            bool selected = i == cursor;
            draw_row(y, rows[i], selected, shift);
        }
    }

    // `shift` columns at the left of the row are scrolled out of the pane.
    void draw_row(int y, const TreeModel::Row& row, bool selected, int shift) {
        int x = m_tree.x, end = m_tree.x + m_tree.w;
        if (selected) m_t.fill(y, x, m_tree.w, {Color::Default, false, false, true});
        auto put = [&](std::string_view text, Style s) {
            if (shift > 0) {
                int w = text_width(text);
                if (w <= shift) {
                    shift -= w;
                    return;
                }
                text.remove_prefix(clip_text(text, shift).size());
                shift = 0;
            }
            s.reverse = selected;
            if (x < end) x += m_t.put(y, x, text, s, end - x);
        };
        Style dim{Color::Default, false, true};
        if (row.depth > 0) {
            std::string guides = row.guides;
            if (!m_t.utf8()) {
                std::string ascii;
                for (size_t i = 0; i < guides.size(); i += guides.compare(i, 3, "│") == 0 ? 3 : 1)
                    ascii += guides.compare(i, 3, "│") == 0 ? '|' : guides[i];
                guides = ascii;
            }
            put(guides, dim);
            put(row.last ? glyph("└── ", "`-- ") : glyph("├── ", "|-- "), dim);
        }
        std::string_view icon = glyph("• ", "* ");
        if (row.node == TreeModel::k_elided)
            icon = glyph("? ", "? ");
        else if (m_m.expandable(row.node))
            icon = m_m.expanded(row.node) ? glyph("▼ ", "- ") : glyph("▶ ", "+ ");
        put(icon, {});
        TreeModel::Label label = m_m.label(row);
        put(label.amount, amount_style(m_m.share(row)));
        if (!label.function.empty()) {
            put("  ", {});
            put(label.function, {Color::Magenta, true});
        }
        if (!label.location.empty()) {
            put("  ", {});
            put(label.location, {Color::Cyan});
        }
    }

    void draw_detail() {
        if (m_detail.h <= 0 || m_detail.w <= 0) return;
        int y = m_detail.y, bottom = m_detail.y + m_detail.h;
        // memray's detail pane: the source around the frame's line, then the numbers.
        std::vector<std::string> details;
        for (const std::string& d : m_m.details())
            for (std::string& l : wrap(d, m_detail.w)) details.push_back(std::move(l));
        int room_for_source = m_detail.h - int(details.size()) - 1;
        if (room_for_source > 0) {
            for (const TreeModel::SourceLine& s : m_m.source(size_t(room_for_source))) {
                std::string number = fmt::format("{:>5} ", s.line);
                Style st{Color::Default, s.selected, !s.selected, s.selected};
                if (s.selected) m_t.fill(y, m_detail.x, m_detail.w, st);
                int x = m_detail.x + m_t.put(y, m_detail.x, number, st, m_detail.w);
                m_t.put(y, x, s.text, st, m_detail.x + m_detail.w - x);
                ++y;
            }
            if (y > m_detail.y) ++y;  // a blank line before the numbers
        }
        for (const std::string& d : details) {
            if (y >= bottom) break;
            m_t.put(y++, m_detail.x, d, {}, m_detail.w);
        }
    }

    void draw_footer() {
        int y = m_t.height() - 1;
        if (y <= 0) return;
        const std::pair<std::string, std::string> keys[] = {
            {"q", "Quit"},
            {std::string(glyph("↑↓", "Up/Down")), "Move"},
            {std::string(glyph("←→", "Left/Right")), "Collapse/Expand"},
            {"e", "Expand linear group"},
            {"i", m_m.import_system_hidden() ? "Show import system" : "Hide import system"},
            {"u", m_m.uninteresting_shown() ? "Hide uninteresting" : "Show uninteresting"},
        };
        int x = 0;
        for (const auto& [key, what] : keys) {
            x += m_t.put(y, x, " " + key + " ", {Color::Default, true, false, true});
            x += m_t.put(y, x, " " + what + "  ");
        }
    }

    Terminal& m_t;
    TreeModel& m_m;
    Box m_tree, m_detail;
    bool m_split_vertical = true;
    size_t m_top = 0;  // first row shown in the tree pane
};

}  // namespace

void run_tree_view(TreeModel& model) {
    Terminal terminal;
    TreeView(terminal, model).run();
}

}  // namespace memray::tui
