// The writer thread (docs/architecture.md, "Writer thread"): drains the per-thread rings and the
// metadata channel, merges events by time, encodes them into blocks and writes them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memray::payload {

class Sink;

struct WriterOptions {
    Sink* sink = nullptr;    // where the capture goes; writer_finish() finishes it
    bool compress = true;
    uint32_t flags = 0;      // format::HeaderFlag bits
    const char* command_line = "";
    const char* python_version = "";
    const char* executable = "";
    const char* python_allocator = "";
    uint64_t pid = 0;
    uint64_t start_ns = 0;         // now_ns() at start: event times are stored relative to it
    uint64_t start_unix_ms = 0;
};

// Writes the file header, then starts the writer thread (which emits the loaded objects first).
// Returns 0, or a negative errno with a message in `err`; on failure no thread runs and the sink
// is left to the caller.
int writer_start(const WriterOptions& options, char* err, size_t err_len) noexcept;
// Call once tracking is off and no thread is inside the tracker: final drain, trailer (unless a
// write error happened), join, finish the sink.
void writer_finish() noexcept;
// True once a write error stopped tracking.
bool writer_failed() noexcept;
// True between writer_start() and writer_finish().
bool writer_running() noexcept;
// In a forked child: the writer thread does not exist there; forget it and let the sink drop the
// child's copy of the output without writing anything.
void writer_after_fork_child() noexcept;
// Wakes the writer soon: no call while it paces itself (declared in thread_state.hpp for the
// hot path too). writer_wake_now(): at once, also then.
void writer_wake() noexcept;
void writer_wake_now() noexcept;

}  // namespace memray::payload
