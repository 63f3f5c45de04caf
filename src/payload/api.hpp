// The payload's exported entry points. `memray run` (LD_PRELOAD for native programs, ctypes for
// Python) goes through memray_payload_start(); `memray attach` calls memray_payload_start_async()
// remotely and then talks to the payload only through memory: it reads memray_payload_status and
// writes its stop_request word (docs/attach.md).
#pragma once

#include <stdint.h>

extern "C" {

// settings: escaped "key=value" lines, the contract in format/settings.hpp (PayloadSettings lists
// the keys and their defaults; output_fd_handoff and handoff_timeout_ms apply to start_async only).
// Returns 0 when tracking is active (also when it already was), else a negative code; the text
// of the last error is available from memray_payload_last_error(). Idempotent.
__attribute__((visibility("default"))) int memray_payload_start(const char* settings);
// As memray_payload_start, for callers that own the session they start (the Python Tracker):
// returns -EBUSY, with nothing changed, when tracking is already active or a `memray attach`
// session is starting, active or stopping. The check and the start happen under one lock, so two
// callers racing cannot both believe they started the session.
__attribute__((visibility("default"))) int memray_payload_start_exclusive(const char* settings);
// Stops tracking, restores patched slots, flushes and finalizes the capture. Returns 0, or a
// negative code when nothing was being tracked. Safe to call from any thread, any number of times.
__attribute__((visibility("default"))) int memray_payload_stop(void);
// 1 while tracking is active, else 0.
__attribute__((visibility("default"))) int memray_payload_active(void);
__attribute__((visibility("default"))) const char* memray_payload_last_error(void);
// Names the calling thread in the capture without renaming it in the OS (`memray run` passes
// Python's threading names this way: "MainThread", "Thread-1", ...). No-op when not tracking.
__attribute__((visibility("default"))) void memray_payload_name_thread(const char* name);
// `memray run`'s bootstrap passes the code object of its function that runs the program: Python
// stacks (without --native) end inside that frame. The object must live as long as the process.
__attribute__((visibility("default"))) void memray_payload_python_root(const void* code);

// --- Attach protocol (plain C, read and written from outside with process_vm_readv/writev).
//
// The layout is versioned: the CLI checks magic and version before trusting anything else, and
// fields are only ever appended (size grows, version is bumped).
#define MEMRAY_STATUS_MAGIC 0x315354534d52594dULL /* "MYRMSTS1" little-endian */
#define MEMRAY_STATUS_VERSION 2u  /* 2: stopped_unix_ms */

enum memray_payload_state {
    MEMRAY_STATE_IDLE = 0,                // never started by start_async
    MEMRAY_STATE_STARTING = 1,            // control thread spawned, parsing settings
    MEMRAY_STATE_WAITING_FOR_OUTPUT = 2,  // handoff_fd published, waiting for the output fd
    MEMRAY_STATE_ACTIVE = 3,              // tracking
    MEMRAY_STATE_STOPPING = 4,            // finalizing the capture
    MEMRAY_STATE_STOPPED = 5,             // capture finalized (detach, exec, exit, fork child);
                                          // error_code != 0: a write error ended tracking
    MEMRAY_STATE_FAILED = 6,              // error_code/error_text say why; nothing is tracked
    MEMRAY_STATE_WAITING_FOR_GIL = 7,     // tracking began; installing the Python allocator
                                          // hooks waits for the GIL (--trace-python-allocators)
};

/* A session of `memray attach` exists in any of these states (the payload, the CLI and the
   Python package refuse a second one). */
static inline int memray_payload_state_busy(uint32_t state) {
    return state == MEMRAY_STATE_STARTING || state == MEMRAY_STATE_WAITING_FOR_OUTPUT ||
           state == MEMRAY_STATE_ACTIVE || state == MEMRAY_STATE_STOPPING ||
           state == MEMRAY_STATE_WAITING_FOR_GIL;
}

struct memray_payload_status_t {
    uint64_t magic;            // MEMRAY_STATUS_MAGIC, constant from load time
    uint32_t version;          // MEMRAY_STATUS_VERSION
    uint32_t size;             // sizeof(struct memray_payload_status_t)
    volatile uint32_t state;   // enum memray_payload_state; written last (release)
    int32_t error_code;        // negative errno of the failure (FAILED, or STOPPED by a write error)
    volatile uint64_t generation;    // bumped by every accepted start_async
    volatile int32_t handoff_fd;     // the target's end of the handoff socket, -1 when none
    int32_t control_tid;             // the control thread (0 when none)
    volatile uint64_t stop_request;  // written by the CLI: the generation to stop
    char output[4096];               // the output path as the user gave it (for messages)
    char error_text[1024];           // one line, no trailing newline
    // Version 2. Wall-clock time (ms since the epoch) of the write error that stopped tracking
    // (state STOPPED, error_code != 0), else 0. The CLI prints it in its own local time.
    uint64_t stopped_unix_ms;
};

__attribute__((visibility("default"))) extern struct memray_payload_status_t memray_payload_status;

// Called by a hijacked thread of the target: copies `settings`, spawns the "memray-control"
// thread (all signals blocked) and returns at once. That thread starts tracking while the target
// runs, then watches stop_request (every 10 ms) and stops when it equals its generation.
// Returns 0, -EBUSY when a session is starting, active or stopping (also a `memray run` one),
// -E2BIG for settings that do not fit, or -errno from pthread_create.
__attribute__((visibility("default"))) int memray_payload_start_async(const char* settings);

// Where `memray attach` writes the settings for memray_payload_start_async() when the payload is
// already loaded (a re-attach): written while the process is traced, before a thread is borrowed,
// so the borrowed thread runs one call instead of mmap + call + munmap. Only start_async reads
// it, and only the injector (which holds the process exclusively through ptrace) calls that.
#define MEMRAY_PAYLOAD_SETTINGS_AREA_SIZE 16384
__attribute__((visibility("default"))) extern char
    memray_payload_settings_area[MEMRAY_PAYLOAD_SETTINGS_AREA_SIZE];
}
