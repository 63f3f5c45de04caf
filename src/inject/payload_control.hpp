// The CLI side of the attach protocol (src/payload/api.hpp, docs/attach.md): find the payload in
// a target, read its status, hand it the output file, ask it to stop. Nothing here stops the
// target: status and stop_request travel through process_vm_readv/writev, the output descriptor
// through a socket fetched with pidfd_getfd.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "attach/tracer.hpp"

namespace memray::inject {

class AlreadyAttached : public attach::AttachError {  // a session is active in the target
  public:
    using attach::AttachError::AttachError;
};
class NotAttached : public attach::AttachError {  // detach with nothing to stop
  public:
    using attach::AttachError::AttachError;
};
class PayloadFailed : public attach::AttachError {  // the payload could not load or start
  public:
    using attach::AttachError::AttachError;
};
class TrackingStopped : public attach::AttachError {  // a write error ended tracking early
  public:
    using attach::AttachError::AttachError;
};

// Name of the payload file, and of the memfd that carries it into other mount namespaces.
inline constexpr const char* k_payload_name = "libmemray-payload.so";

struct PayloadStatus {
    uint32_t state = 0;  // memray_payload_state
    int32_t error_code = 0;
    uint64_t generation = 0;
    int32_t handoff_fd = -1;
    int32_t control_tid = 0;
    uint64_t stop_request = 0;
    std::string output;
    std::string error_text;
    uint64_t stopped_unix_ms = 0;  // 0 from a version 1 payload
    bool busy() const;  // starting, waiting for output, active or stopping
    bool write_failed() const;  // stopped by a write error (error_code, error_text, stopped_unix_ms)
};
const char* state_name(uint32_t state);

struct LoadedPayload {
    std::string mapped_as;  // path as /proc/PID/maps shows it
    uint64_t load_bias = 0;
    uint64_t status_address = 0;
    uint64_t start_async_address = 0;
    uint64_t settings_area_address = 0;  // 0 for payloads built before it existed
};

// True for a maps path that is our payload (a file named libmemray-payload.so, or its memfd).
bool is_payload_mapping(const std::string& path);

// The payload mapped in `pid`, located from its own ELF file; nullopt when none is mapped.
std::optional<LoadedPayload> find_loaded_payload(pid_t pid, const std::vector<attach::Mapping>& maps);
std::optional<LoadedPayload> find_loaded_payload(pid_t pid);

// Throws AttachError when the memory is unreadable or is not a status this CLI understands.
PayloadStatus read_status(pid_t pid, uint64_t address);
void write_stop_request(pid_t pid, uint64_t address, uint64_t generation);

// "tracking stopped at 14:03:07: cannot write FILE: No space left on device; the capture holds
// what was written before" (local time) for a status with write_failed().
std::string write_failure_message(const PayloadStatus& status);

// The write error that ended the last session in `pid`, as write_failure_message() words it;
// nullopt when there is none (or no payload, or the process is gone). `claim`: only an error no
// detach has seen yet, which it then marks as seen by writing the stop request a detach would
// have written, so that a second detach says that nothing is attached.
std::optional<std::string> take_write_failure(pid_t pid, bool claim);

// Copies `fd` into the target through its end `target_socket` of the handoff socket.
void send_fd(pid_t pid, int target_socket, int fd);

// Polls (every millisecond at first, then every 10 ms) until `done(status)` holds or `timeout`
// passes (then throws attach::CallTimeout with `what`). `cancelled` is checked between polls.
PayloadStatus wait_for_status(pid_t pid, uint64_t address,
                              const std::function<bool(const PayloadStatus&)>& done,
                              std::chrono::milliseconds timeout, const std::string& what,
                              const std::function<bool()>& cancelled = {});

}  // namespace memray::inject
