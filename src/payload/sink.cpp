#include "payload/sink.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace memray::payload {

int Sink::write(const uint8_t*, size_t) noexcept { return -ENOSYS; }
void Sink::finish() noexcept {}
void Sink::abandon_in_child() noexcept {}
const char* Sink::describe() const noexcept { return "the output"; }
bool Sink::reconnects() const noexcept { return false; }

void FileSink::open(int fd, const char* path) noexcept {
    m_fd = fd;
    snprintf(m_path, sizeof m_path, "%s", path ? path : "");
}

int FileSink::write(const uint8_t* data, size_t len) noexcept {
    while (len) {
        ssize_t w = ::write(m_fd, data, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (w == 0) return -EIO;
        data += w;
        len -= size_t(w);
    }
    return 0;
}

void FileSink::finish() noexcept {
    if (m_fd >= 0) close(m_fd);
    m_fd = -1;
}

void FileSink::abandon_in_child() noexcept { finish(); }

}  // namespace memray::payload
