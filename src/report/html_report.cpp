#include "report/html_report.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <tuple>
#include <unordered_map>

#include "report/flat_map.hpp"
#include "report/output_path.hpp"
#include "report/python_lines.hpp"

namespace memray::report {

// Defined in the file web/embed_assets.py generates from the esbuild bundle.
namespace web_assets {
std::string_view flamegraph_js();
std::string_view flamegraph_css();
std::string_view table_js();
std::string_view table_css();
}  // namespace web_assets

namespace {

// ---- compact JSON -------------------------------------------------------------------------

void append_uint(std::string& out, uint64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}
void append_int(std::string& out, int64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// Length of the valid UTF-8 sequence at s[i], 0 when invalid.
size_t utf8_length(std::string_view s, size_t i) {
    auto b = [&](size_t k) { return uint8_t(s[i + k]); };
    auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xc0) == 0x80; };
    uint8_t c = b(0);
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (!cont(1) || !cont(2)) return 0;
        if (c == 0xe0 && b(1) < 0xa0) return 0;  // overlong
        if (c == 0xed && b(1) >= 0xa0) return 0;  // surrogates
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (!cont(1) || !cont(2) || !cont(3)) return 0;
        if (c == 0xf0 && b(1) < 0x90) return 0;
        if (c == 0xf4 && b(1) >= 0x90) return 0;
        return 4;
    }
    return 0;
}

class Json {
  public:
    std::string out;
    void raw(std::string_view s) { out.append(s); }
    void str(std::string_view s) { append_json_string(out, s); }
    void num(uint64_t v) { append_uint(out, v); }
    void key(std::string_view k) {
        comma();
        str(k);
        out.push_back(':');
        m_first = true;  // the value that follows needs no comma
    }
    void open(char c) {
        comma();
        out.push_back(c);
        m_first = true;
    }
    void close(char c) {
        out.push_back(c);
        m_first = false;
    }
    // Elements of an array or values after key().
    void item(uint64_t v) {
        comma();
        num(v);
    }
    void item_int(int64_t v) {
        comma();
        append_int(out, v);
    }
    void item(std::string_view s) {
        comma();
        str(s);
    }
    void item_bool(bool b) {
        comma();
        raw(b ? "true" : "false");
    }

  private:
    void comma() {
        if (!m_first) out.push_back(',');
        m_first = false;
    }
    bool m_first = true;
};

// ---- call tree ----------------------------------------------------------------------------

// The full (unmerged) call tree over resolved frames, built from reader node ids.
class TreeBuilder {
  public:
    TreeBuilder(const StackResolver& resolver, const format::Reader& reader)
        : m_resolver(resolver), m_nodes(reader.nodes()), m_codes(reader.codes()),
          m_frame_of(reader.nodes().size(), 0),
          m_py(reader.nodes().size(), k_unset) {
        intern({"<root>", "", 0, false});
        intern({"<other>", "", 0, false});
        parent.push_back(0);
        frame.push_back(0);
    }

    // Tree node of the stack ending at reader node `n`, the same frames as resolver.stack(n).
    uint32_t node_for(uint32_t n) {
        // Native frames expand to several (inlined) frames and hybrid stacks interleave the
        // kinds: resolve those through the resolver, whose per-node results are cached.
        // A Tracker capture's stacks lose the callers above the `with`: the walk does not.
        if (m_slow || m_resolver.has_native() || m_resolver.hides_tracker_callers())
            return slow_node_for(n);
        uint32_t t = py_node(n);
        // Python-only captures: the memoised walk below mirrors StackResolver::stack()'s choice
        // of frames. Check it against the real thing on the first stacks; should the resolver's
        // rules change, fall back to resolving every stack through it.
        if (m_checked < 256) {
            ++m_checked;
            std::vector<Frame> want = m_resolver.stack(n);
            std::vector<uint32_t> got;
            for (uint32_t x = t; x != 0; x = parent[x]) got.push_back(frame[x]);
            bool same = got.size() == want.size();
            for (size_t i = 0; same && i < got.size(); ++i) same = frames[got[i]] == want[i];
            if (!same) {
                m_slow = true;
                return slow_node_for(n);
            }
        }
        return t;
    }

    std::vector<Frame> frames;
    std::vector<uint32_t> parent, frame;

