// Native return addresses of the current thread (libunwind's local unwinder with its caches).
#pragma once

#include <cstddef>
#include <cstdint>

namespace memray::payload {

// One-time setup (caching policy). Cold path.
void native_stack_init() noexcept;
// Innermost first; frames inside the payload itself are skipped. Returns how many were written.
size_t native_walk(uintptr_t* out, size_t max) noexcept;

}  // namespace memray::payload
