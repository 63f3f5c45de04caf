// The contract between the live stream (src/live: a socket reader and the model that folds the
// record stream into "what is alive now, per location") and the terminal view (src/tui) that
// shows it. The view only polls a Source; it knows nothing of sockets, records or symbolization,
// so it can be driven by a test double and the stream can be read without a terminal (the
// Python SocketReader).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace memray::live {

// One line of memray's live table: a location, (function, file) of a frame as in memray, and
// the live allocations below it. "Own" counts allocations whose innermost shown frame is this
// location; "total" counts every allocation whose stack contains it (once per stack, however
// often the location repeats in it). The lines of a function are one row.
struct Row {
    std::string function;  // Python function, native symbol, or "0x..." when not symbolized
    std::string file;      // source file, or the native module when there is no line
    uint32_t line = 0;     // of the first frame seen at this location; 0 when unknown
    uint64_t total_bytes = 0;
    uint64_t own_bytes = 0;
    uint64_t total_allocations = 0;
    uint64_t own_allocations = 0;
};

struct Thread {
    uint32_t index = 0;  // the capture's thread index (from 1)
    uint64_t tid = 0;    // OS thread id
    std::string name;    // "" when the thread has no name
};

struct HeapPoint {
    uint64_t time_ms = 0;  // since tracking started
    uint64_t heap_bytes = 0;
    uint64_t rss_bytes = 0;
};

enum class Status {
    Waiting,       // no data yet (connecting, or waiting for the header)
    Running,       // data arriving
    Exited,        // the tracked process ended tracking (exited or detached); data is final
    Disconnected,  // the connection dropped without an end of stream
    Failed,        // the stream was not ours or was corrupt; status_text says why
};

struct Header {
    int pid = 0;
    std::string command_line;
    bool native = false;              // native frames recorded
    std::vector<Thread> threads;      // in order of first appearance
    uint64_t samples = 0;             // memory samples received
    uint64_t duration_ms = 0;         // since tracking started
    uint64_t heap_bytes = 0;          // alive now
    uint64_t peak_heap_bytes = 0;
    uint64_t rss_bytes = 0;           // last memory sample
    std::vector<HeapPoint> history;   // for the header's graph; the source may thin old points
    uint64_t dropped_blocks = 0;      // blocks the target dropped because the viewer was slow
    Status status = Status::Waiting;
    std::string status_text;          // e.g. "process exited", or the error
    std::string program_output;       // run --live: file holding the program's stdout/stderr
};

class Source {
  public:
    virtual ~Source() = default;
    // Reads what arrived, waiting at most timeout_ms; true when header() or rows() changed.
    // Never throws for stream problems: they become Status::Disconnected/Failed.
    virtual bool poll(int timeout_ms) = 0;
    virtual const Header& header() const = 0;
    // Live allocations now, one Row per location, unsorted. thread_index 0 = all threads merged.
    // hide_internal: with native frames, CPython-internal frames are skipped as in the flame graph.
    virtual std::vector<Row> rows(uint32_t thread_index, bool hide_internal) = 0;
    // Writes what is alive now as a flame graph HTML page (same reporter as `memray flamegraph`).
    // Throws std::runtime_error with a one-line message on failure.
    virtual void write_flamegraph(const std::string& path) = 0;
    // Ends the session (attach: stop tracking and restore the process as `memray detach` does).
    // Idempotent; called on every exit path of the view.
    virtual void close() = 0;
};

}  // namespace memray::live