  private:
    static constexpr uint32_t k_unset = ~uint32_t(0);

    uint32_t intern(const Frame& f) {
        auto [it, fresh] = m_frame_ids.try_emplace(f, uint32_t(frames.size()));
        if (fresh) frames.push_back(f);
        return it->second;
    }
    uint32_t frame_index(uint32_t n) {
        if (m_frame_of[n] != 0) return m_frame_of[n] - 1;
        // Python nodes differ by instruction offset; most share (code, line) with another, so
        // the strings are copied and hashed once per (code, line) rather than once per node.
        const format::StackNode& node = m_nodes[n];
        if (node.kind == format::FrameKind::Python && node.code != 0 && node.code < m_codes.size()) {
            const format::CodeInfo& c = m_codes[node.code];
            uint32_t line = python_line(c.line_format, c.line_table, c.first_line, node.offset);
            uint32_t& slot = m_code_lines[(uint64_t(node.code) << 32) | line];  // index + 1
            if (slot == 0) slot = intern(m_resolver.frame(n)) + 1;
            m_frame_of[n] = slot;
        } else {
            m_frame_of[n] = intern(m_resolver.frame(n)) + 1;
        }
        return m_frame_of[n] - 1;
    }
    uint32_t child(uint32_t p, uint32_t f) {
        uint32_t& slot = m_children[(uint64_t(p) << 32) | f];  // 0: new (no child is node 0)
        if (slot == 0) {
            slot = uint32_t(parent.size());
            parent.push_back(p);
            frame.push_back(f);
        }
        return slot;
    }
    bool valid(uint32_t n) const { return n != 0 && n < m_nodes.size(); }

    // Python frames of the chain, everything outside the innermost bootstrap frame dropped:
    // a bootstrap frame restarts at the root. 0 when the chain has no such frame.
    uint32_t py_node(uint32_t n) {
        // Iterative: stacks can be thousands of frames deep.
        m_path.clear();
        uint32_t x = n;
        while (valid(x) && m_py[x] == k_unset && m_path.size() < m_nodes.size()) {
            m_path.push_back(x);
            x = m_nodes[x].parent;
        }
        uint32_t t = valid(x) && m_py[x] != k_unset ? m_py[x] : 0;
        for (size_t i = m_path.size(); i-- > 0;) {
            uint32_t y = m_path[i];
            if (m_nodes[y].kind == format::FrameKind::Python)
                t = m_resolver.is_bootstrap(y) ? 0 : child(t, frame_index(y));
            m_py[y] = t;
        }
        return valid(n) ? m_py[n] : 0;
    }
    uint32_t slow_node_for(uint32_t n) {
        m_resolver.stack_ids(n, m_ids);
        uint32_t t = 0;
        for (size_t i = m_ids.size(); i-- > 0;) {
            uint32_t id = m_ids[i];
            if (id >= m_from_resolver.size()) m_from_resolver.resize(id + 1, 0);
            if (m_from_resolver[id] == 0) m_from_resolver[id] = intern(m_resolver.frame_at(id)) + 1;
            t = child(t, m_from_resolver[id] - 1);
        }
        return t;
    }

    const StackResolver& m_resolver;
    const std::vector<format::StackNode>& m_nodes;
    const std::vector<format::CodeInfo>& m_codes;
    FlatMap<uint32_t> m_code_lines;  // (code, line) -> frame index + 1
    std::vector<uint32_t> m_frame_of;  // reader node -> frame index + 1
    std::vector<uint32_t> m_py;
    std::vector<uint32_t> m_path;
    std::vector<uint32_t> m_ids;
    std::vector<uint32_t> m_from_resolver;  // resolver frame id -> frame index + 1
    std::unordered_map<Frame, uint32_t, FrameHash> m_frame_ids;
    FlatMap<uint32_t> m_children;  // (parent, frame) -> node
    size_t m_checked = 0;
    bool m_slow = false;
};

uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t(a) << 32) | b; }

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
    static const char* hex = "0123456789abcdef";
    out.push_back('"');
    for (size_t i = 0; i < s.size();) {
        uint8_t c = uint8_t(s[i]);
        if (c >= 0x80) {
            size_t n = utf8_length(s, i);
            if (n == 0) {
                out.append("\\ufffd");
                ++i;
                continue;
            }
            // U+2028 / U+2029 end a line in JavaScript source.
            if (n == 3 && c == 0xe2 && uint8_t(s[i + 1]) == 0x80 &&
                (uint8_t(s[i + 2]) == 0xa8 || uint8_t(s[i + 2]) == 0xa9)) {
                out.append(uint8_t(s[i + 2]) == 0xa8 ? "\\u2028" : "\\u2029");
            } else {
                out.append(s.substr(i, n));
            }
            i += n;
            continue;
        }
        switch (c) {
            case '"': out.append("\\\""); break;
            case '\\': out.append("\\\\"); break;
            case '\n': out.append("\\n"); break;
            case '\t': out.append("\\t"); break;
            case '<':
            case '>':
            case '&':
            default:
                if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f) {
                    out.append("\\u00");
                    out.push_back(hex[c >> 4]);
                    out.push_back(hex[c & 15]);
                } else {
                    out.push_back(char(c));
                }
        }
        ++i;
    }
    out.push_back('"');
}

std::string html_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
            case '<': out.append("&lt;"); break;
            case '>': out.append("&gt;"); break;
            case '&': out.append("&amp;"); break;
            case '"': out.append("&quot;"); break;
            case '\'': out.append("&#39;"); break;
            default: out.push_back(c);
        }
    }
    return out;
}

