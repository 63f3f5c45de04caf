#include "report/summary.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <unordered_map>

#include "report/size_format.hpp"

namespace memray::report {

namespace {

// Display width of UTF-8 text (one column per code point; good enough for paths and names).
size_t text_width(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s)
        if ((c & 0xC0) != 0x80) ++n;
    return n;
}

// Byte offset of the first `cols` code points of `s`.
size_t prefix_bytes(const std::string& s, size_t cols) {
    size_t n = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
            if (n == cols) return i;
            ++n;
        }
    }
    return s.size();
}

// Greedy word wrap; words longer than the width are cut.
std::vector<std::string> wrap(const std::string& text, size_t width) {
    std::vector<std::string> lines;
    std::string line;
    size_t i = 0;
    while (i < text.size()) {
        size_t j = text.find(' ', i);
        if (j == std::string::npos) j = text.size();
        std::string word = text.substr(i, j - i);
        i = j + 1;
        if (word.empty()) continue;
        while (text_width(word) > width) {
            if (!line.empty()) {
                lines.push_back(line);
                line.clear();
            }
            size_t cut = prefix_bytes(word, width);
            lines.push_back(word.substr(0, cut));
            word = word.substr(cut);
        }
        if (line.empty()) line = word;
        else if (text_width(line) + 1 + text_width(word) <= width) line += " " + word;
        else {
            lines.push_back(line);
            line = word;
        }
    }
    if (!line.empty() || lines.empty()) lines.push_back(line);
    return lines;
}

std::string pad(const std::string& s, size_t width, bool right) {
    size_t w = text_width(s);
    if (w >= width) return s;
    return right ? std::string(width - w, ' ') + s : s + std::string(width - w, ' ');
}

const char* color_for(double proportion) {
    if (proportion > 0.6) return "\x1b[31m";   // red
    if (proportion > 0.2) return "\x1b[33m";   // yellow
    if (proportion > 0.05) return "\x1b[32m";  // green
    return "\x1b[92m";                         // bright green
}

std::string rule(const std::vector<size_t>& widths, const char* left, const char* fill,
                 const char* mid, const char* right) {
    std::string out = left;
    for (size_t c = 0; c < widths.size(); ++c) {
        if (c) out += mid;
        for (size_t k = 0; k < widths[c] + 2; ++k) out += fill;
    }
    out += right;
    out += '\n';
    return out;
}

}  // namespace

namespace {

// `amounts[node]`: what the view holds per stack node.
Summary summarize(const std::vector<Amount>& amounts, const StackResolver& resolver) {
    Summary s;
    std::unordered_map<std::string, size_t> index;  // "function\0file" -> row
    auto row_for = [&](const std::string& function, const std::string& file) -> size_t {
        std::string key = function;
        key += '\0';
        key += file;
        auto [it, fresh] = index.emplace(std::move(key), s.rows.size());
        if (fresh) s.rows.push_back({function, file, 0, 0, 0});
        return it->second;
    };
    // Row indexes, not pointers: row_for may grow s.rows and move them.
    std::vector<size_t> seen;
    for (uint32_t id = 0; id < amounts.size(); ++id) {
        Amount a = amounts[id];
        if (a.count == 0 && a.bytes == 0) continue;
        s.snapshot_bytes += a.bytes;
        s.snapshot_count += a.count;
        std::vector<Frame> frames = resolver.stack(id);
        if (frames.empty()) {
            SummaryRow& r = s.rows[row_for("???", "???")];
            r.total_memory += a.bytes;
            r.own_memory += a.bytes;
            r.n_allocations += a.count;
            continue;
        }
        // A location counts once per stack, however often the stack passes through it
        // (recursion), as memray counts it.
        seen.clear();
        for (size_t i = 0; i < frames.size(); ++i) {
            size_t row = row_for(frames[i].function, frames[i].file);
            if (std::find(seen.begin(), seen.end(), row) != seen.end()) continue;
            seen.push_back(row);
            SummaryRow& r = s.rows[row];
            if (i == 0) r.own_memory += a.bytes;
            r.total_memory += a.bytes;
            r.n_allocations += a.count;
        }
    }
    return s;
}

}  // namespace

Summary compute_summary(const AllocationTracker& tracker, const StackResolver& resolver,
                        SummaryView which) {
    std::vector<Amount> amounts(tracker.node_count());
    for (uint32_t id = 0; id < amounts.size(); ++id)
        amounts[id] = which == SummaryView::Peak ? tracker.at_peak(id) : tracker.at_end(id);
    return summarize(amounts, resolver);
}

Summary compute_summary(const Snapshot& snapshot, const StackResolver& resolver) {
    std::vector<Amount> amounts;
    for (const LocationAmount& l : snapshot.locations) {
        if (l.node >= amounts.size()) amounts.resize(size_t(l.node) + 1);
        amounts[l.node].count += l.count;
        amounts[l.node].bytes += l.bytes;
    }
    return summarize(amounts, resolver);
}

