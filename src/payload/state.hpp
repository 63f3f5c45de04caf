// How the payload keeps its globals: each module (.cpp) has one `constinit` struct holding all
// of them, with a comment saying which thread writes what. constinit: hooks can run before any
// constructor of the payload (LD_PRELOAD, a dlopen while the program allocates), so no state may
// depend on dynamic initialization. Where a module needs a reset (after fork, before a new
// session) it resets the struct as a whole, so a field added later cannot be forgotten.
#pragma once

#include <new>
#include <type_traits>

namespace memray::payload {

// Returns `state` to what its default member initializers say. Cold paths only (it rewrites the
// whole struct); T must be trivially destructible (no owned resources: release those first).
template <class T>
void reset_state(T& state) noexcept {
    static_assert(std::is_trivially_destructible_v<T>);
    new (&state) T();
}

}  // namespace memray::payload
