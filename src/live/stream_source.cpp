#include "live/stream_source.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "format/live_protocol.hpp"
#include "report/html_report.hpp"
#include "report/output_path.hpp"

namespace memray::live {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int k_retry_ms = 100;         // connecting: how often to try a port not open yet
constexpr int k_greeting_ms = 5000;     // a tracked process answers the hello at once
constexpr int k_exit_settle_ms = 1000;  // how long a process that closed the stream may take to die

std::string printable(const uint8_t* p, size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i) {
        if (p[i] >= 0x20 && p[i] < 0x7f) out.push_back(char(p[i]));
        else out += "\\x" + std::string(1, "0123456789abcdef"[p[i] >> 4]) + "0123456789abcdef"[p[i] & 15];
    }
    return out;
}

// True once `pid` is gone or a zombie; waits a moment for a process whose stream just ended.
bool process_ended(uint64_t pid) {
    if (pid == 0) return false;
    auto until = Clock::now() + std::chrono::milliseconds(k_exit_settle_ms);
    for (;;) {
        std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
        std::string line;
        if (!stat || !std::getline(stat, line)) return true;
        size_t paren = line.rfind(')');
        if (paren != std::string::npos && paren + 2 < line.size() &&
            (line[paren + 2] == 'Z' || line[paren + 2] == 'X'))
            return true;
        if (Clock::now() >= until) return false;
        // Polling /proc is the only way to see another process's state change.
        ::usleep(10 * 1000);
    }
}

}  // namespace

StreamSource::StreamSource(StreamOptions options)
    : m_options(std::move(options)),
      m_name("127.0.0.1:" + std::to_string(m_options.port)),
      m_model(m_options.symbolizer) {
    if (::pipe2(m_wake, O_CLOEXEC | O_NONBLOCK) != 0)
        throw std::runtime_error(std::string("cannot create a pipe: ") + std::strerror(errno));
    m_header.program_output = m_options.program_output;
    m_header.status_text = "connecting to " + m_name;
    m_shown = m_header;
    m_thread = std::thread([this] { run(); });
}

StreamSource::~StreamSource() {
    close();
    ::close(m_wake[0]);
    ::close(m_wake[1]);
}

void StreamSource::close() {
    if (m_closed) return;
    m_closed = true;
    // First the session's end (attach: detach), while the thread still reads what it sends.
    if (m_options.on_close) {
        try {
            m_options.on_close();
        } catch (...) {
            // The caller reports its own failure; the view must still be able to end.
        }
    }
    {
        std::lock_guard<std::mutex> g(m_lock);
        m_stop = true;
    }
    char byte = 1;
    (void)!::write(m_wake[1], &byte, 1);
    if (m_thread.joinable()) m_thread.join();
}

bool StreamSource::connect_and_greet() {
    auto start = Clock::now();
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(m_options.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = -1;
    for (;;) {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fail(std::string("cannot create a socket: ") + std::strerror(errno));
            return false;
        }
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
        int e = errno;
        ::close(fd);
        fd = -1;
        if (e != ECONNREFUSED && e != EINTR) {
            fail("cannot connect to " + m_name + ": " + std::strerror(e));
            return false;
        }
        if (m_options.connect_timeout_ms > 0 &&
            Clock::now() - start > std::chrono::milliseconds(m_options.connect_timeout_ms)) {
            fail("nothing listens on " + m_name + " (gave up after " +
                 std::to_string(m_options.connect_timeout_ms / 1000) + " s)");
            return false;
        }
        // Not open yet: wait for the next try, or for close().
        pollfd p{m_wake[0], POLLIN, 0};
        if (::poll(&p, 1, k_retry_ms) > 0) return false;
    }
    m_fd = fd;
    if (::send(fd, format::k_live_hello, format::k_live_hello_len, MSG_NOSIGNAL) !=
        ssize_t(format::k_live_hello_len)) {
        fail("cannot greet " + m_name + ": " + std::strerror(errno));
        return false;
    }
    uint8_t hello[format::k_live_hello_len];
    size_t got = 0;
    auto deadline = Clock::now() + std::chrono::milliseconds(k_greeting_ms);
    while (got < sizeof hello) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            fail(m_name + " did not answer as a memray live stream within " +
                 std::to_string(k_greeting_ms / 1000) + " s");
            return false;
        }
        pollfd p[2] = {{fd, POLLIN, 0}, {m_wake[0], POLLIN, 0}};
        int n = ::poll(p, 2, int(left.count()));
        if (n < 0 && errno == EINTR) continue;
        if (p[1].revents) return false;
        if (n <= 0) continue;
        ssize_t r = ::recv(fd, hello + got, sizeof hello - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += size_t(r);
    }
    if (got == sizeof hello && std::memcmp(hello, format::k_live_hello, sizeof hello) == 0)
        return true;
    if (got >= format::k_live_hello_prefix_len &&
        std::memcmp(hello, format::k_live_hello, format::k_live_hello_prefix_len) == 0) {
        fail(m_name + " speaks another version of the memray live protocol ('" +
             printable(hello, got) + "'; this memray speaks '" +
             printable(reinterpret_cast<const uint8_t*>(format::k_live_hello),
                       format::k_live_hello_len) + "')");
    } else if (got == 0) {
        fail(m_name + " closed the connection without answering: not a memray live stream, or "
             "another viewer is connected");
    } else {
        fail(m_name + " is not a memray live stream (it sent '" + printable(hello, got) + "')");
    }
    return false;
}

