// Where the writer's bytes go (docs/architecture.md, "Output"). The writer owns *what* is
// written (the file header, framed blocks, the trailer inside the last block); a sink owns
// *where*. Only the writer calls a sink: from writer_start() for the header, then from the
// writer thread; never from the hot path, so a sink may block (a file sink does), but a sink
// that must not hold the program back (a socket to a live viewer) has to bound itself.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memray::payload {

// No pure virtuals and no virtual destructor: both would pull in libstdc++ runtime symbols
// (__cxa_pure_virtual, operator delete) that the payload must not need. Sinks live in static
// storage and are never deleted through this type.
class Sink {
  public:
    // Takes all of [data, data + len) or fails: 0, or a negative errno. After a failure the
    // writer stops tracking and calls nothing but finish().
    virtual int write(const uint8_t* data, size_t len) noexcept;
    // The capture ended (trailer written, or abandoned after a failure): release the output.
    // Called once per session, from the thread that stops tracking.
    virtual void finish() noexcept;
    // In a forked child, whose copy of the session must not write anything: let go of it.
    virtual void abandon_in_child() noexcept;
    // Names the output in messages ("cannot write <describe()>: ...").
    virtual const char* describe() const noexcept;
    // After a write failure a new session follows by itself (a live viewer left while the port
    // stays open for the next one): the failure is then news, not an error.
    virtual bool reconnects() const noexcept;

  protected:
    constexpr Sink() noexcept = default;
    ~Sink() = default;
};

// A file (or anything write(2) takes: a pipe, a device) opened by the caller.
class FileSink final : public Sink {
  public:
    constexpr FileSink() noexcept = default;
    // Takes ownership of `fd`; `path` is copied (truncated to fit) for messages only.
    void open(int fd, const char* path) noexcept;
    int write(const uint8_t* data, size_t len) noexcept override;
    void finish() noexcept override;  // close
    void abandon_in_child() noexcept override;  // close, nothing written
    const char* describe() const noexcept override { return m_path; }

  private:
    int m_fd = -1;
    char m_path[4096] = {};
};

}  // namespace memray::payload
