// `memray attach` / `memray detach` behind the CLI: loads the payload into a running process and
// starts or stops its session (docs/attach.md). The target is stopped only while one thread, taken
// at a safe point, runs dlopen and memray_payload_start_async; the rest happens on the payload's
// own thread while the target runs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "format/settings.hpp"
#include "inject/payload_control.hpp"

namespace memray::inject {

struct AttachOptions {
    pid_t pid = 0;
    std::string payload_path;  // libmemray-payload.so as this process sees it
    // For the payload (format/settings.hpp); output_fd_handoff and its timeout are set here.
    format::PayloadSettings settings;
    int output_fd = -1;  // the open capture file, handed to the target (-1: live, none)
    std::chrono::milliseconds timeout{5000};  // bound of every wait
    bool verbose = false;                     // steps with timings on stderr
    std::function<bool()> cancelled;          // SIGINT/SIGTERM: restore and throw Interrupted
};

struct AttachResult {
    uint64_t generation = 0;  // what detach must name in stop_request
    std::string command;      // /proc/PID/comm
    pid_t hijacked_tid = 0;
    bool loaded_now = false;  // false: the payload was already mapped (re-attach)
    bool via_memfd = false;
    double stopped_ms = 0;  // how long the hijacked thread was held
    double active_ms = 0;   // from the start of attach() until tracking was active
};

// Throws attach::NoSuchProcess / NotPermitted / AttachError (pre-flight and ptrace),
// AlreadyAttached, PayloadFailed (dlopen's or the payload's own error text), attach::Interrupted.
// On any error the target is left running as it was (a payload already loaded stays loaded).
AttachResult attach_payload(const AttachOptions& options);

struct DetachResult {
    std::string output;      // the capture path as the user gave it to attach
    std::string error_text;  // set when tracking had stopped early (e.g. a write error)
    double stop_ms = 0;      // from the stop request until the capture was finalized
};

// Asks the payload of `pid` to stop (no ptrace, no stall) and waits until the capture is final.
// Throws NotAttached (no session: memray's "no previous memray attach call detected"),
// attach::NoSuchProcess, attach::NotPermitted (worded as for attach), attach::CallTimeout,
// attach::Interrupted, and attach::AttachError when the process is stopped (SIGSTOP or a
// debugger): before the request, saying what to do; after it, saying that the request stays and
// completes when the process resumes.
DetachResult detach_payload(pid_t pid, std::chrono::milliseconds timeout, bool verbose,
                            const std::function<bool()>& cancelled = {});

}  // namespace memray::inject