FlameTree build_flame_tree(const Snapshot& snapshot, const StackResolver& resolver,
                           const format::Reader& reader, const HtmlOptions& options) {
    TreeBuilder tb(resolver, reader);

    // Weight of each snapshot location: what decides whether its stack is kept. With
    // --temporal, everything the location allocated in any interval.
    const size_t n_locs = snapshot.locations.size();
    std::vector<uint64_t> weight(n_locs, 0);
    if (!snapshot.intervals.empty()) {
        for (const IntervalAmount& iv : snapshot.intervals)
            if (iv.location < n_locs) weight[iv.location] += iv.bytes;
    } else {
        for (size_t i = 0; i < n_locs; ++i) weight[i] = snapshot.locations[i].bytes;
    }
    std::vector<uint32_t> loc_node(n_locs);
    for (size_t i = 0; i < n_locs; ++i) loc_node[i] = tb.node_for(snapshot.locations[i].node);

    const size_t n_nodes = tb.parent.size();
    std::vector<uint64_t> total(n_nodes, 0);
    for (size_t i = 0; i < n_locs; ++i) total[loc_node[i]] += weight[i];
    for (size_t t = n_nodes; t-- > 1;) total[tb.parent[t]] += total[t];  // parents come first

    // Keep the nodes at or above the threshold: a share of the whole, raised when that would
    // keep more than max_nodes. Totals only grow towards the root, so the kept set is a subtree.
    uint64_t threshold = std::max<uint64_t>(1, uint64_t(double(total[0]) * options.merge_share));
    size_t above = 0;
    for (size_t t = 1; t < n_nodes; ++t) above += total[t] >= threshold;
    if (above > options.max_nodes && options.max_nodes > 0) {
        std::vector<uint64_t> sorted(total.begin() + 1, total.end());
        std::nth_element(sorted.begin(), sorted.begin() + (options.max_nodes - 1), sorted.end(),
                         std::greater<>());
        threshold = std::max(threshold, sorted[options.max_nodes - 1] + 1);
    }

    FlameTree out;
    out.full_nodes = n_nodes;
    std::vector<uint32_t> new_id(n_nodes, 0);
    std::vector<uint32_t> frame_new(tb.frames.size(), ~0u);
    auto use_frame = [&](uint32_t f) {
        if (frame_new[f] == ~0u) {
            frame_new[f] = uint32_t(out.frames.size());
            out.frames.push_back(tb.frames[f]);
            out.flags.push_back(frame_flags(tb.frames[f]));
        }
        return frame_new[f];
    };
    use_frame(0);
    use_frame(1);
    out.parent.push_back(0);
    out.frame.push_back(0);
    // A merged node's subtree goes to the "<other>" child of its nearest kept ancestor.
    std::vector<uint8_t> kept(n_nodes, 0);
    std::vector<uint32_t> kept_ancestor(n_nodes, 0);  // new id of it, for merged nodes
    kept[0] = 1;
    FlatMap<uint32_t> other_of;  // kept node (new id) -> its "<other>" node
    for (size_t t = 1; t < n_nodes; ++t) {
        uint32_t p = tb.parent[t];
        if (kept[p] && total[t] >= threshold) {
            kept[t] = 1;
            new_id[t] = uint32_t(out.parent.size());
            out.parent.push_back(new_id[p]);
            out.frame.push_back(use_frame(tb.frame[t]));
            continue;
        }
        ++out.merged_nodes;
        uint32_t ka = kept[p] ? new_id[p] : kept_ancestor[p];
        kept_ancestor[t] = ka;
        uint32_t& other = other_of[ka];
        if (other == 0) {
            other = uint32_t(out.parent.size());
            out.parent.push_back(ka);
            out.frame.push_back(FlameTree::k_other_frame);
        }
        new_id[t] = other;
    }

    // Locations by (new node, thread), allocators merged.
    FlatMap<uint32_t> loc_ids;  // (node, thread) -> index + 1
    std::vector<uint32_t> loc_new(n_locs);
    for (size_t i = 0; i < n_locs; ++i) {
        const LocationAmount& la = snapshot.locations[i];
        uint32_t node = new_id[loc_node[i]];
        uint32_t& id = loc_ids[pair_key(node, la.thread)];
        if (id == 0) {
            out.locs.push_back({node, la.thread, 0, 0});
            id = uint32_t(out.locs.size());
        }
        out.locs[id - 1].bytes += la.bytes;
        out.locs[id - 1].count += la.count;
        loc_new[i] = id - 1;
    }

    if (!snapshot.intervals.empty()) {
        // Merge the entries that now fall on the same (location, allocated_in, freed_in):
        // sort and fold. While there are too many, halve the time resolution and fold again
        // (floor(floor(x / g) / 2) == floor(x / 2g), so each round works on the last one).
        auto& iv = out.intervals;
        iv.reserve(snapshot.intervals.size());
        for (const IntervalAmount& a : snapshot.intervals)
            if (a.location < n_locs)
                iv.push_back({loc_new[a.location], a.allocated_in, a.freed_in, a.bytes, a.count});
        auto fold = [&iv] {
            std::sort(iv.begin(), iv.end(), [](const FlameTree::Interval& x, const FlameTree::Interval& y) {
                return std::tie(x.loc, x.allocated_in, x.freed_in) <
                       std::tie(y.loc, y.allocated_in, y.freed_in);
            });
            size_t w = 0;
            for (size_t r = 0; r < iv.size(); ++r) {
                if (w > 0 && iv[w - 1].loc == iv[r].loc && iv[w - 1].allocated_in == iv[r].allocated_in &&
                    iv[w - 1].freed_in == iv[r].freed_in) {
                    iv[w - 1].bytes += iv[r].bytes;
                    iv[w - 1].count += iv[r].count;
                } else {
                    iv[w++] = iv[r];
                }
            }
            iv.resize(w);
        };
        fold();
        const bool peaks = snapshot.kind == SnapshotKind::HighWaterMark;
        out.interval_peaks = snapshot.interval_peaks;
        while (iv.size() > options.max_interval_entries && out.interval_group < (1u << 20)) {
            out.interval_group *= 2;
            if (peaks) {
                // A group shows its highest interval's shares.
                std::vector<uint64_t> merged;
                std::vector<uint32_t> chosen = choose_peaks(out.interval_peaks, 1, merged);
                out.interval_peaks = std::move(merged);
                size_t w = 0;
                for (FlameTree::Interval x : iv)
                    if (coarsen_peak_run(chosen, x.allocated_in, x.freed_in)) iv[w++] = x;
                iv.resize(w);
            } else {
                for (auto& x : iv) {
                    x.allocated_in /= 2;
                    if (x.freed_in != IntervalAmount::k_never) x.freed_in /= 2;
                }
            }
            fold();
        }
        iv.shrink_to_fit();
    }
    return out;
}

