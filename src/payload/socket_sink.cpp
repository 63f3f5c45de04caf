#include "payload/socket_sink.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "format/live_protocol.hpp"
#include "payload/log.hpp"
#include "payload/tracker.hpp"

namespace memray::payload {

namespace {

using format::k_live_hello;
using format::k_live_hello_len;

constexpr int k_hello_timeout_ms = 2000;  // a viewer greets at once; anything else is not one
constexpr int k_finish_timeout_ms = 2000;  // how long the trailer may take to leave

uint64_t monotonic_ms() noexcept {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return uint64_t(t.tv_sec) * 1000 + uint64_t(t.tv_nsec) / 1000000;
}

// Reads exactly `len` bytes within `timeout_ms`; false on timeout, error or end of stream.
bool read_exact(int fd, char* out, size_t len, int timeout_ms) noexcept {
    uint64_t deadline = monotonic_ms() + uint64_t(timeout_ms);
    size_t got = 0;
    while (got < len) {
        uint64_t now = monotonic_ms();
        if (now >= deadline) return false;
        pollfd p{fd, POLLIN, 0};
        int n = poll(&p, 1, int(deadline - now));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        ssize_t r = recv(fd, out + got, len - got, MSG_DONTWAIT);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r <= 0) return false;
        got += size_t(r);
    }
    return true;
}

bool send_all(int fd, const uint8_t* p, size_t n) noexcept {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= size_t(w);
    }
    return true;
}

}  // namespace

int SocketSink::open(int port, int timeout_ms, const std::atomic<bool>* cancel,
                     bool keep_listening, char* err, size_t err_len) noexcept {
    snprintf(m_name, sizeof m_name, "the live viewer on 127.0.0.1:%d", port);
    m_port = port;
    if (!m_queue) {
        void* q = mmap(nullptr, k_queue_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (q == MAP_FAILED) {
            int e = errno;
            snprintf(err, err_len, "cannot map the live queue: %s", strerror(e));
            return -e;
        }
        m_queue = static_cast<uint8_t*>(q);
    }

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) {
        int e = errno;
        snprintf(err, err_len, "cannot create a socket: %s", strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listener, 4) != 0) {
        int e = errno;
        close(listener);
        snprintf(err, err_len, "cannot listen on 127.0.0.1:%d: %s", port, strerror(e));
        return -e;
    }
    m_listen_fd = listener;
    int rc = accept_viewer(timeout_ms, cancel, err, err_len);
    // Without reconnection, one viewer per session: later connections are refused rather than
    // left hanging.
    if (rc != 0 || !keep_listening) {
        close(m_listen_fd);
        m_listen_fd = -1;
    }
    return rc;
}

int SocketSink::accept_next(char* err, size_t err_len) noexcept {
    if (m_listen_fd < 0) {
        snprintf(err, err_len, "not listening for another viewer");
        return -EBADF;
    }
    return accept_viewer(0, nullptr, err, err_len);
}

