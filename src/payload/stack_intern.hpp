// The global stack tree of one capture. A node is (parent node, frame); a frame is a Python
// (code id, instruction offset) or a native return address. Ids are sequential from 1 (0 = root).
//
// Lookups are lock-free (open addressing in mmap'd memory). Creating a node or a code id takes
// one spinlock, which also appends the Node/Code record to the metadata channel: a thread that
// sees a node id can rely on its record being queued already, so the writer, which drains the
// rings before the channel, always has the nodes its events name.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/records.hpp"

namespace memray::payload {

struct StackFrame {
    uint64_t value;        // python: PyCodeObject*; native: return address
    uint64_t fingerprint;  // python: python_code_fingerprint(code); native: 0
    uint32_t offset;       // python: instruction byte offset; native: 0
    uint32_t kind;         // format::FrameKind
};

inline constexpr size_t k_max_stack_frames = 256;

// The calling thread's previous stack and its node ids, outermost first. A new stack only interns
// the frames after the part it shares with the previous one.
struct PrefixCache {
    uint32_t session = 0;
    uint32_t len = 0;
    StackFrame frames[k_max_stack_frames];
    uint32_t nodes[k_max_stack_frames];
    // Below the shared prefix, the thread's recently used (parent, frame) -> node edges, looked
    // up before the shared table: with --native the innermost native frames (the allocation's
    // call site) change from event to event, and every Python frame after them used to be
    // looked up in the shared tables again (perf: a fifth of the run). Direct-mapped; emptied
    // with the rest when the session changes (node ids are per session).
    struct Edge {
        StackFrame frame;
        uint32_t parent;
        uint32_t child;  // 0: empty
    };
    // A power of two. 1024 (32 KiB a thread): PYTHONMALLOC=malloc --native ran 2.6% faster
    // than with 256; 4096 gained nothing more.
    static constexpr size_t k_edges = 1024;
    static_assert((k_edges & (k_edges - 1)) == 0, "edge_slot() takes the hash's top bits");
    Edge edges[k_edges] = {};
};

// Maps the tables once. Cold path; returns false when memory cannot be mapped.
bool intern_init() noexcept;
// Forgets every node and code and empties the channel. No thread may be interning meanwhile.
void intern_reset() noexcept;
// Fork handlers (api.cpp): the lock is held across fork(), so the child's tables and channel are
// never caught half-written; the child resets the lock (its holder, the forking thread, has a new
// identity there and a spinlock has no owner to check anyway).
void intern_lock_for_fork() noexcept;
void intern_unlock_after_fork_parent() noexcept;
void intern_after_fork_child() noexcept;

// Interns `frames[0..n)` (outermost first) below the root and returns the innermost node id,
// 0 for an empty stack or when the tree is full. `cache` is the calling thread's own. `known`:
// the caller knows frames[0..known) equal the cache's (known <= cache.len, same session); they
// are neither read nor compared, so the caller need not even fill them in.
uint32_t intern_stack(PrefixCache& cache, uint32_t session, const StackFrame* frames,
                      size_t n, size_t known = 0) noexcept;
// Lower level, for tests: node id of (parent, frame); Python frames get their code interned.
uint32_t intern_frame(uint32_t parent, const StackFrame& frame) noexcept;
uint32_t intern_code(const void* code, uint64_t fingerprint) noexcept;

uint32_t intern_node_count() noexcept;
uint32_t intern_code_count() noexcept;

// Metadata channel (writer side). Items, in the order they were created:
enum class MetaKind : uint8_t { Node = 1, Code = 2 };
struct MetaNode {
    uint32_t id;
    uint32_t parent;
    format::FrameKind kind;
    uint32_t code_id;  // python
    uint32_t offset;   // python
    uint64_t ip;       // native
};
struct MetaView {
    const uint8_t* data;
    size_t len;
};
// Bytes committed and not yet consumed. Stable until metadata_consume().
MetaView metadata_peek() noexcept;
void metadata_consume(size_t len) noexcept;
// Parses one item at `p` (within `end`); returns the next position or nullptr at the end.
// For Code items `code_record`/`code_len` get the complete encoded Code record.
const uint8_t* metadata_next(const uint8_t* p, const uint8_t* end, MetaKind& kind, MetaNode& node,
                             const uint8_t*& code_record, size_t& code_len) noexcept;

}  // namespace memray::payload
