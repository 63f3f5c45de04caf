#include "inject/payload_control.hpp"

#include <fmt/core.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <thread>

#include "inject/elf_symbols.hpp"
#include "payload/api.hpp"

namespace memray::inject {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

// Closes a descriptor on every path.
class Fd {
  public:
    explicit Fd(int fd) : m_fd(fd) {}
    ~Fd() {
        if (m_fd >= 0) ::close(m_fd);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return m_fd; }

  private:
    int m_fd;
};

void read_remote(pid_t pid, uint64_t address, void* out, size_t size) {
    iovec local{out, size};
    iovec remote{reinterpret_cast<void*>(address), size};
    ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n != static_cast<ssize_t>(size)) {
        int err = n < 0 ? errno : EIO;
        if (err == ESRCH) throw attach::NoSuchProcess(fmt::format("process {} exited", pid));
        throw attach::AttachError(fmt::format("cannot read the memray status in process {} at {:#x}: {}",
                                              pid, address, errno_text(err)));
    }
}

std::string bounded(const char* text, size_t cap) { return std::string(text, ::strnlen(text, cap)); }

}  // namespace

bool PayloadStatus::busy() const { return memray_payload_state_busy(state) != 0; }

bool PayloadStatus::write_failed() const { return state == MEMRAY_STATE_STOPPED && error_code != 0; }

const char* state_name(uint32_t state) {
    switch (state) {
        case MEMRAY_STATE_IDLE: return "idle";
        case MEMRAY_STATE_STARTING: return "starting";
        case MEMRAY_STATE_WAITING_FOR_OUTPUT: return "waiting for the output file";
        case MEMRAY_STATE_ACTIVE: return "active";
        case MEMRAY_STATE_STOPPING: return "stopping";
        case MEMRAY_STATE_STOPPED: return "stopped";
        case MEMRAY_STATE_FAILED: return "failed";
        case MEMRAY_STATE_WAITING_FOR_GIL:
            return "waiting for the GIL, held by a thread of the program, to install the Python "
                   "allocator hooks";
    }
    return "unknown";
}

bool is_payload_mapping(const std::string& path) {
    std::string p = path;
    const std::string deleted = " (deleted)";
    if (p.size() > deleted.size() && p.compare(p.size() - deleted.size(), deleted.size(), deleted) == 0)
        p.resize(p.size() - deleted.size());
    if (p == std::string("/memfd:") + k_payload_name) return true;
    auto slash = p.rfind('/');
    return slash != std::string::npos && p.compare(slash + 1, std::string::npos, k_payload_name) == 0;
}

std::optional<LoadedPayload> find_loaded_payload(pid_t pid, const std::vector<attach::Mapping>& maps) {
    for (const auto& m : maps) {
        if (m.offset != 0 || !is_payload_mapping(m.path)) continue;
        std::string file = mapped_file_path(pid, m);
        auto syms = read_dynamic_symbols(file, {"memray_payload_status", "memray_payload_start_async",
                                                "memray_payload_settings_area"});
        auto status = syms.values.find("memray_payload_status");
        auto start = syms.values.find("memray_payload_start_async");
        if (status == syms.values.end() || start == syms.values.end()) {
            throw attach::AttachError(fmt::format(
                "process {} has an older memray payload loaded ({}) that cannot be attached to; "
                "restart the process to use this memray",
                pid, m.path));
        }
        LoadedPayload p;
        p.mapped_as = m.path;
        p.load_bias = m.start - syms.first_load_vaddr;
        p.status_address = p.load_bias + status->second;
        p.start_async_address = p.load_bias + start->second;
        auto area = syms.values.find("memray_payload_settings_area");
        if (area != syms.values.end()) p.settings_area_address = p.load_bias + area->second;
        return p;
    }
    return std::nullopt;
}

std::optional<LoadedPayload> find_loaded_payload(pid_t pid) {
    return find_loaded_payload(pid, attach::read_maps(pid));
}

PayloadStatus read_status(pid_t pid, uint64_t address) {
    memray_payload_status_t raw{};
    // The header first: a payload of another version may have a different layout after it.
    read_remote(pid, address, &raw, offsetof(memray_payload_status_t, state));
    // Fields are only appended: an older payload's status is a prefix of ours (from version 1).
    constexpr uint32_t k_v1_size = offsetof(memray_payload_status_t, stopped_unix_ms);
    if (raw.magic != MEMRAY_STATUS_MAGIC || raw.version < 1 || raw.version > MEMRAY_STATUS_VERSION ||
        raw.size < (raw.version == 1 ? k_v1_size : sizeof raw)) {
        throw attach::AttachError(fmt::format(
            "process {} has a memray payload of another version loaded (status version {}, this "
            "memray speaks {}); restart the process to use this memray",
            pid, raw.version, MEMRAY_STATUS_VERSION));
    }
    uint32_t known = raw.version == 1 ? k_v1_size : uint32_t(sizeof raw);
    read_remote(pid, address, &raw, known);
    // The payload fills the text fields before it publishes `state` (release); one
    // process_vm_readv copies in address order and `state` comes first, so the text read is at
    // least as new as the state returned.
    PayloadStatus s;
    s.state = raw.state;
    s.error_code = raw.error_code;
    s.generation = raw.generation;
    s.handoff_fd = raw.handoff_fd;
    s.control_tid = raw.control_tid;
    s.stop_request = raw.stop_request;
    s.output = bounded(raw.output, sizeof raw.output);
    s.error_text = bounded(raw.error_text, sizeof raw.error_text);
    if (raw.version >= 2) s.stopped_unix_ms = raw.stopped_unix_ms;
    return s;
}

