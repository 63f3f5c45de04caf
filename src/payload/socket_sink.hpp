// The live sink (docs/live.md): the capture stream to one viewer over TCP on 127.0.0.1, framed
// as format/live_protocol.hpp says.
//
// The tracked program must never wait for the viewer: write() only copies a block into a bounded
// queue (mmap'd, no malloc) that a thread of its own sends; when the queue is full the block is
// dropped and counted, and the viewer is told the count before the next block that fits. Sends
// use MSG_NOSIGNAL, so a viewer that goes away is an EPIPE for write(), never a SIGPIPE for the
// program; the writer then stops tracking as after any write error.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "payload/sink.hpp"

namespace memray::payload {

class SocketSink final : public Sink {
  public:
    static constexpr size_t k_queue_bytes = 32u << 20;  // ~10 s of a busy Python program

    constexpr SocketSink() noexcept = default;
    // Listens on 127.0.0.1:port and waits for a viewer that greets with the hello, at most
    // `timeout_ms` (0: no limit) or until *cancel becomes true (may be null). With
    // `keep_listening` the port stays open for accept_next() (--live-remote). 0, or a negative
    // errno with one line in `err`.
    int open(int port, int timeout_ms, const std::atomic<bool>* cancel, bool keep_listening,
             char* err, size_t err_len) noexcept;
    // After finish(): waits (without limit) for the next viewer on the port kept open.
    int accept_next(char* err, size_t err_len) noexcept;
    int write(const uint8_t* data, size_t len) noexcept override;
    // Sends what is queued (the trailer) for at most a moment, then closes the connection.
    void finish() noexcept override;
    void abandon_in_child() noexcept override;
    const char* describe() const noexcept override { return m_name; }
    bool reconnects() const noexcept override { return m_listen_fd >= 0; }
    uint64_t dropped() const noexcept { return m_dropped.load(std::memory_order_relaxed); }

  private:
    int accept_viewer(int timeout_ms, const std::atomic<bool>* cancel, char* err,
                      size_t err_len) noexcept;
    static void* drain_main(void* self) noexcept;
    void drain() noexcept;
    // Copies a chunk into the queue; the caller holds m_lock and checked the room.
    void put_chunk(uint8_t type, const uint8_t* data, size_t len) noexcept;
    size_t queued() const noexcept { return size_t(m_head - m_tail); }

    int m_fd = -1;
    int m_listen_fd = -1;
    int m_port = 0;
    uint8_t* m_queue = nullptr;  // k_queue_bytes, a ring indexed by m_head/m_tail modulo its size
    uint64_t m_head = 0;         // written up to (writer thread, under m_lock)
    uint64_t m_tail = 0;         // sent up to (drain thread, under m_lock)
    bool m_closing = false;      // finish(): send what is left, then end (under m_lock)
    bool m_notice_due = false;   // a drop happened that the viewer was not told of yet
    std::atomic<bool> m_gone{false};  // the viewer went away (send failed or it hung up)
    std::atomic<uint64_t> m_dropped{0};
    bool m_thread_running = false;
    pthread_t m_thread{};
    pthread_mutex_t m_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t m_cond = PTHREAD_COND_INITIALIZER;
    char m_name[64] = {};
};

}  // namespace memray::payload
