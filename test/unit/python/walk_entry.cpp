// Test-only library loaded by check_walk.py through ctypes: exposes python_walk() and friends so
// the script can compare what the walker sees with what the interpreter reports.
#include <pthread.h>
#include <unistd.h>

#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "payload/python_stack.hpp"
#include "report/python_lines.hpp"

using memray::payload::PyCodeDetails;
using memray::payload::PyFrameRef;

namespace {

constexpr size_t k_max_frames = 512;

long walk_to_text(char* out, size_t cap, size_t max_frames, bool stop_at_root = false) {
    if (!memray::payload::python_init()) return -1;
    PyFrameRef frames[k_max_frames];
    size_t n = memray::payload::python_walk(
        frames, max_frames < k_max_frames ? max_frames : k_max_frames, stop_at_root);
    size_t pos = 0;
    out[0] = '\0';
    PyCodeDetails details;  // per call: several threads walk at once
    for (size_t i = 0; i < n; ++i) {
        uint64_t fp = memray::payload::python_code_fingerprint(frames[i].code);
        if (!memray::payload::python_code_details(frames[i].code, details) || fp == 0 ||
            fp != memray::payload::python_code_fingerprint(frames[i].code) ||
            fp != frames[i].fingerprint) {
            return -2;
        }
        std::string_view table(reinterpret_cast<const char*>(details.line_table),
                               details.line_table_len);
        uint32_t line = memray::report::python_line(memray::payload::python_line_format(), table,
                                                    details.first_line, frames[i].offset);
        int w = std::snprintf(out + pos, cap - pos, "%s\t%s\t%u\n", details.function,
                              details.file, line);
        if (w < 0 || size_t(w) >= cap - pos) return -3;
        pos += size_t(w);
    }
    return long(n);
}

void* native_thread_walk(void* result) {
    PyFrameRef frames[16];
    *static_cast<long*>(result) = long(memray::payload::python_walk(frames, 16, true));
    return nullptr;
}

void walk_at_exit() {
    // Runs from exit() after Py_FinalizeEx: the walker must report nothing and not crash.
    PyFrameRef frames[16];
    size_t n = memray::payload::python_walk(frames, 16, true);
    char msg[64];
    int len = std::snprintf(msg, sizeof(msg), "exit-walk %zu\n", n);
    ssize_t ignored = write(1, msg, size_t(len));
    (void)ignored;
}

__attribute__((constructor)) void walk_at_load() {
    // With LD_PRELOAD this runs before the interpreter is initialized.
    if (std::getenv("MEMRAY_TEST_WALK_AT_LOAD") == nullptr) return;
    bool ok = memray::payload::python_init();
    PyFrameRef frames[16];
    size_t n = memray::payload::python_walk(frames, 16, true);
    char msg[64];
    int len = std::snprintf(msg, sizeof(msg), "load-walk init=%d frames=%zu\n", ok ? 1 : 0, n);
    ssize_t ignored = write(1, msg, size_t(len));
    (void)ignored;
}

}  // namespace

extern "C" {

// Writes "function\tfile\tline\n" per frame, innermost first. Returns the frame count, or a
// negative value on failure.
__attribute__((visibility("default"))) long test_walk(char* out, size_t cap, size_t max_frames) {
    return walk_to_text(out, cap, max_frames);
}

// The same, ending before the frame that runs `root` (a code object), as `memray run` walks.
__attribute__((visibility("default"))) long test_walk_rooted(char* out, size_t cap,
                                                             const void* root) {
    memray::payload::python_set_root(root);
    long n = walk_to_text(out, cap, k_max_frames, true);
    memray::payload::python_set_root(nullptr);
    return n;
}

__attribute__((visibility("default"))) const char* test_version() {
    memray::payload::python_init();
    return memray::payload::python_version_string();
}

__attribute__((visibility("default"))) unsigned test_line_format() {
    memray::payload::python_init();
    return memray::payload::python_line_format();
}

// Walks from a thread the interpreter has never seen; returns its frame count (expected 0).
__attribute__((visibility("default"))) long test_walk_in_native_thread() {
    memray::payload::python_init();
    long result = -1;
    pthread_t thread;
    if (pthread_create(&thread, nullptr, native_thread_walk, &result) != 0) return -1;
    pthread_join(thread, nullptr);
    return result;
}

__attribute__((visibility("default"))) void test_walk_at_exit() {
    memray::payload::python_init();
    std::atexit(walk_at_exit);
}

// Average nanoseconds per python_walk() call from the caller's stack, in thread CPU time so that
// a busy shared machine does not inflate it with time spent preempted.
__attribute__((visibility("default"))) double test_walk_bench(size_t iterations,
                                                                  size_t max_frames) {
    if (!memray::payload::python_init()) return -1;
    PyFrameRef frames[k_max_frames];
    if (max_frames > k_max_frames) max_frames = k_max_frames;
    size_t sink = 0;
    timespec start{}, end{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
    for (size_t i = 0; i < iterations; ++i) {
        sink += memray::payload::python_walk(frames, max_frames, false);
        asm volatile("" : : "r"(frames) : "memory");
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &end);
    if (sink == 0) return -2;
    double elapsed = double(end.tv_sec - start.tv_sec) * 1e9 + double(end.tv_nsec - start.tv_nsec);
    return elapsed / double(iterations);
}

}  // extern "C"