void write_stop_request(pid_t pid, uint64_t address, uint64_t generation) {
    uint64_t value = generation;
    uint64_t at = address + offsetof(memray_payload_status_t, stop_request);
    iovec local{&value, sizeof value};
    iovec remote{reinterpret_cast<void*>(at), sizeof value};
    ssize_t n = ::process_vm_writev(pid, &local, 1, &remote, 1, 0);
    if (n != static_cast<ssize_t>(sizeof value)) {
        int err = n < 0 ? errno : EIO;
        if (err == ESRCH) throw attach::NoSuchProcess(fmt::format("process {} exited", pid));
        throw attach::AttachError(
            fmt::format("cannot ask process {} to stop tracking: {}", pid, errno_text(err)));
    }
}

std::string write_failure_message(const PayloadStatus& status) {
    std::string when;
    if (status.stopped_unix_ms) {
        time_t seconds = time_t(status.stopped_unix_ms / 1000);
        tm local{};
        char text[32];
        if (::localtime_r(&seconds, &local) && std::strftime(text, sizeof text, "%H:%M:%S", &local))
            when = std::string(" at ") + text;
    }
    std::string why = status.error_text.empty()
                          ? fmt::format("cannot write {}: {}", status.output,
                                        errno_text(-status.error_code))
                          : status.error_text;
    return fmt::format("tracking stopped{}: {}; the capture holds what was written before", when,
                       why);
}

std::optional<std::string> take_write_failure(pid_t pid, bool claim) {
    try {
        auto loaded = find_loaded_payload(pid);
        if (!loaded) return std::nullopt;
        PayloadStatus s = read_status(pid, loaded->status_address);
        if (!s.write_failed()) return std::nullopt;
        if (claim) {
            if (s.stop_request == s.generation) return std::nullopt;
            write_stop_request(pid, loaded->status_address, s.generation);
        }
        return write_failure_message(s);
    } catch (const attach::NoSuchProcess&) {
        return std::nullopt;
    }
}

void send_fd(pid_t pid, int target_socket, int fd) {
    Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (pidfd.get() < 0) {
        int err = errno;
        if (err == ESRCH) throw attach::NoSuchProcess(fmt::format("process {} exited", pid));
        throw attach::AttachError(fmt::format("pidfd_open({}): {}", pid, errno_text(err)));
    }
    Fd sock(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), target_socket, 0)));
    if (sock.get() < 0) {
        int err = errno;
        throw attach::AttachError(fmt::format(
            "cannot fetch the handoff socket (fd {}) of process {}: pidfd_getfd: {}", target_socket,
            pid, errno_text(err)));
    }
    char byte = 'o';
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    ssize_t n;
    do {
        n = ::sendmsg(sock.get(), &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
        int err = n < 0 ? errno : EIO;
        throw attach::AttachError(fmt::format("cannot hand the output file to process {}: {}", pid,
                                              errno_text(err)));
    }
}

PayloadStatus wait_for_status(pid_t pid, uint64_t address,
                              const std::function<bool(const PayloadStatus&)>& done,
                              std::chrono::milliseconds timeout, const std::string& what,
                              const std::function<bool()>& cancelled) {
    using clock = std::chrono::steady_clock;
    auto start = clock::now();
    auto deadline = start + timeout;
    for (;;) {
        PayloadStatus s = read_status(pid, address);
        if (done(s)) return s;
        if (cancelled && cancelled()) throw attach::Interrupted("interrupted");
        auto now = clock::now();
        if (now >= deadline) {
            throw attach::CallTimeout(fmt::format("{} in process {} did not happen within {} ms "
                                                  "(payload state: {})",
                                                  what, pid, timeout.count(), state_name(s.state)));
        }
        if (::kill(pid, 0) != 0 && errno == ESRCH)
            throw attach::NoSuchProcess(fmt::format("process {} exited", pid));
        // The control thread answers within microseconds to a few ms; poll tightly at first.
        auto pause = now - start < std::chrono::milliseconds(20) ? std::chrono::microseconds(200)
                                                                  : std::chrono::microseconds(5000);
        std::this_thread::sleep_for(pause);
    }
}

}  // namespace memray::inject
