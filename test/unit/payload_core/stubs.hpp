// Test-only stand-ins for the parts of the payload written elsewhere (hooks, Python frame walker,
// loaded objects), so the core can be exercised in isolation. Behaviour is steered by these
// globals.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "payload/python_stack.hpp"

namespace stubs {

// python_init() returns this; python_walk() copies the calling thread's fake stack.
extern bool python_present;
struct FakeCode {
    const char* function;
    const char* file;
    uint32_t first_line;
    uint64_t fingerprint;
};
// The calling thread's fake Python stack, innermost first (points at FakeCode objects).
extern thread_local memray::payload::PyFrameRef fake_frames[16];
extern thread_local size_t fake_depth;

extern int install_result;
extern std::atomic<int> install_calls;
extern std::atomic<int> uninstall_calls;

}  // namespace stubs
