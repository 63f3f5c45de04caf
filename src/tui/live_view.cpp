// The live view (memray's live TUI) over a live::Source, drawn with the terminal layer.
//
// One loop: wait briefly for a key, poll the source briefly, fetch the table at most about once
// a second (or at once when the user asked for other rows), redraw at most ten times a second.
// Neither the source nor a slow terminal can hold the keys for more than a tick.
#include "tui/live_view.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "report/size_format.hpp"
#include "tui/terminal.hpp"

namespace memray::tui {

namespace {

using Clock = std::chrono::steady_clock;
using live::Row;

constexpr int k_key_wait_ms = 50;      // how long a tick waits for a key
constexpr int k_poll_wait_ms = 25;     // and then for the source
constexpr int k_keys_per_draw = 64;
constexpr auto k_table_period = std::chrono::seconds(1);       // memray updates once a second
constexpr auto k_redraw_period = std::chrono::milliseconds(100);
constexpr auto k_message_time = std::chrono::seconds(10);
constexpr int k_narrow_below = 81;     // memray's narrow layout: under 81 columns
constexpr int k_graph_height = 4;

enum class SortKey { Total, Own, Allocations };

const char* sort_name(SortKey k) {
    switch (k) {
    case SortKey::Total: return "total";
    case SortKey::Own: return "own";
    case SortKey::Allocations: return "allocations";
    }
    return "";
}

uint64_t sort_value(const Row& r, SortKey k) {
    switch (k) {
    case SortKey::Total: return r.total_bytes;
    case SortKey::Own: return r.own_bytes;
    case SortKey::Allocations: return r.total_allocations;
    }
    return 0;
}

// memray colours a cell by its share of the heap (of all allocations for the count column),
// green through orange to red. Without colours, the big shares are bold.
Style share_style(double percent, bool colors) {
    Style s;
    if (!colors) {
        s.bold = percent >= 30.0;
        return s;
    }
    s.fg = percent >= 60.0 ? Color::Red : percent >= 30.0 ? Color::Yellow : Color::Green;
    return s;
}

std::string percent_text(uint64_t part, uint64_t whole) {
    double p = whole ? 100.0 * double(part) / double(whole) : 0.0;
    return fmt::format("{:.2f}%", p);
}

double percent_of(uint64_t part, uint64_t whole) {
    return whole ? 100.0 * double(part) / double(whole) : 0.0;
}

std::string duration_text(uint64_t ms) {
    uint64_t s = ms / 1000;
    if (s < 60) return fmt::format("{:.1f} s", double(ms) / 1000.0);
    if (s < 3600) return fmt::format("{}m {:02}s", s / 60, s % 60);
    return fmt::format("{}h {:02}m {:02}s", s / 3600, (s / 60) % 60, s % 60);
}

std::string location_of(const Row& r) {
    if (r.line) return fmt::format("{}:{}", r.file, r.line);
    return r.file;
}

// A path too long for its column loses its start, not the file name and line at its end.
std::string clip_front(const std::string& text, int width, bool utf8) {
    int w = text_width(text);
    if (w <= width || width <= 0) return text;
    const char* mark = utf8 ? "\u2026" : "<";
    int keep = width - 1;
    // Skip w - keep code points from the front.
    size_t pos = 0;
    for (int skipped = 0; pos < text.size() && skipped < w - keep;) {
        ++pos;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
        ++skipped;
    }
    return mark + text.substr(pos);
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

// Case-insensitive substring test; needle is lower case already.
bool contains_folded(const std::string& hay, const std::string& needle) {
    if (needle.empty()) return true;
    auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                          [](char a, char b) { return ascii_lower(a) == b; });
    return it != hay.end();
}

std::string pad_left(const std::string& s, int width) {
    int w = text_width(s);
    return w >= width ? s : std::string(size_t(width - w), ' ') + s;
}

class LiveView {
  public:
    LiveView(Terminal& term, live::Source& source, const LiveViewOptions& options)
        : m_term(term), m_source(source), m_options(options) {}

    int run();

