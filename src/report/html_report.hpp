// The HTML reports: `memray flamegraph` and `memray table`.
//
// One self-contained page each: the bundled JavaScript and CSS (web/, embedded at build time)
// and the report's data as compact JSON in a <script type="application/json"> element. The page
// builds every view (threads, inverted, hidden frames, --temporal windows) from that data, so
// the JSON is a frame table plus a call tree of indices, not a tree of strings:
//
//   frames: [[function, file, line, flags], ...]      flags: k_frame_* below
//   nodes:  [parent, frame, parent, frame, ...]        node 0 is the root; parents come first
//   locs:   [node, thread, bytes, count, ...]          amounts of this view per (node, thread)
//   intervals (--temporal): [loc, allocated_in, freed_in (-1 = never), bytes, count, ...]
//                           read as snapshot.hpp's IntervalAmount says for the view (kind)
//   interval_peaks (--temporal high-water mark): the heap's highest value per interval
//
// Big captures stay small: call-tree nodes whose total is below a small share of the whole (or
// beyond a node budget) are merged into one "<other>" child of their nearest kept ancestor.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "format/reader.hpp"
#include "report/frame_rule.hpp"  // frame_flags: the page hides frames by it
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"

namespace memray::report {

struct HtmlOptions {
    bool split_threads = false;  // threads as the first level of the flame graph
    bool inverted = false;       // start with the inverted view (callees at the root)
    // Nodes whose total is below this share of the root's are merged into "<other>".
    double merge_share = 0.00001;
    // At most about this many call-tree nodes are kept (the smallest go to "<other>").
    size_t max_nodes = 40000;
    // --temporal: at most about this many interval entries; more are merged by coarsening the
    // intervals (consecutive memory samples grouped) so the page stays small.
    size_t max_interval_entries = 250000;
    std::string capture_path;   // shown in the page title
    std::string reporter_name;  // "flamegraph" or "table"
};

// The call tree of a Snapshot, ready for the page (exposed for the unit tests).
struct FlameTree {
    static constexpr uint32_t k_other_frame = 1;  // frames[1] is "<other>", frames[0] the root
    std::vector<Frame> frames;
    std::vector<uint32_t> flags;  // per frame
    std::vector<uint32_t> parent;  // per node; parent[0] == 0 for the root
    std::vector<uint32_t> frame;   // per node
    struct Loc {
        uint32_t node, thread;
        uint64_t bytes, count;
    };
    std::vector<Loc> locs;
    struct Interval {
        uint32_t loc, allocated_in, freed_in;  // freed_in == IntervalAmount::k_never: alive
        uint64_t bytes, count;
    };
    std::vector<Interval> intervals;
    std::vector<uint64_t> interval_peaks;  // high-water-mark view: per (grouped) interval
    uint32_t interval_group = 1;  // memory samples per interval after coarsening
    uint64_t merged_nodes = 0;    // call-tree nodes folded into "<other>"
    uint64_t full_nodes = 0;      // call-tree nodes before merging
};

FlameTree build_flame_tree(const Snapshot& snapshot, const StackResolver& resolver,
                           const format::Reader& reader, const HtmlOptions& options);

// Complete pages (UTF-8 HTML).
std::string render_flamegraph_html(const Snapshot& snapshot, const StackResolver& resolver,
                                   const format::Reader& reader, const HtmlOptions& options);
std::string render_table_html(const Snapshot& snapshot, const StackResolver& resolver,
                              const format::Reader& reader, const HtmlOptions& options);

// A JSON string literal that is safe inside <script type="application/json">: `<`, `>`, `&`,
// U+2028 and U+2029 as \u escapes, invalid UTF-8 replaced by U+FFFD.
void append_json_string(std::string& out, std::string_view s);
// Text for an HTML element or attribute value.
std::string html_escape(std::string_view s);

}  // namespace memray::report
