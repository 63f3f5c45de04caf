// `memray tree`: the biggest allocation paths of a snapshot as a static terminal tree.
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
#include <string>

#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"

namespace memray::report {

struct TreeOptions {
    size_t biggest = 200;  // -b/--biggest-allocs
    bool color = false;    // ANSI colours (stdout is a terminal)
    std::string title;     // first line; empty = named after the snapshot's kind
};

std::string render_tree(const Snapshot& s, const StackResolver& resolver, const TreeOptions& o);

}  // namespace memray::report