  private:
    // What the table needs from the source changed (thread, merge, internal frames).
    void fetch_rows();
    // Recomputes which rows show in which order (filter, sort); done once before a draw however
    // many keys asked for it, so typing a filter over 100,000 rows does not queue up sorts.
    void arrange_rows();
    void rearrange() { m_arrange_pending = true; }
    // draw_table clamps the scroll position to the rows; until then it may be past them.
    void scroll_down(size_t n) { m_scroll = m_scroll > SIZE_MAX - n ? SIZE_MAX : m_scroll + n; }
    bool handle_key(const Key& key);  // false: quit
    void handle_filter_key(const Key& key);
    void write_flamegraph();
    void set_message(std::string text, bool error = false);

    uint32_t current_thread_index() const;
    void draw();
    int draw_header(int width);
    void draw_graph(int y, int x, int width, int height);
    int draw_status(int y);
    void draw_table(int top, int bottom);
    void draw_footer(int y);

    Terminal& m_term;
    live::Source& m_source;
    const LiveViewOptions& m_options;

    std::vector<Row> m_rows;         // as the source gave them, last fetch
    std::vector<uint32_t> m_shown;   // indices into m_rows: filtered and sorted
    bool m_arrange_pending = false;
    uint64_t m_rows_heap = 0;        // heap at the last fetch: the percentages' base
    uint64_t m_rows_allocations = 0;
    SortKey m_sort = SortKey::Total;
    bool m_merged = false;           // memray starts on one thread; m merges them
    size_t m_thread_pos = 0;         // in header().threads, when not merged
    bool m_paused = false;
    bool m_hide_internal = true;     // only matters with native frames
    size_t m_scroll = 0;
    int m_page_rows = 1;

    bool m_editing_filter = false;
    std::string m_filter;            // as typed
    std::string m_filter_folded;     // lower case, what rows are matched against
    std::string m_filter_before_edit;

