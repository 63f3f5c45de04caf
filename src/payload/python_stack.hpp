// Python frames of the *current* thread, read directly from the interpreter's frame chain
// (no profile function, no GIL, no libpython link). See docs/architecture.md for why.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memray::payload {

struct PyFrameRef {
    const void* code;  // PyCodeObject*
    uint32_t offset;   // byte offset of the current instruction, as PyCode_Addr2Line expects
    bool entry;        // first frame of its eval-loop call (format/records.hpp, Node)
    uint64_t fingerprint = 0;  // python_code_fingerprint(code), read by the walk
};

// Detects a CPython 3.8-3.13 in this process (symbols looked up at runtime) and selects the
// struct offsets for its version. Cold path; may allocate. Returns false when the process is not
// a supported Python interpreter (then python_walk() always returns 0).
bool python_init() noexcept;
// "3.11.7" or "" when not Python.
const char* python_version_string() noexcept;
// The interpreter's own name for its memory allocator ("pymalloc", "pymalloc_debug", "malloc",
// "mimalloc", ...; see PYTHONMALLOC), or "" when not Python, not initialized yet (PYTHONMALLOC
// not applied) or it cannot say (e.g. hooks of another tool replaced the allocators). Cold path:
// looks the function up each call.
const char* python_allocator_name() noexcept;
// Line-table format id stored in Code records: 0xMMmm (e.g. 0x030b for 3.11).
uint32_t python_line_format() noexcept;

// Walks the calling thread's frames, innermost first, into `out`. Hot path: no allocation, no
// locks, no Python API that needs the GIL. Returns the number of frames written (at most `max`;
// the outermost frames are dropped when the stack is deeper). With `stop_at_root`, the walk ends
// before a frame running the code given to python_set_root(), and sets `*at_root` (when given)
// if it did.
size_t python_walk(PyFrameRef* out, size_t max, bool stop_at_root,
                   bool* at_root = nullptr) noexcept;

// The code object of the `memray run` bootstrap's function that runs the program
// (memray_payload_python_root): its frame and the launcher's frames outside it are in every
// stack of the program and every report drops them, so the walk need not read them.
void python_set_root(const void* code) noexcept;

// A cheap fingerprint of a code object (pointers of its name/filename/line table, first line) used
// to notice that a cached code object pointer was freed and reused for another code object.
// python_walk() fills in each frame's (PyFrameRef::fingerprint) without a call per frame.
uint64_t python_code_fingerprint(const void* code) noexcept;

struct PyCodeDetails {
    char function[256];  // co_qualname (3.11+) or co_name, UTF-8, truncated
    char file[1024];     // co_filename, UTF-8, truncated
    uint32_t first_line;
    const uint8_t* line_table;  // co_lnotab (3.8-3.9) / co_linetable (3.10+), points into the object
    size_t line_table_len;
};
// Cold path (first sight of a code object): copies what Code records need. Returns false if the
// object does not look like a code object.
bool python_code_details(const void* code, PyCodeDetails& out) noexcept;

}  // namespace memray::payload
