// Native stacks: libunwind's local unwinder with per-thread caches. The tracker unwinds itself
// (thread_state.hpp) so the walk starts in the function the hook called.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memray::payload {

// One-time setup (caching policy). Cold path.
void native_stack_init() noexcept;

}  // namespace memray::payload