    std::string m_message;
    bool m_message_error = false;
    Clock::time_point m_message_until{};
    unsigned m_flamegraphs = 0;
    bool m_final_fetched = false;    // after the process exited, the final table was fetched
};

uint32_t LiveView::current_thread_index() const {
    const auto& threads = m_source.header().threads;
    if (m_merged || threads.empty()) return 0;
    return threads[std::min(m_thread_pos, threads.size() - 1)].index;
}

void LiveView::fetch_rows() {
    const live::Header& h = m_source.header();
    m_rows = m_source.rows(current_thread_index(), m_hide_internal && h.native);
    m_rows_heap = h.heap_bytes;
    // The heap the rows describe is at least their biggest total (a thread's rows vs. the
    // process-wide heap).
    m_rows_allocations = 0;
    for (const Row& r : m_rows) {
        m_rows_heap = std::max(m_rows_heap, r.total_bytes);
        m_rows_allocations = std::max(m_rows_allocations, r.total_allocations);
    }
    uint64_t own_allocations = 0;
    for (const Row& r : m_rows) own_allocations += r.own_allocations;
    m_rows_allocations = std::max(m_rows_allocations, own_allocations);
    rearrange();
}

void LiveView::arrange_rows() {
    m_arrange_pending = false;
    // Sorted as (value, index) pairs in one array: with 100,000 rows, comparing through the
    // indices into m_rows (cache misses on every comparison) took most of a redraw.
    struct Key {
        uint64_t value;
        uint64_t total;
        uint32_t index;
    };
    std::vector<Key> keys;
    keys.reserve(m_rows.size());
    for (uint32_t i = 0; i < m_rows.size(); ++i) {
        const Row& r = m_rows[i];
        if (!m_filter_folded.empty() && !contains_folded(r.function, m_filter_folded) &&
            !contains_folded(r.file, m_filter_folded))
            continue;
        keys.push_back({sort_value(r, m_sort), r.total_bytes, i});
    }
    // Ties broken by location, so rows with equal values do not swap places between updates.
    std::sort(keys.begin(), keys.end(), [&](const Key& a, const Key& b) {
        if (a.value != b.value) return a.value > b.value;
        if (a.total != b.total) return a.total > b.total;
        const Row& x = m_rows[a.index];
        const Row& y = m_rows[b.index];
        if (x.function != y.function) return x.function < y.function;
        if (x.file != y.file) return x.file < y.file;
        return x.line < y.line;
    });
    m_shown.resize(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) m_shown[i] = keys[i].index;
}

void LiveView::set_message(std::string text, bool error) {
    m_message = std::move(text);
    m_message_error = error;
    m_message_until = Clock::now() + k_message_time;
}

void LiveView::write_flamegraph() {
    const live::Header& h = m_source.header();
    std::string dir = m_options.flamegraph_dir.empty() ? "." : m_options.flamegraph_dir;
    if (dir.back() != '/') dir += '/';
    std::string path = fmt::format("{}memray-live-flamegraph-{}-{}.html", dir, h.pid, ++m_flamegraphs);
    try {
        m_source.write_flamegraph(path);
        set_message("Flame graph of what is alive now written to " + path);
    } catch (const std::exception& e) {
        set_message(std::string("Could not write the flame graph: ") + e.what(), true);
    }
}

void LiveView::handle_filter_key(const Key& key) {
    switch (key.kind) {
    case KeyKind::Enter:
        m_editing_filter = false;
        return;
    case KeyKind::Escape:
        m_editing_filter = false;
        m_filter = m_filter_before_edit;
        break;
    case KeyKind::Backspace:
        while (!m_filter.empty() && (static_cast<unsigned char>(m_filter.back()) & 0xC0) == 0x80)
            m_filter.pop_back();
        if (!m_filter.empty()) m_filter.pop_back();
        break;
    case KeyKind::Char:
        if (key.ch < 0x20) return;
        append_utf8(m_filter, key.ch);
        break;
    default:
        return;
    }
    m_filter_folded.clear();
    for (char c : m_filter) m_filter_folded += ascii_lower(c);
    m_scroll = 0;
    rearrange();
}

bool LiveView::handle_key(const Key& key) {
    if (m_editing_filter) {
        if (key.kind == KeyKind::Interrupt) return false;
        handle_filter_key(key);
        return true;
    }
    const auto& threads = m_source.header().threads;
    switch (key.kind) {
    case KeyKind::Interrupt:
    case KeyKind::Escape: return false;
    case KeyKind::Up:
        if (m_scroll > 0) --m_scroll;
        return true;
    case KeyKind::Down: scroll_down(1); return true;
    case KeyKind::PageUp: m_scroll -= std::min(m_scroll, size_t(m_page_rows)); return true;
    case KeyKind::PageDown: scroll_down(size_t(m_page_rows)); return true;
    case KeyKind::Home: m_scroll = 0; return true;
    case KeyKind::End: m_scroll = SIZE_MAX; return true;  // draw_table clamps it
    case KeyKind::Left:
    case KeyKind::Right: break;
    case KeyKind::Char: break;
    default: return true;
    }
    bool prev = key.kind == KeyKind::Left || key.is('<');
    bool next = key.kind == KeyKind::Right || key.is('>');
    if (prev || next) {
        if (m_merged || threads.empty()) return true;
        size_t n = threads.size();
        m_thread_pos = std::min(m_thread_pos, n - 1);
        m_thread_pos = next ? (m_thread_pos + 1) % n : (m_thread_pos + n - 1) % n;
        m_scroll = 0;
        fetch_rows();
        return true;
    }
    if (key.kind != KeyKind::Char) return true;
    switch (key.ch) {
    case 'q': return false;
    case 't': m_sort = SortKey::Total; rearrange(); break;
    case 'o': m_sort = SortKey::Own; rearrange(); break;
    case 'a': m_sort = SortKey::Allocations; rearrange(); break;
    case 'm':
        m_merged = !m_merged;
        m_scroll = 0;
        fetch_rows();
        break;
    case ' ':
        m_paused = !m_paused;
        if (!m_paused) fetch_rows();
        break;
    case '/':
        m_editing_filter = true;
        m_filter_before_edit = m_filter;
        break;
    case 'f': write_flamegraph(); break;
    case 'u':
        if (m_source.header().native) {
            m_hide_internal = !m_hide_internal;
            fetch_rows();
        }
        break;
    default: break;
    }
    return true;
}

// ---- drawing -----------------------------------------------------------------------------------

void LiveView::draw_graph(int y, int x, int width, int height) {
    const auto& history = m_source.header().history;
    if (width <= 0 || height <= 0) return;
    // One point per column, the newest at the right (memray's graph scrolls the same way).
    size_t n = std::min(history.size(), size_t(width));
    size_t first = history.size() - n;
    uint64_t top = m_source.header().peak_heap_bytes;
    for (size_t i = first; i < history.size(); ++i) top = std::max(top, history[i].heap_bytes);
    static const char* const k_blocks[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                           "\u2585", "\u2586", "\u2587", "\u2588"};
    const int levels = height * 8;
    Style style;
    style.fg = Color::Cyan;
    for (int row = 0; row < height; ++row) {
        std::string line(size_t(width) - n, ' ');
        for (size_t i = first; i < history.size(); ++i) {
            double v = top ? double(history[i].heap_bytes) / double(top) : 0.0;
            int filled = int(std::ceil(v * levels));
            int cell = std::clamp(filled - (height - 1 - row) * 8, 0, 8);
            if (cell == 0)
                line += ' ';
            else if (m_term.utf8())
                line += k_blocks[cell - 1];
            else
                line += cell == 8 ? '#' : cell >= 4 ? '+' : '.';
        }
        m_term.put(y + row, x, line, style);
    }
}

int LiveView::draw_header(int width) {
    const live::Header& h = m_source.header();
    const bool narrow = width < k_narrow_below;
    Style bold;
    bold.bold = true;

    std::string thread;
    if (m_merged) {
        thread = "* (all threads merged)";
    } else if (h.threads.empty()) {
        thread = "- (none yet)";
    } else {
        size_t pos = std::min(m_thread_pos, h.threads.size() - 1);
        const live::Thread& t = h.threads[pos];
        thread = fmt::format("{} of {} (", pos + 1, h.threads.size());
        if (!t.name.empty()) thread += t.name + ", ";
        thread += fmt::format("tid {})", t.tid);
    }
    std::string heap = fmt::format("{} ({:.0f}% of {} max)", report::size_fmt(h.heap_bytes),
                                   percent_of(h.heap_bytes, h.peak_heap_bytes),
                                   report::size_fmt(h.peak_heap_bytes));

    // label, value: the left column of the header.
    const std::pair<const char*, std::string> lines[k_graph_height] = {
        {"PID: ", fmt::format("{}   ", h.pid)},
        {"Thread: ", thread},
        {"Samples: ", fmt::format("{}   ", h.samples)},
        {"Heap: ", heap},
    };
    int graph_width = narrow ? 0 : std::min(60, width / 3);
    int left_width = width - graph_width - (graph_width ? 2 : 0);
    for (int i = 0; i < k_graph_height; ++i) {
        int x = m_term.put(i, 0, lines[i].first, bold, left_width);
        x += m_term.put(i, x, lines[i].second, {}, left_width - x);
        if (i == 0) {
            x += m_term.put(i, x, "CMD: ", bold, left_width - x);
            m_term.put(i, x, h.command_line.empty() ? "???" : h.command_line, {}, left_width - x);
        } else if (i == 2) {
            x += m_term.put(i, x, "Duration: ", bold, left_width - x);
            m_term.put(i, x, duration_text(h.duration_ms), {}, left_width - x);
        } else if (i == 3) {
            x += m_term.put(i, x, "   RSS: ", bold, left_width - x);
            m_term.put(i, x, h.rss_bytes ? report::size_fmt(h.rss_bytes) : "-", {},
                       left_width - x);
        }
    }
    if (!narrow) {
        draw_graph(0, width - graph_width, graph_width, k_graph_height);
        return k_graph_height;
    }
    draw_graph(k_graph_height, 0, width, 1);  // narrow: a one-line graph under the header
    return k_graph_height + 1;
}

int LiveView::draw_status(int y) {
    const live::Header& h = m_source.header();
    Style warn;
    warn.fg = Color::Yellow;
    warn.bold = true;
    Style bad;
    bad.fg = Color::Red;
    bad.bold = true;
    int start = y;
    switch (h.status) {
    case live::Status::Waiting:
        m_term.put(y++, 0, h.status_text.empty() ? "Waiting for data from the tracked process..."
                                                 : h.status_text, warn);
        break;
    case live::Status::Running: break;
    case live::Status::Exited:
        m_term.put(y++, 0,
                   (h.status_text.empty() ? std::string("process exited") : h.status_text) +
                       ": the table shows the last state; press q to quit",
                   warn);
        break;
    case live::Status::Disconnected:
        m_term.put(y++, 0,
                   "disconnected" + (h.status_text.empty() ? std::string() : ": " + h.status_text) +
                       "; the table shows the last state; press q to quit",
                   bad);
        break;
    case live::Status::Failed:
        m_term.put(y++, 0, "error: " + (h.status_text.empty() ? "the stream failed" : h.status_text),
                   bad);
        break;
    }
    if (h.dropped_blocks)
        m_term.put(y++, 0,
                   fmt::format("The viewer fell behind: the process dropped {} blocks of records "
                               "instead of waiting; the numbers are too low",
                               h.dropped_blocks),
                   warn);
    if (!h.program_output.empty()) {
        Style bold;
        bold.bold = true;
        int x = m_term.put(y, 0, "Program output: ", bold);
        m_term.put(y++, x, h.program_output);
    }
    return y - start;
}

void LiveView::draw_table(int top, int bottom) {
    const int width = m_term.width();
    const bool narrow = width < k_narrow_below;
    const live::Header& h = m_source.header();

    // The line above the table: what it shows.
    Style dim;
    dim.dim = true;
    std::string info = fmt::format("{} location{}, sorted by {}", m_rows.size(),
                                   m_rows.size() == 1 ? "" : "s", sort_name(m_sort));
    if (!m_filter.empty())
        info += fmt::format(", filter \"{}\": {} shown", m_filter, m_shown.size());
    if (h.native) info += m_hide_internal ? ", CPython internals hidden" : ", CPython internals shown";
    int x = m_term.put(top, 0, info, dim);
    if (m_paused) {
        Style paused;
        paused.reverse = true;
        paused.bold = true;
        paused.fg = Color::Yellow;
        m_term.put(top, x + 2, " PAUSED (space resumes) ", paused);
    }
    ++top;
    if (top >= bottom) return;

    // Columns: memray's, the wide layout; the narrow one puts the file after the function and
    // drops the own columns when even that does not fit.
    enum class Field { TotalBytes, TotalShare, OwnBytes, OwnShare, Allocations };
    struct Column {
        Field field;
        const char* title;
        int width;
        SortKey sorts;
        bool sorted_by;
    };
    const bool show_own = !narrow || width >= 60;
    const int num_w = narrow ? 10 : 11;
    const int pct_w = narrow ? 7 : 8;
    std::vector<Column> cols = {
        {Field::TotalBytes, narrow ? "Total" : "Total Bytes", num_w, SortKey::Total, false},
        {Field::TotalShare, "% Total", pct_w, SortKey::Total, false}};
    if (show_own) {
        cols.push_back({Field::OwnBytes, narrow ? "Own" : "Own Bytes", num_w, SortKey::Own, false});
        cols.push_back({Field::OwnShare, "% Own", pct_w, SortKey::Own, false});
    }
    cols.push_back({Field::Allocations, narrow ? "Allocs" : "Allocations", narrow ? 8 : 11,
                    SortKey::Allocations, false});
    int numbers_w = 0;
    for (Column& c : cols) {
        c.sorted_by = c.sorts == m_sort;
        numbers_w += c.width + 1;
    }
    int rest = std::max(0, width - numbers_w);
    int loc_w = narrow ? rest : rest * 55 / 100;
    int file_w = narrow ? 0 : rest - loc_w - 1;

    Style head;
    head.reverse = true;
    m_term.fill(top, 0, width, head);
    m_term.put(top, 0, "Location", head, loc_w);
    x = loc_w;
    for (const Column& c : cols) {
        Style s = head;
        s.bold = c.sorted_by;
        s.underline = c.sorted_by;
        m_term.put(top, x + 1, pad_left(c.title, c.width), s, c.width);
        x += c.width + 1;
    }
    if (file_w > 0) m_term.put(top, x + 1, "File/Module", head, file_w);
    ++top;

    m_page_rows = std::max(1, bottom - top);
    size_t max_scroll = m_shown.size() > size_t(m_page_rows) ? m_shown.size() - m_page_rows : 0;
    m_scroll = std::min(m_scroll, max_scroll);

    const bool colors = m_term.has_colors();
    for (int y = top; y < bottom; ++y) {
        size_t i = m_scroll + size_t(y - top);
        if (i >= m_shown.size()) break;
        const Row& r = m_rows[m_shown[i]];
        std::string loc = r.function.empty() ? "???" : r.function;
        if (narrow) loc += "  " + location_of(r);
        m_term.put(y, 0, loc, {}, loc_w);
        x = loc_w;
        for (const Column& c : cols) {
            std::string text;
            double share = 0;
            switch (c.field) {
            case Field::TotalBytes:
                text = report::size_fmt(r.total_bytes);
                share = percent_of(r.total_bytes, m_rows_heap);
                break;
            case Field::TotalShare:
                text = percent_text(r.total_bytes, m_rows_heap);
                share = percent_of(r.total_bytes, m_rows_heap);
                break;
            case Field::OwnBytes:
                text = report::size_fmt(r.own_bytes);
                share = percent_of(r.own_bytes, m_rows_heap);
                break;
            case Field::OwnShare:
                text = percent_text(r.own_bytes, m_rows_heap);
                share = percent_of(r.own_bytes, m_rows_heap);
                break;
            case Field::Allocations:
                text = fmt::format("{}", r.total_allocations);
                share = percent_of(r.total_allocations, m_rows_allocations);
                break;
            }
            Style s = share_style(share, colors);
            m_term.put(y, x + 1, pad_left(text, c.width), s, c.width);
            x += c.width + 1;
        }
        if (file_w > 0) m_term.put(y, x + 1, clip_front(location_of(r), file_w, m_term.utf8()), dim);
    }
    if (m_shown.empty() && top < bottom) {
        m_term.put(top, 0,
                   m_rows.empty() ? "  (no live allocations)" : "  (no location matches the filter)",
                   dim);
    }
}

void LiveView::draw_footer(int y) {
    const int width = m_term.width();
    const bool narrow = width < k_narrow_below;
    const bool native = m_source.header().native;
    Style bar;
    bar.reverse = true;
    Style key = bar;
    key.bold = true;
    key.fg = Color::Cyan;
    m_term.fill(y, 0, width, bar);
    struct Hint {
        const char* key;
        const char* label;
    };
    const char* merge = m_merged ? "Split threads" : "Merge threads";
    const char* pause = m_paused ? "Resume" : "Pause";
    const char* internals = m_hide_internal ? "Show internals" : "Hide internals";
    std::vector<Hint> hints = {{"q", "Quit"},          {"<>", "Thread"},      {"t", "Sort Total"},
                               {"o", "Sort Own"},      {"a", "Sort Allocations"}, {"m", merge},
                               {"space", pause},       {"/", "Filter"},       {"f", "Flame graph"}};
    if (native) hints.push_back({"u", internals});
    int need = 0;
    for (const Hint& h : hints) need += 1 + text_width(h.key) + 2 + text_width(h.label);
    // Short labels when the long ones do not all fit (the narrow layout, a long list).
    if (narrow || need > width) {
        hints = {{"q", "quit"},   {"<>", "thread"},          {"t/o/a", "sort"},
                 {"m", m_merged ? "split" : "merge"},        {"spc", m_paused ? "resume" : "pause"},
                 {"/", "filter"}, {"f", "flame"}};
        if (native) hints.push_back({"u", m_hide_internal ? "internals" : "hide int."});
    }
    int x = 0;
    for (const Hint& h : hints) {
        std::string label = std::string(" ") + h.label + " ";
        if (x + 1 + text_width(h.key) + text_width(label) > width) break;
        x += m_term.put(y, x + 1, h.key, key) + 1;
        x += m_term.put(y, x, label, bar);
    }
}

void LiveView::draw() {
    if (m_arrange_pending) arrange_rows();
    m_term.clear();
    m_term.set_cursor(-1, -1);
    const int width = m_term.width();
    const int height = m_term.height();
    int y = draw_header(width);
    y += draw_status(y);
    int footer = height - 1;
    int bottom = footer;
    bool message = !m_message.empty() && Clock::now() < m_message_until;
    if (m_editing_filter) {
        --bottom;
        Style bold;
        bold.bold = true;
        int x = m_term.put(bottom, 0, "Filter (function or file; Enter keeps, Esc cancels): ", bold);
        x += m_term.put(bottom, x, m_filter);
        m_term.set_cursor(bottom, std::min(x, width - 1));
    } else if (message) {
        --bottom;
        Style s;
        s.bold = true;
        s.fg = m_message_error ? Color::Red : Color::Green;
        m_term.put(bottom, 0, m_message, s);
    }
    if (y < bottom) draw_table(y, bottom);
    if (footer > 0) draw_footer(footer);
    m_term.present();
}

int LiveView::run() {
    m_source.poll(k_poll_wait_ms);
    fetch_rows();
    draw();
    auto last_fetch = Clock::now();
    auto last_draw = last_fetch;
    bool rows_stale = false;  // the source has data the table does not show yet
    bool dirty = false;       // something on screen is out of date

    for (;;) {
        Key key = m_term.read_key(k_key_wait_ms);
        // Every key already typed before one redraw (a pasted filter, a held arrow key).
        bool quit = false;
        for (int n = 0; key.kind != KeyKind::None && n < k_keys_per_draw; ++n) {
            if (!handle_key(key)) {
                quit = true;
                break;
            }
            dirty = true;
            Key more = m_term.read_key(0);
            if (more.kind == KeyKind::None) break;
            key = more;
        }
        if (quit) break;
        if (m_source.poll(key.kind == KeyKind::None ? k_poll_wait_ms : 0)) {
            rows_stale = true;
            dirty = true;
        }
        const live::Header& h = m_source.header();
        const bool final_state =
            h.status == live::Status::Exited || h.status == live::Status::Disconnected;
        auto now = Clock::now();
        // The data of an exited process is final: show it at once, then keep it.
        if (final_state && !m_final_fetched && !m_paused) {
            fetch_rows();
            m_final_fetched = true;
            rows_stale = false;
            last_fetch = now;
            dirty = true;
        } else if (rows_stale && !m_paused && now - last_fetch >= k_table_period) {
            fetch_rows();
            rows_stale = false;
            last_fetch = now;
            dirty = true;
        }
        if (!m_message.empty() && now >= m_message_until) {
            m_message.clear();
            dirty = true;
        }
        // The header's clock moves even when no data does: redraw at least once a second.
        if (key.kind != KeyKind::None || (dirty && now - last_draw >= k_redraw_period) ||
            now - last_draw >= k_table_period) {
            draw();
            last_draw = Clock::now();
            dirty = false;
        }
    }
    return m_source.header().status == live::Status::Failed ? 1 : 0;
}

// source.close() on every way out of run_live_view, exceptions included.
class CloseOnExit {
  public:
    explicit CloseOnExit(live::Source& source) : m_source(source) {}
    ~CloseOnExit() {
        try {
            m_source.close();
        } catch (...) {
            // A destructor must not throw; the session ends anyway.
        }
    }
    CloseOnExit(const CloseOnExit&) = delete;
    CloseOnExit& operator=(const CloseOnExit&) = delete;

  private:
    live::Source& m_source;
};

}  // namespace

int run_live_view(live::Source& source, const LiveViewOptions& options) {
    CloseOnExit closer(source);
    Terminal term;
    LiveView view(term, source, options);
    int rc = view.run();
    // Stopping may take a moment (attach restores the process): say so while it happens.
    term.clear();
    Style bold;
    bold.bold = true;
    term.put(0, 0, "Stopping...", bold);
    term.present();
    source.close();
    return rc;
}

}  // namespace memray::tui
