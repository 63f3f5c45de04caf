// `memray tree`: the biggest allocation paths of a snapshot as a static terminal tree (when
// stdout is not a terminal; on one, src/tui/tree_view.hpp shows the same tree interactively).
//
//   📂 12.345MB (100.00 %) 3000 allocations  high-water mark
//   └── 📂 12.345MB (100.00 %) 3000  main  app.py:3
//       ├── 📄 10.000MB (81.00 %) 10  build  app.py:20
//       └── 📄 2.345MB (19.00 %) 2990  parse  app.py:15
//
// Only the `biggest` locations (stacks, threads and allocators merged) by size are shown;
// siblings with the same frame merge, children are sorted by size. A chain of more than a few
// single-child frames with the same size prints its first and last frames around one
// "⋮ N frames" line. CPython's internal frames (frame_rule.hpp) are left out, as the flame graph
// leaves them out by default; their memory counts for the nearest visible caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"

namespace memray::report {

struct TreeOptions {
    size_t biggest = 200;  // -b/--biggest-allocs
    bool color = false;    // ANSI colours (stdout is a terminal)
    std::string title;     // first line; empty = named after the snapshot's kind
};

std::string render_tree(const Snapshot& s, const StackResolver& resolver, const TreeOptions& o);

// What the tree is made of, shared by the static tree and the interactive one (src/tui).
struct TreeStack {
    std::vector<Frame> frames;  // outermost first
    std::vector<uint32_t> flags;  // frame_flags() of each frame
    uint64_t bytes = 0;
    uint64_t count = 0;
    uint32_t thread = 0;        // index into TreeStacks::threads (the first one seen)
    bool many_threads = false;  // allocated on more than one thread
};

struct TreeStacks {
    std::vector<TreeStack> stacks;  // the `biggest` locations, biggest first
    uint64_t total_bytes = 0;       // of every location, shown or not
    uint64_t total_count = 0;
    size_t locations = 0;  // every location (stacks.size() of them are shown)
    std::vector<SnapshotThread> threads;
    std::string title;  // TreeOptions::title or named after the snapshot's kind
};

TreeStacks biggest_stacks(const Snapshot& s, const StackResolver& resolver, const TreeOptions& o);

struct TreeNode {
    Frame frame;         // the root's is empty
    uint32_t flags = 0;  // frame_flags(frame)
    uint64_t bytes = 0;
    uint64_t count = 0;
    size_t parent = 0;             // the root is its own parent
    std::vector<size_t> children;  // biggest first (then most allocations, then by frame)
    uint32_t thread = 0;
    bool many_threads = false;
};

// The call tree, node 0 its root. Frames with a flag in `hide` are left out: their memory counts
// for the nearest visible caller, and equal frames below them merge. A stack stops at its first
// frame with a flag in `cut`: that frame and its callees are left out, their memory still counts
// for the callers (as memray's tree hides the import system).
std::vector<TreeNode> build_tree(const TreeStacks& stacks, uint32_t hide, uint32_t cut);

}  // namespace memray::report