int SocketSink::accept_viewer(int timeout_ms, const std::atomic<bool>* cancel, char* err,
                              size_t err_len) noexcept {
    m_head = m_tail = 0;
    m_closing = m_notice_due = false;
    m_gone.store(false);
    m_dropped.store(0);
    m_thread_running = false;
    int port = m_port;
    // Only a peer that greets like a viewer is taken; anything else (a port scanner, a stray
    // client) is dropped and the wait goes on.
    uint64_t deadline = timeout_ms > 0 ? monotonic_ms() + uint64_t(timeout_ms) : 0;
    int fd = -1;
    while (fd < 0) {
        if (cancel && cancel->load()) {
            snprintf(err, err_len, "cancelled while waiting for a live viewer on 127.0.0.1:%d", port);
            return -ECANCELED;
        }
        uint64_t now = monotonic_ms();
        if (deadline && now >= deadline) {
            snprintf(err, err_len, "no live viewer connected to 127.0.0.1:%d within %d ms", port,
                     timeout_ms);
            return -ETIMEDOUT;
        }
        // Slices, so that cancellation is seen.
        int slice = 100;
        if (deadline && deadline - now < uint64_t(slice)) slice = int(deadline - now);
        pollfd p{m_listen_fd, POLLIN, 0};
        int n = poll(&p, 1, slice);
        if (n < 0 && errno != EINTR) {
            int e = errno;
            snprintf(err, err_len, "cannot wait for a live viewer: %s", strerror(e));
            return -e;
        }
        if (n <= 0) continue;
        int c = accept4(m_listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        char hello[k_live_hello_len];
        if (read_exact(c, hello, sizeof hello, k_hello_timeout_ms) &&
            std::memcmp(hello, k_live_hello, k_live_hello_len) == 0 &&
            send_all(c, reinterpret_cast<const uint8_t*>(k_live_hello), k_live_hello_len)) {
            fd = c;
        } else {
            // Answer a viewer of another version with our hello, so it can say which; then drop it.
            send(c, k_live_hello, k_live_hello_len, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(c);
            log(LogLevel::Warning, "ignored a connection to 127.0.0.1:%d that is not a memray live viewer",
                port);
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    m_fd = fd;

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&m_thread, nullptr, drain_main, this);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (rc != 0) {
        close(m_fd);
        m_fd = -1;
        snprintf(err, err_len, "cannot start the live sender thread: %s", strerror(rc));
        return -rc;
    }
    pthread_setname_np(m_thread, "memray-live");
    m_thread_running = true;
    return 0;
}

void SocketSink::put_chunk(uint8_t type, const uint8_t* data, size_t len) noexcept {
    uint8_t head[format::k_live_chunk_header] = {type, uint8_t(len), uint8_t(len >> 8),
                                                 uint8_t(len >> 16), uint8_t(len >> 24)};
    auto copy = [this](const uint8_t* p, size_t n) {
        size_t at = size_t(m_head % k_queue_bytes);
        size_t first = n < k_queue_bytes - at ? n : k_queue_bytes - at;
        std::memcpy(m_queue + at, p, first);
        std::memcpy(m_queue, p + first, n - first);
        m_head += n;
    };
    copy(head, sizeof head);
    copy(data, len);
}

int SocketSink::write(const uint8_t* data, size_t len) noexcept {
    if (m_gone.load(std::memory_order_acquire)) return -EPIPE;
    pthread_mutex_lock(&m_lock);
    size_t notice = m_notice_due ? format::k_live_chunk_header + 8 : 0;
    if (k_queue_bytes - queued() < notice + format::k_live_chunk_header + len) {
        // The viewer is behind: drop the block rather than hold the program back.
        m_dropped.fetch_add(1, std::memory_order_relaxed);
        m_notice_due = true;
    } else {
        if (m_notice_due) {
            uint64_t d = m_dropped.load(std::memory_order_relaxed);
            uint8_t le[8];
            for (int i = 0; i < 8; ++i) le[i] = uint8_t(d >> (8 * i));
            put_chunk(format::k_live_chunk_dropped, le, sizeof le);
            m_notice_due = false;
        }
        put_chunk(format::k_live_chunk_capture, data, len);
        pthread_cond_signal(&m_cond);
    }
    pthread_mutex_unlock(&m_lock);
    return 0;
}

void* SocketSink::drain_main(void* self) noexcept {
    t_in_tracker = true;  // nothing this thread does is the program's own allocation
    static_cast<SocketSink*>(self)->drain();
    return nullptr;
}

void SocketSink::drain() noexcept {
    pthread_mutex_lock(&m_lock);
    for (;;) {
        while (queued() == 0 && !m_closing) {
            timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += 100 * 1000 * 1000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec += 1;
                until.tv_nsec -= 1000000000;
            }
            pthread_cond_clockwait(&m_cond, &m_lock, CLOCK_MONOTONIC, &until);
            if (queued() == 0 && !m_closing) {
                // Idle: notice a viewer that hung up now, not at the next block.
                pollfd p{m_fd, POLLRDHUP, 0};
                if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
                    m_gone.store(true, std::memory_order_release);
                    break;
                }
            }
        }
        if (m_gone.load() || queued() == 0) break;  // hung up, or closing with nothing left
        size_t at = size_t(m_tail % k_queue_bytes);
        size_t n = queued();
        if (n > k_queue_bytes - at) n = k_queue_bytes - at;
        pthread_mutex_unlock(&m_lock);
        bool ok = send_all(m_fd, m_queue + at, n);
        pthread_mutex_lock(&m_lock);
        if (!ok) {
            m_gone.store(true, std::memory_order_release);
            break;
        }
        m_tail += n;
    }
    pthread_mutex_unlock(&m_lock);
}

void SocketSink::finish() noexcept {
    if (m_thread_running) {
        pthread_mutex_lock(&m_lock);
        m_closing = true;
        pthread_cond_signal(&m_cond);
        pthread_mutex_unlock(&m_lock);
        // A viewer that stopped reading must not hold up the end of tracking (nor the program's
        // exit): after a moment its connection is shut, which fails the pending send.
        timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += k_finish_timeout_ms / 1000;
        if (pthread_timedjoin_np(m_thread, nullptr, &until) != 0) {
            shutdown(m_fd, SHUT_RDWR);
            pthread_join(m_thread, nullptr);
        }
        m_thread_running = false;
    }
    if (m_fd >= 0) {
        shutdown(m_fd, SHUT_WR);
        close(m_fd);
    }
    m_fd = -1;
}

void SocketSink::abandon_in_child() noexcept {
    // No sender thread exists in the child; closing our copy leaves the parent's connection be.
    if (m_fd >= 0) close(m_fd);
    if (m_listen_fd >= 0) close(m_listen_fd);
    m_fd = m_listen_fd = -1;
    m_thread_running = false;
    m_lock = PTHREAD_MUTEX_INITIALIZER;
    m_cond = PTHREAD_COND_INITIALIZER;
}

}  // namespace memray::payload
