#include "report/tree_report.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <vector>

#include "report/allocation_tracker.hpp"
#include "report/frame_rule.hpp"
#include "report/size_format.hpp"

namespace memray::report {

namespace {

// Chains of single-child frames with one size longer than this are shown by their ends.
constexpr size_t k_chain_max = 7;
constexpr size_t k_chain_keep = 3;  // frames kept at each end

class Printer {
  public:
    Printer(const std::vector<TreeNode>& nodes, uint64_t total, bool color)
        : m_nodes(nodes), m_total(total), m_color(color) {}

    void children(size_t parent, const std::string& prefix) {
        const std::vector<size_t>& kids = m_nodes[parent].children;
        for (size_t i = 0; i < kids.size(); ++i) {
            bool last = i + 1 == kids.size();
            subtree(kids[i], prefix, last);
        }
    }

    std::string& out() { return m_out; }

    void line(const std::string& prefix, const char* connector, const TreeNode& n, bool leaf) {
        double share = m_total ? double(n.bytes) / double(m_total) : 0.0;
        std::string amount = fmt::format("{} ({:.2f} %) {}", size_fmt(n.bytes), share * 100, n.count);
        std::string where = n.frame.file;
        if (n.frame.line > 0) where += fmt::format(":{}", n.frame.line);
        m_out += dim(prefix + connector);
        m_out += leaf ? "📄 " : "📂 ";
        m_out += paint(color_for(share), amount) + "  " + paint("\x1b[1;35m", n.frame.function);
        if (!where.empty()) m_out += "  " + paint("\x1b[36m", where);
        m_out += "\n";
    }

  private:
    void subtree(size_t id, const std::string& prefix, bool last) {
        // The single-child chain that starts here, as long as the amounts stay the same.
        std::vector<size_t> chain = {id};
        while (m_nodes[chain.back()].children.size() == 1) {
            size_t next = m_nodes[chain.back()].children[0];
            if (m_nodes[next].bytes != m_nodes[id].bytes || m_nodes[next].count != m_nodes[id].count)
                break;
            chain.push_back(next);
        }
        std::string p = prefix;
        bool is_last = last;
        auto print = [&](size_t n) {
            line(p, is_last ? "└── " : "├── ", m_nodes[n], m_nodes[n].children.empty());
            p += is_last ? "    " : "│   ";
            is_last = true;  // below the first link, each frame is its parent's only child
        };
        if (chain.size() <= k_chain_max) {
            for (size_t i = 0; i + 1 < chain.size(); ++i) print(chain[i]);
        } else {
            for (size_t i = 0; i < k_chain_keep; ++i) print(chain[i]);
            size_t hidden = chain.size() - 2 * k_chain_keep;
            m_out += dim(p + "⋮   ") + dim(fmt::format("{} more frames", hidden)) + "\n";
            for (size_t i = chain.size() - k_chain_keep; i + 1 < chain.size(); ++i) print(chain[i]);
        }
        print(chain.back());
        // `p` now ends with the indentation for the last link's children.
        children(chain.back(), p);
    }

    static const char* color_for(double share) {
        if (share > 0.6) return "\x1b[31m";
        if (share > 0.2) return "\x1b[33m";
        if (share > 0.05) return "\x1b[32m";
        return "\x1b[92m";
    }
    std::string paint(const char* code, const std::string& s) const {
        return m_color ? code + s + "\x1b[0m" : s;
    }
    std::string dim(const std::string& s) const { return paint("\x1b[2m", s); }