namespace {

const char* kind_name(SnapshotKind k) {
    switch (k) {
        case SnapshotKind::HighWaterMark: return "high_water_mark";
        case SnapshotKind::Leaks: return "leaks";
        case SnapshotKind::Temporary: return "temporary";
    }
    return "high_water_mark";
}

// Metadata, threads and memory samples: the part both pages share.
void write_common(Json& j, const Snapshot& snapshot, const format::Reader& reader,
                  const HtmlOptions& options) {
    const format::Header& h = reader.header();
    j.key("kind");
    j.item(kind_name(snapshot.kind));
    j.key("meta");
    j.open('{');
    j.key("capture");
    j.item(std::string(basename_of(options.capture_path)));
    j.key("command");
    j.item(h.command_line);
    j.key("pid");
    j.item(h.pid);
    j.key("start_ms");
    j.item(h.start_time_unix_ms);
    j.key("duration_us");
    j.item(snapshot.duration_us);
    j.key("python_version");
    j.item(h.python_version);
    j.key("executable");
    j.item(h.executable);
    j.key("native");
    j.item_bool((h.flags & format::k_flag_native) != 0);
    j.key("python_allocators");
    j.item_bool((h.flags & format::k_flag_python_allocators) != 0);
    j.key("total_allocations");
    j.item(snapshot.total_allocations);
    j.key("total_bytes");
    j.item(snapshot.total_bytes);
    j.key("peak_bytes");
    j.item(snapshot.peak_bytes);
    j.key("peak_time_us");
    j.item(snapshot.peak_time_us);
    j.key("truncated");
    j.item_bool(reader.truncated());
    j.close('}');

    j.key("threads");
    j.open('[');
    for (const SnapshotThread& t : snapshot.threads) {
        j.open('[');
        j.item(t.tid);
        j.item(t.name);
        j.close(']');
    }
    j.close(']');

    j.key("memory");
    j.open('[');
    for (int series = 0; series < 3; ++series) {
        j.open('[');
        for (const MemoryPoint& m : snapshot.memory)
            j.item(series == 0 ? m.time_us : series == 1 ? m.rss : m.heap);
        j.close(']');
    }
    j.close(']');
}

std::string page(std::string_view title, std::string_view js, std::string_view css,
                 const std::string& data) {
    std::string out;
    out.reserve(data.size() + js.size() + css.size() + 1024);
    out.append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // No network, ever: everything is inline, and the policy says so to the browser too.
    out.append("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
               "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n");
    out.append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    out.append(html_escape(title));
    out.append("</title>\n<style>\n");
    out.append(css);
    out.append("\n</style>\n</head>\n<body>\n<div id=\"app\"></div>\n");
    out.append("<script type=\"application/json\" id=\"memray-data\">");
    out.append(data);
    out.append("</script>\n<script>\n");
    out.append(js);
    out.append("\n</script>\n</body>\n</html>\n");
    return out;
}

}  // namespace

std::string render_flamegraph_html(const Snapshot& snapshot, const StackResolver& resolver,
                                   const format::Reader& reader, const HtmlOptions& options) {
    FlameTree tree = build_flame_tree(snapshot, resolver, reader, options);
    Json j;
    j.open('{');
    j.key("page");
    j.item("flamegraph");
    write_common(j, snapshot, reader, options);
    j.key("split_threads");
    j.item_bool(options.split_threads);
    j.key("inverted");
    j.item_bool(options.inverted);
    j.key("temporal");
    j.item_bool(!snapshot.intervals.empty());
    j.key("merged_nodes");
    j.item(tree.merged_nodes);
    j.key("full_nodes");
    j.item(tree.full_nodes);
    j.key("frames");
    j.open('[');
    for (size_t i = 0; i < tree.frames.size(); ++i) {
        const Frame& f = tree.frames[i];
        j.open('[');
        j.item(f.function);
        j.item(f.file);
        j.item(f.line);
        j.item(tree.flags[i]);
        j.close(']');
    }
    j.close(']');
    j.key("nodes");
    j.open('[');
    for (size_t i = 0; i < tree.parent.size(); ++i) {
        j.item(tree.parent[i]);
        j.item(tree.frame[i]);
    }
    j.close(']');
    j.key("locs");
    j.open('[');
    for (const FlameTree::Loc& l : tree.locs) {
        j.item(l.node);
        j.item(l.thread);
        j.item(l.bytes);
        j.item(l.count);
    }
    j.close(']');
    j.key("interval_group");
    j.item(tree.interval_group);
    j.key("interval_peaks");
    j.open('[');
    for (uint64_t p : tree.interval_peaks) j.item(p);
    j.close(']');
    j.key("intervals");
    j.open('[');
    for (const FlameTree::Interval& iv : tree.intervals) {
        j.item(iv.loc);
        j.item(iv.allocated_in);
        j.item_int(iv.freed_in == IntervalAmount::k_never ? -1 : int64_t(iv.freed_in));
        j.item(iv.bytes);
        j.item(iv.count);
    }
    j.close(']');
    j.close('}');
    return page("memray flamegraph - " + std::string(basename_of(options.capture_path)),
                web_assets::flamegraph_js(), web_assets::flamegraph_css(), j.out);
}

