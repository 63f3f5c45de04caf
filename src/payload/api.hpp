// The payload's exported entry points. `memray run` (LD_PRELOAD for native programs, ctypes for
// Python) and, later, `memray attach` (remote call) all go through memray_payload_start().
#pragma once

extern "C" {

// settings: "key=value" pairs separated by '\n':
//   output=<path>        capture file (required)
//   native=0|1           record native return addresses (always on for non-Python processes)
//   compress=0|1         lz4 blocks (default 1)
//   force=0|1            overwrite an existing output file (default 0)
//   command=<text>       command line to store in the header (default /proc/self/cmdline)
//   log_level=0..3       debug..error (default 2)
// Returns 0 when tracking is active (also when it already was), else a negative code; the text
// of the last error is available from memray_payload_last_error(). Idempotent.
__attribute__((visibility("default"))) int memray_payload_start(const char* settings);
// Stops tracking, restores patched slots, flushes and finalizes the capture. Returns 0, or a
// negative code when nothing was being tracked. Safe to call from any thread, any number of times.
__attribute__((visibility("default"))) int memray_payload_stop(void);
// 1 while tracking is active, else 0.
__attribute__((visibility("default"))) int memray_payload_active(void);
__attribute__((visibility("default"))) const char* memray_payload_last_error(void);
// Names the calling thread in the capture without renaming it in the OS (`memray run` passes
// Python's threading names this way: "MainThread", "Thread-1", ...). No-op when not tracking.
__attribute__((visibility("default"))) void memray_payload_name_thread(const char* name);
}