bool StreamSource::recv_exact(uint8_t* out, size_t n) {
    size_t got = 0;
    while (got < n) {
        pollfd p[2] = {{m_fd, POLLIN, 0}, {m_wake[0], POLLIN, 0}};
        int k = ::poll(p, 2, -1);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 || p[1].revents) return false;
        ssize_t r = ::recv(m_fd, out + got, n - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += size_t(r);
    }
    return true;
}

ssize_t StreamSource::cookie_read(void* self, char* buf, size_t size) {
    auto* s = static_cast<StreamSource*>(self);
    // Waiting on the socket must not keep the view from the model.
    bool held = s->m_reader_lock && s->m_reader_lock->owns_lock();
    if (held && s->m_reader) {
        // About to wait for the target: show what was folded so far first, else an idle target
        // (a memory sample every 10 ms) would wait for a batch of 4096 records to fill.
        pollfd p{s->m_fd, POLLIN, 0};
        if (::poll(&p, 1, 0) == 0) s->publish();
    }
    if (held) s->m_reader_lock->unlock();
    ssize_t n = s->read_capture_bytes(buf, size);
    if (held) s->m_reader_lock->lock();
    return n;
}

ssize_t StreamSource::read_capture_bytes(char* buf, size_t size) {
    while (m_chunk_left == 0) {
        uint8_t head[format::k_live_chunk_header];
        if (!recv_exact(head, sizeof head)) return 0;  // end of stream (or close())
        uint32_t len = uint32_t(head[1]) | uint32_t(head[2]) << 8 | uint32_t(head[3]) << 16 |
                       uint32_t(head[4]) << 24;
        if (head[0] == format::k_live_chunk_capture) {
            m_chunk_left = len;
        } else if (head[0] == format::k_live_chunk_dropped && len == 8) {
            uint8_t le[8];
            if (!recv_exact(le, sizeof le)) return 0;
            uint64_t dropped = 0;
            for (int i = 0; i < 8; ++i) dropped |= uint64_t(le[i]) << (8 * i);
            m_dropped.store(dropped, std::memory_order_relaxed);
        } else {
            m_protocol_error = "unknown chunk type " + std::to_string(head[0]);
            errno = EPROTO;
            return -1;
        }
    }
    size_t want = size < m_chunk_left ? size : m_chunk_left;
    for (;;) {
        pollfd p[2] = {{m_fd, POLLIN, 0}, {m_wake[0], POLLIN, 0}};
        int k = ::poll(p, 2, -1);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 || p[1].revents) return 0;
        ssize_t r = ::recv(m_fd, buf, want, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        m_chunk_left -= uint32_t(r);
        return r;
    }
}

void StreamSource::fail(const std::string& text) {
    std::lock_guard<std::mutex> g(m_lock);
    m_header.status = Status::Failed;
    m_header.status_text = text;
    ++m_generation;
    m_changed.notify_all();
}

void StreamSource::publish() {
    const format::Header& h = m_reader->header();
    m_header.pid = int(h.pid);
    m_header.command_line = h.command_line;
    m_header.native = (h.flags & format::k_flag_native) != 0;
    const auto& threads = m_reader->threads();
    if (threads.size() > 1 && m_header.threads.size() != threads.size() - 1) {
        m_header.threads.clear();
        for (uint32_t i = 1; i < threads.size(); ++i)
            m_header.threads.push_back({i, threads[i].tid, threads[i].name});
    } else {
        for (uint32_t i = 1; i < threads.size(); ++i) m_header.threads[i - 1].name = threads[i].name;
    }
    // Events may stop while the program runs on; its memory samples still come every 10 ms.
    m_header.duration_ms = std::max(m_reader->last_time_us(), m_model.last_time_us()) / 1000;
    m_header.heap_bytes = m_model.heap();
    m_header.peak_heap_bytes = m_model.peak();
    m_header.rss_bytes = m_model.last_rss();
    m_header.history = m_model.history();
    m_header.dropped_blocks = m_dropped.load(std::memory_order_relaxed);
    ++m_generation;
    m_changed.notify_all();
}