std::string render_table_html(const Snapshot& snapshot, const StackResolver& resolver,
                              const format::Reader& reader, const HtmlOptions& options) {
    // Rows by (thread or all, allocator, innermost frame), as memray's table.
    std::vector<Frame> frames;
    std::unordered_map<Frame, uint32_t, FrameHash> frame_ids;
    std::unordered_map<uint32_t, uint32_t> top_of;  // reader node -> frame index
    auto top = [&](uint32_t node) {
        auto it = top_of.find(node);
        if (it != top_of.end()) return it->second;
        Frame f;
        if (!resolver.top_frame(node, f)) f = {"<unknown>", "", 0, false};
        auto [fit, fresh] = frame_ids.try_emplace(f, uint32_t(frames.size()));
        if (fresh) frames.push_back(f);
        top_of.emplace(node, fit->second);
        return fit->second;
    };
    struct Row {
        uint32_t thread, allocator, frame;
        uint64_t bytes, count;
    };
    std::vector<Row> rows;
    std::unordered_map<uint64_t, uint32_t> row_ids;
    for (const LocationAmount& la : snapshot.locations) {
        if (la.bytes == 0 && la.count == 0) continue;
        uint32_t thread = options.split_threads ? la.thread : ~0u;
        uint32_t f = top(la.node);
        uint64_t key = (uint64_t(f) << 32) ^ (uint64_t(uint8_t(la.allocator)) << 24) ^
                       (uint64_t(thread) & 0xffffff);
        auto [it, fresh] = row_ids.try_emplace(key, uint32_t(rows.size()));
        if (fresh) rows.push_back({thread, uint32_t(uint8_t(la.allocator)), f, 0, 0});
        rows[it->second].bytes += la.bytes;
        rows[it->second].count += la.count;
    }
    // A table of a million rows helps nobody and makes a huge page: keep the biggest.
    constexpr size_t k_max_rows = 100000;
    uint64_t dropped_bytes = 0, dropped_count = 0, dropped_rows = 0;
    if (rows.size() > k_max_rows) {
        std::nth_element(rows.begin(), rows.begin() + k_max_rows, rows.end(),
                         [](const Row& a, const Row& b) { return a.bytes > b.bytes; });
        for (size_t i = k_max_rows; i < rows.size(); ++i) {
            dropped_bytes += rows[i].bytes;
            dropped_count += rows[i].count;
            ++dropped_rows;
        }
        rows.resize(k_max_rows);
    }

    Json j;
    j.open('{');
    j.key("page");
    j.item("table");
    write_common(j, snapshot, reader, options);
    j.key("split_threads");
    j.item_bool(options.split_threads);
    j.key("allocators");
    j.open('[');
    for (uint32_t a = 0; a <= format::k_allocator_max; ++a) j.item(format::allocator_name(format::Allocator(a)));
    j.close(']');
    j.key("frames");
    j.open('[');
    for (const Frame& f : frames) {
        j.open('[');
        j.item(f.function);
        j.item(f.file);
        j.item(f.line);
        j.item(frame_flags(f));
        j.close(']');
    }
    j.close(']');
    j.key("rows");
    j.open('[');
    for (const Row& r : rows) {
        j.item_int(r.thread == ~0u ? -1 : int64_t(r.thread));
        j.item(r.allocator);
        j.item(r.frame);
        j.item(r.bytes);
        j.item(r.count);
    }
    j.close(']');
    j.key("dropped");
    j.open('[');
    j.item(dropped_rows);
    j.item(dropped_bytes);
    j.item(dropped_count);
    j.close(']');
    j.close('}');
    return page("memray table - " + std::string(basename_of(options.capture_path)),
                web_assets::table_js(), web_assets::table_css(), j.out);
}

}  // namespace memray::report
