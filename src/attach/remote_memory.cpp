// The target's memory: process_vm_readv for reads, /proc/PID/mem for writes (and for reads the
// former refuses), opened once at attach for the Tracer's lifetime.
#include "attach/proc_files.hpp"
#include "attach/tracer_impl.hpp"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace memray::attach {

using detail::hex;

void Tracer::Impl::open_memory() {
    mem_fd = ::open(proc::path(pid, "mem").c_str(), O_RDWR | O_CLOEXEC);
    if (mem_fd < 0) {
        if (errno == ENOENT) throw NoSuchProcess("no process with pid " + std::to_string(pid));
        if (errno == ESRCH) throw exited_error();  // a zombie: it has no memory left
        throw NotPermitted("not permitted to trace " + who() + " (" + strerror(errno) +
                           "): run as root or with CAP_SYS_PTRACE, or check "
                           "/proc/sys/kernel/yama/ptrace_scope");
    }
}

void Tracer::Impl::close_memory() noexcept {
    if (mem_fd >= 0) ::close(mem_fd);
    mem_fd = -1;
}

void Tracer::Impl::read_mem(uint64_t address, void* out, size_t size) const {
    iovec local{out, size};
    iovec remote{reinterpret_cast<void*>(address), size};
    if (::process_vm_readv(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(size)) return;
    if (::pread(mem_fd, out, size, static_cast<off_t>(address)) == static_cast<ssize_t>(size)) return;
    throw AttachError("cannot read " + std::to_string(size) + " bytes at " + hex(address) +
                      " in " + who() + ": " + strerror(errno));
}

void Tracer::Impl::write_mem(uint64_t address, const void* data, size_t size) const {
    // /proc/PID/mem writes through the tracer's FOLL_FORCE path, so read-only text works too.
    if (::pwrite(mem_fd, data, size, static_cast<off_t>(address)) == static_cast<ssize_t>(size))
        return;
    throw AttachError("cannot write " + std::to_string(size) + " bytes at " + hex(address) +
                      " in " + who() + ": " + strerror(errno));
}

}  // namespace memray::attach
