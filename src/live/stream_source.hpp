// live::Source over the live stream (docs/live.md): connects to a tracked process on
// 127.0.0.1:PORT (retrying while the port is not open yet), greets it, and decodes the capture
// stream with format::Reader on a thread of its own, folding it into a LiveModel. The view (or
// the Python SocketReader) only polls.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "format/reader.hpp"
#include "live/live_model.hpp"
#include "live/source.hpp"
#include "report/snapshot.hpp"

namespace memray::live {

struct StreamOptions {
    int port = 0;
    // Give up connecting after this long (Status::Failed); 0: retry until close().
    int connect_timeout_ms = 0;
    std::string program_output;  // Header::program_output (run --live)
    // Called once by close(), before the connection is dropped, while the stream is still read
    // (attach: stop tracking as `memray detach` does, so the trailer can arrive).
    std::function<void()> on_close;
    report::Symbolizer* symbolizer = nullptr;  // null: native frames as module+0xoffset
};

class StreamSource final : public Source {
  public:
    explicit StreamSource(StreamOptions options);
    ~StreamSource() override;
    StreamSource(const StreamSource&) = delete;
    StreamSource& operator=(const StreamSource&) = delete;

    bool poll(int timeout_ms) override;
    const Header& header() const override { return m_shown; }
    std::vector<Row> rows(uint32_t thread_index, bool hide_internal) override;
    void write_flamegraph(const std::string& path) override;
    void close() override;

    // For the Python SocketReader: the capture's header once it arrived (false before), and
    // what is alive now per (stack node, thread) with a resolver for its stacks, under a lock
    // held while `use` runs.
    bool capture_header(format::Header& out) const;
    void with_snapshot(const std::function<void(const report::Snapshot&, const report::StackResolver&,
                                                const format::Reader&)>& use);

  private:
    void run() noexcept;
    bool connect_and_greet();  // sets m_fd
    void read_stream();
    void finish_stream(bool trailer);
    void fail(const std::string& text);
    void publish();  // under m_lock: header fields from the model, then wake poll()
    // The FILE* the reader reads: unwraps the transport chunks (format/live_protocol.hpp),
    // releasing m_lock while it waits for the socket.
    static ssize_t cookie_read(void* self, char* buf, size_t size);
    ssize_t read_capture_bytes(char* buf, size_t size);
    bool recv_exact(uint8_t* out, size_t n);

    StreamOptions m_options;
    std::string m_name;  // "127.0.0.1:PORT"
    mutable std::mutex m_lock;
    std::condition_variable m_changed;
    std::unique_lock<std::mutex>* m_reader_lock = nullptr;  // held by the reading thread
    uint64_t m_generation = 0, m_seen_generation = 0;
    Header m_header;  // under m_lock
    Header m_shown;   // the copy header() returns, refreshed by poll()
    LiveModel m_model;
    std::unique_ptr<format::Reader> m_reader;
    int m_fd = -1;
    int m_wake[2] = {-1, -1};  // close() writes here to stop waits on the socket
    bool m_stop = false;
    bool m_closed = false;
    uint32_t m_chunk_left = 0;  // capture bytes left in the current chunk
    std::atomic<uint64_t> m_dropped{0};
    std::string m_protocol_error;
    std::thread m_thread;
};

}  // namespace memray::live
