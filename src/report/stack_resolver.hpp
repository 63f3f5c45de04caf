// Turns stack node ids into frames {function, file, line}, innermost first.
//
// Python frames come from Node records of kind python (line from the Code record's line table).
// Frames whose file is "<memray>" belong to the `memray run` bootstrap; they and everything
// outside them are dropped. In a capture written by `memray.Tracker`, the frames above the
// `with` statement (the with-frame's callers) are dropped too, as memray never records them: the
// Tracker marks them with one allocation made right after tracking starts, from a function
// compiled under the file name "<memray>" and named k_root_marker, called by Tracker.__enter__,
// called by the with-frame. That allocation's Python stack is [marker, __enter__, with-frame,
// callers...]. A stack whose outermost Python frames are exactly those callers loses them and,
// in a hybrid stack, every native frame outside the outermost kept Python frame (the whole
// stack when no Python frame is kept). docs/python-api.md describes the convention.
// Native frames are symbolised through a Symbolizer (inlined frames become frames of their own)
// or named `module+0xoffset`.
//
// Hybrid stacks (a stack with both kinds): the native frames are the real call chain, and each
// native frame of the interpreter's eval loop (_PyEval_EvalFrameDefault) is replaced by the
// Python frames it was running: the innermost eval frame by the Python frames up to and
// including the innermost entry frame (format/records.hpp, Node), and so on outwards. Python
// frames left over (no eval frame recognised, e.g. unsymbolisable) go to the outer end.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "format/reader.hpp"
#include "report/symbolizer.hpp"

namespace memray::report {

// Function name of the Tracker's root marker (python/memray/_tracker.py defines it).
inline constexpr const char* k_root_marker = "_memray_tracker_root";

struct Frame {
    std::string function;
    std::string file;
    uint32_t line = 0;
    bool native = false;
    std::string object = {};  // native: path of the object holding the address ("" = none)
    bool operator==(const Frame&) const = default;
};

struct FrameHash {
    size_t operator()(const Frame& f) const;
};

class StackResolver {
  public:
    // Reads the reader's interning tables as they are when it is called (normally after the
    // whole capture was read). The reader (and the symbolizer, when given) must outlive the
    // resolver. Without a symbolizer native frames are `module+0xoffset` and hybrid stacks
    // cannot find the eval loop (Python frames then sit outside all native frames).
    explicit StackResolver(const format::Reader& reader, Symbolizer* symbolizer = nullptr);

    // Frames of the stack ending at `node`, innermost first. Empty for node 0.
    std::vector<Frame> stack(uint32_t node) const;
    // The same as ids into frame_at() (equal frames have equal ids). `out` is replaced.
    void stack_ids(uint32_t node, std::vector<uint32_t>& out) const;
    const Frame& frame_at(uint32_t id) const { return m_frames[id]; }

    // The innermost frame of stack(node); false for an empty stack.
    bool top_frame(uint32_t node, Frame& out) const;
    // The innermost frame of one node alone (a native node may stand for several frames).
    Frame frame(uint32_t node) const;

    // True when the capture has native frames (stacks may be hybrid).
    bool has_native() const { return m_has_native; }
    // Path of the object that holds a native address, nullptr when none does.
    const std::string* object_path(uint64_t ip) const;
    // True for a python frame of the `memray run` bootstrap.
    bool is_bootstrap(uint32_t node) const;
    // True when the capture has a Tracker's root marker with callers above the `with`: stacks
    // may then lose outer frames, so walking the nodes does not give what stack() gives.
    bool hides_tracker_callers() const { return !m_hidden.empty(); }

  private:
    struct Range {
        uint64_t start, end;
        uint32_t object;  // index in reader.all_objects()
    };
    struct NodeFrames {
        uint32_t first = 0;  // into m_node_frames
        uint16_t count = 0;
        bool done = false;
        bool eval = false;  // native frame of the interpreter's eval loop
    };

    const Range* range_of(uint64_t ip) const;
    uint32_t intern(Frame f) const;
    const NodeFrames& node_frames(uint32_t node) const;
    void find_tracker_root();
    // stack_ids() before the Tracker's callers are dropped.
    void all_stack_ids(uint32_t node, std::vector<uint32_t>& out) const;
    void drop_tracker_callers(std::vector<uint32_t>& ids) const;

    const format::Reader& m_reader;
    Symbolizer* m_symbolizer;
    std::vector<Range> m_ranges;  // sorted by start
    bool m_has_native = false;
    // Frame ids of the callers above the Tracker's `with`, innermost first (empty: none).
    std::vector<uint32_t> m_hidden;

    // Caches, filled as stacks are asked for.
    mutable std::vector<Frame> m_frames;
    mutable std::unordered_map<Frame, uint32_t, FrameHash> m_frame_ids;
    mutable std::vector<NodeFrames> m_node_info;
    mutable std::vector<uint32_t> m_node_frames;
    mutable std::unordered_map<uint64_t, uint32_t> m_code_lines;  // (code, line) -> frame id
    mutable std::vector<uint32_t> m_python, m_native;            // scratch
};

}  // namespace memray::report