std::string render_summary(const Summary& s, int sort_column, size_t max_rows,
                           const TableStyle& style) {
    std::vector<const SummaryRow*> rows;
    for (const SummaryRow& r : s.rows) rows.push_back(&r);
    auto key = [&](const SummaryRow* r) {
        switch (sort_column) {
            case 3:
            case 4: return r->own_memory;
            case 5: return r->n_allocations;
            default: return r->total_memory;
        }
    };
    std::stable_sort(rows.begin(), rows.end(),
                     [&](const SummaryRow* a, const SummaryRow* b) { return key(a) > key(b); });
    if (rows.size() > max_rows) rows.resize(max_rows);

    const size_t ncols = 6;
    std::vector<std::string> headers = {"Location",   "Total Memory", "Total Memory %",
                                        "Own Memory", "Own Memory %", "Allocation Count"};
    if (sort_column >= 1 && sort_column <= 5)
        headers[size_t(sort_column)] = "<" + headers[size_t(sort_column)] + ">";

    auto percent = [&](uint64_t v) {
        return s.snapshot_bytes ? double(v) / double(s.snapshot_bytes) : 0.0;
    };
    struct Cells {
        std::string text[ncols];
        const char* color[ncols] = {};
        std::string function, file;
    };
    std::vector<Cells> cells;
    for (const SummaryRow* r : rows) {
        Cells c;
        c.function = r->function;
        c.file = r->file;
        c.text[0] = r->function + " at " + r->file;
        c.text[1] = size_fmt(r->total_memory);
        c.text[2] = fmt::format("{:.2f}%", percent(r->total_memory) * 100);
        c.text[3] = size_fmt(r->own_memory);
        c.text[4] = fmt::format("{:.2f}%", percent(r->own_memory) * 100);
        c.text[5] = std::to_string(r->n_allocations);
        c.color[1] = c.color[2] = color_for(percent(r->total_memory));
        c.color[3] = c.color[4] = color_for(percent(r->own_memory));
        c.color[5] = color_for(s.snapshot_count ? double(r->n_allocations) /
                                                      double(s.snapshot_count)
                                                : 0.0);
        cells.push_back(std::move(c));
    }

    // Numbers are never cut: numeric columns fit their widest cell; headers wrap by word when
    // the terminal is too narrow for them; the location column takes what is left and wraps.
    std::vector<size_t> widths(ncols, 0);
    auto longest_word = [](const std::string& h) {
        size_t best = 0;
        size_t i = 0;
        while (i <= h.size()) {
            size_t j = h.find(' ', i);
            if (j == std::string::npos) j = h.size();
            best = std::max(best, j - i);
            i = j + 1;
        }
        return best;
    };
    size_t location_natural = text_width(headers[0]);
    for (const Cells& c : cells) location_natural = std::max(location_natural, text_width(c.text[0]));
    for (size_t col = 1; col < ncols; ++col) {
        for (const Cells& c : cells) widths[col] = std::max(widths[col], text_width(c.text[col]));
        widths[col] = std::max(widths[col], text_width(headers[col]));
    }
    auto total_width = [&](size_t location) {
        size_t t = location + 1;
        for (size_t col = 0; col < ncols; ++col) t += (col ? widths[col] : 0) + 3;
        return t;
    };
    if (style.width && total_width(location_natural) > style.width) {
        for (size_t col = 1; col < ncols; ++col) {
            size_t cell_max = 0;
            for (const Cells& c : cells) cell_max = std::max(cell_max, text_width(c.text[col]));
            widths[col] = std::max(cell_max, longest_word(headers[col]));
        }
    }
    widths[0] = location_natural;
    if (style.width && total_width(widths[0]) > style.width) {
        size_t fixed = total_width(0);
        widths[0] = style.width > fixed + 20 ? style.width - fixed : 20;
        widths[0] = std::min(widths[0], location_natural);
    }

    const char* bold = style.color ? "\x1b[1m" : "";
    const char* reset = style.color ? "\x1b[0m" : "";
    std::string out = rule(widths, "┏", "━", "┳", "┓");

    std::vector<std::vector<std::string>> header_lines(ncols);
    size_t header_height = 1;
    for (size_t col = 0; col < ncols; ++col) {
        header_lines[col] = wrap(headers[col], widths[col]);
        header_height = std::max(header_height, header_lines[col].size());
    }
    for (size_t line = 0; line < header_height; ++line) {
        out += "┃";
        for (size_t col = 0; col < ncols; ++col) {
            // Headers sit at the bottom of their cell, as rich draws them.
            size_t offset = header_height - header_lines[col].size();
            std::string text = line >= offset ? header_lines[col][line - offset] : "";
            std::string padded = pad(text, widths[col], col != 0);
            out += " ";
            out += text.empty() ? padded : bold + padded + reset;
            out += " ┃";
        }
        out += "\n";
    }
    out += rule(widths, "┡", "━", "╇", "┩");

    for (const Cells& c : cells) {
        std::vector<std::string> location = wrap(c.text[0], widths[0]);
        for (size_t line = 0; line < location.size(); ++line) {
            out += "│";
            for (size_t col = 0; col < ncols; ++col) {
                out += " ";
                if (col == 0) {
                    std::string padded = pad(location[line], widths[0], false);
                    if (style.color && location.size() == 1) {
                        // function in bold magenta, file in cyan (memray's colours)
                        std::string tail = padded.substr(c.text[0].size());
                        padded = "\x1b[1;35m" + c.function + "\x1b[0m at \x1b[36m" + c.file +
                                 "\x1b[0m" + tail;
                    }
                    out += padded;
                } else {
                    std::string text = line == 0 ? c.text[col] : "";
                    std::string padded = pad(text, widths[col], true);
                    if (style.color && !text.empty()) padded = c.color[col] + padded + "\x1b[0m";
                    out += padded;
                }
                out += " │";
            }
            out += "\n";
        }
    }
    out += rule(widths, "└", "─", "┴", "┘");
    return out;
}

}  // namespace memray::report