void StreamSource::read_stream() {
    cookie_io_functions_t io{};
    io.read = &StreamSource::cookie_read;
    std::FILE* file = ::fopencookie(this, "r", io);
    if (!file) {
        fail(std::string("cannot read the stream: ") + std::strerror(errno));
        return;
    }
    std::unique_lock<std::mutex> lock(m_lock);
    m_reader_lock = &lock;
    try {
        m_reader = std::make_unique<format::Reader>(file, m_name);
        m_header.status = Status::Running;
        m_header.status_text = "";
        publish();
        for (;;) {
            // In batches, so that the view gets the lock between them.
            for (int i = 0; i < 4096; ++i) {
                format::Reader::Item item = m_reader->next();
                if (item == format::Reader::Item::Event) {
                    m_model.on_event(m_reader->event());
                } else if (item == format::Reader::Item::Sample) {
                    m_model.on_sample(m_reader->sample());
                    ++m_header.samples;
                } else {
                    publish();
                    m_reader_lock = nullptr;
                    lock.unlock();
                    finish_stream(m_reader->trailer().has_value());
                    return;
                }
            }
            publish();
            lock.unlock();
            lock.lock();
        }
    } catch (const std::exception& e) {
        m_reader_lock = nullptr;
        if (lock.owns_lock()) lock.unlock();
        bool stopping;
        {
            std::lock_guard<std::mutex> g(m_lock);
            stopping = m_stop;
        }
        if (stopping) return;
        fail(m_protocol_error.empty() ? e.what() : m_name + ": " + m_protocol_error);
    }
}

void StreamSource::finish_stream(bool trailer) {
    bool stopping;
    uint64_t pid = 0;
    {
        std::lock_guard<std::mutex> g(m_lock);
        stopping = m_stop;
        pid = uint64_t(m_header.pid);
    }
    if (stopping) return;
    bool ended = process_ended(pid);
    std::lock_guard<std::mutex> g(m_lock);
    if (ended) {
        m_header.status = Status::Exited;
        m_header.status_text = "process exited";
    } else if (trailer) {
        m_header.status = Status::Exited;
        m_header.status_text = "tracking stopped (process " + std::to_string(pid) + " runs on)";
    } else {
        m_header.status = Status::Disconnected;
        m_header.status_text = "connection lost";
    }
    ++m_generation;
    m_changed.notify_all();
}

void StreamSource::run() noexcept {
    try {
        if (!connect_and_greet()) return;
        read_stream();
    } catch (const std::exception& e) {
        fail(e.what());
    }
}

bool StreamSource::poll(int timeout_ms) {
    std::unique_lock<std::mutex> lock(m_lock);
    m_changed.wait_for(lock, std::chrono::milliseconds(timeout_ms > 0 ? timeout_ms : 0),
                       [this] { return m_generation != m_seen_generation; });
    bool changed = m_generation != m_seen_generation;
    if (changed) {
        m_seen_generation = m_generation;
        m_shown = m_header;
    }
    return changed;
}

std::vector<Row> StreamSource::rows(uint32_t thread_index, bool hide_internal) {
    std::lock_guard<std::mutex> g(m_lock);
    if (!m_reader) return {};
    return m_model.rows(*m_reader, thread_index, hide_internal);
}

bool StreamSource::capture_header(format::Header& out) const {
    std::lock_guard<std::mutex> g(m_lock);
    if (!m_reader) return false;
    out = m_reader->header();
    return true;
}

void StreamSource::with_snapshot(
    const std::function<void(const report::Snapshot&, const report::StackResolver&,
                             const format::Reader&)>& use) {
    std::lock_guard<std::mutex> g(m_lock);
    if (!m_reader) throw std::runtime_error("no data from " + m_name + " yet");
    report::Snapshot snapshot = m_model.snapshot(*m_reader);
    use(snapshot, m_model.resolver(*m_reader), *m_reader);
}

void StreamSource::write_flamegraph(const std::string& path) {
    std::string html;
    with_snapshot([&](const report::Snapshot& s, const report::StackResolver& r,
                      const format::Reader& reader) {
        report::HtmlOptions ho;
        ho.capture_path = "live " + m_name + " (pid " + std::to_string(reader.header().pid) + ")";
        ho.reporter_name = "flamegraph";
        html = report::render_flamegraph_html(s, r, reader, ho);
    });
    report::write_output_file(path, html);
}

}  // namespace memray::live