    const std::vector<TreeNode>& m_nodes;
    uint64_t m_total;
    bool m_color;
    std::string m_out;
};

}  // namespace

TreeStacks biggest_stacks(const Snapshot& s, const StackResolver& resolver, const TreeOptions& o) {
    // Merge threads and allocators: the tree shows where, not who.
    struct Merged {
        Amount amount;
        uint32_t thread = 0;
        bool many_threads = false;
    };
    TreeStacks out;
    std::map<uint32_t, Merged> by_node;
    for (const LocationAmount& l : s.locations) {
        auto [it, fresh] = by_node.try_emplace(l.node);
        Merged& m = it->second;
        if (fresh) m.thread = l.thread;
        m.many_threads |= m.thread != l.thread;
        m.amount.bytes += l.bytes;
        m.amount.count += l.count;
        out.total_bytes += l.bytes;
        out.total_count += l.count;
    }
    std::vector<std::pair<uint32_t, Merged>> biggest(by_node.begin(), by_node.end());
    std::stable_sort(biggest.begin(), biggest.end(), [](const auto& a, const auto& b) {
        if (a.second.amount.bytes != b.second.amount.bytes)
            return a.second.amount.bytes > b.second.amount.bytes;
        return a.second.amount.count > b.second.amount.count;
    });
    out.locations = biggest.size();
    size_t shown = std::min(o.biggest, biggest.size());
    out.stacks.reserve(shown);
    for (size_t i = 0; i < shown; ++i) {
        const auto& [node, m] = biggest[i];
        TreeStack t;
        t.frames = resolver.stack(node);
        if (t.frames.empty()) t.frames.push_back({"<unknown stack>", "", 0, false});
        std::reverse(t.frames.begin(), t.frames.end());
        for (const Frame& f : t.frames) t.flags.push_back(frame_flags(f));
        t.bytes = m.amount.bytes;
        t.count = m.amount.count;
        t.thread = m.thread;
        t.many_threads = m.many_threads;
        out.stacks.push_back(std::move(t));
    }
    out.threads = s.threads;

    out.title = o.title;
    if (out.title.empty()) {
        switch (s.kind) {
            case SnapshotKind::HighWaterMark:
                out.title = fmt::format("Allocations alive at the high-water mark ({} at {:.3f} s)",
                                        size_fmt(s.peak_bytes), double(s.peak_time_us) / 1e6);
                break;
            case SnapshotKind::Leaks:
                out.title = "Allocations alive when tracking stopped (leaks)";
                break;
            case SnapshotKind::Temporary: out.title = "Temporary allocations"; break;
        }
    }
    return out;
}

std::vector<TreeNode> build_tree(const TreeStacks& stacks, uint32_t hide, uint32_t cut) {
    std::vector<TreeNode> nodes(1);
    std::map<std::tuple<size_t, std::string, std::string, uint32_t>, size_t> child_of;
    auto add = [](TreeNode& n, const TreeStack& t, bool first) {
        if (first) n.thread = t.thread;
        n.many_threads |= t.many_threads || n.thread != t.thread;
        n.bytes += t.bytes;
        n.count += t.count;
    };
    for (const TreeStack& t : stacks.stacks) {
        size_t at = 0;
        add(nodes[0], t, &t == &stacks.stacks.front());
        for (size_t i = 0; i < t.frames.size(); ++i) {
            if (t.flags[i] & cut) break;
            if (t.flags[i] & hide) continue;
            const Frame& f = t.frames[i];
            auto [it, fresh] =
                child_of.emplace(std::make_tuple(at, f.function, f.file, f.line), nodes.size());
            if (fresh) {
                TreeNode n;
                n.frame = f;
                n.flags = t.flags[i];
                n.parent = at;
                nodes.push_back(std::move(n));
                nodes[at].children.push_back(it->second);
            }
            at = it->second;
            add(nodes[at], t, fresh);
        }
    }
    for (TreeNode& n : nodes) {
        std::stable_sort(n.children.begin(), n.children.end(), [&](size_t a, size_t b) {
            const TreeNode& x = nodes[a];
            const TreeNode& y = nodes[b];
            if (x.bytes != y.bytes) return x.bytes > y.bytes;
            if (x.count != y.count) return x.count > y.count;
            return std::tie(x.frame.function, x.frame.file, x.frame.line) <
                   std::tie(y.frame.function, y.frame.file, y.frame.line);
        });
    }
    return nodes;
}

std::string render_tree(const Snapshot& s, const StackResolver& resolver, const TreeOptions& o) {
    TreeStacks stacks = biggest_stacks(s, resolver, o);
    // CPython's internals, hidden as the flame graph hides them by default: their memory counts
    // for the nearest visible caller.
    std::vector<TreeNode> nodes = build_tree(stacks, k_frame_irrelevant, 0);
    uint64_t total = stacks.total_bytes, count = stacks.total_count;
    size_t shown = stacks.stacks.size(), all = stacks.locations;

    Printer p(nodes, total, o.color);
    std::string& out = p.out();
    out += stacks.title + "\n\n";
    out += fmt::format("📂 {} (100.00 %) {} allocations", size_fmt(total), count);
    if (shown < all) out += fmt::format("  (the {} biggest of {} locations)", shown, all);
    out += "\n";
    p.children(0, "");
    if (shown < all) {
        uint64_t rest_bytes = total - nodes[0].bytes, rest_count = count - nodes[0].count;
        out += fmt::format("\n{} smaller locations not shown: {} in {} allocations\n", all - shown,
                           size_fmt(rest_bytes), rest_count);
    }
    if (all == 0) out += "\nNo allocations in this view.\n";
    return out;
}

}  // namespace memray::report
