// Turns stack node ids into frames {function, file, line}, innermost first.
//
// Python frames come from Node records of kind python (line from the Code record's line table).
// Frames whose file is "<memray>" belong to the `memray run` bootstrap and are dropped. Native
// frames are named `module+0xoffset` from the loaded-object records until symbolisation lands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/reader.hpp"

namespace memray::report {

struct Frame {
    std::string function;
    std::string file;
    uint32_t line = 0;
    bool native = false;
    bool operator==(const Frame&) const = default;
};

class StackResolver {
  public:
    // Reads the reader's interning tables as they are when it is called (normally after the
    // whole capture was read). The reader must outlive the resolver.
    explicit StackResolver(const format::Reader& reader);

    // The frame of one node. Unknown ids give a "???" frame.
    Frame frame(uint32_t node) const;

    // Frames of the stack ending at `node`, innermost first, bootstrap frames dropped. Python
    // frames only when the stack has any (hybrid stacks come with symbolisation); otherwise the
    // native frames. Empty for node 0.
    std::vector<Frame> stack(uint32_t node) const;

    // The innermost frame of stack(node); false for an empty stack.
    bool top_frame(uint32_t node, Frame& out) const;

    // Path of the object that holds a native address, nullptr when none does.
    const std::string* object_path(uint64_t ip) const;
    // True for a python frame of the `memray run` bootstrap.
    bool is_bootstrap(uint32_t node) const;

  private:
    struct Range {
        uint64_t start, end;
        uint32_t object;
    };
    const format::Reader& m_reader;
    std::vector<Range> m_ranges;  // sorted by start
};

}  // namespace memray::report
