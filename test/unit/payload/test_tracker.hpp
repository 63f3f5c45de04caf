// What the test tracker saw (test_tracker.cpp).
#pragma once

#include <cstddef>

#include "payload/tracker.hpp"

namespace memray::payload::test {

struct Event {
    format::Allocator kind;
    const void* address;
    size_t size;
    long tid;
};
struct ThreadName {
    long tid;
    char name[32];
};

inline constexpr size_t k_max_events = 1 << 16;
inline constexpr size_t k_any_size = ~size_t(0);

void set_enabled(bool on) noexcept;
void clear() noexcept;
size_t event_count() noexcept;
const Event& event(size_t i) noexcept;
// Events of this kind at this address (and of this size unless k_any_size).
size_t count(format::Allocator kind, const void* address, size_t size = k_any_size) noexcept;
long index_of(format::Allocator kind, const void* address) noexcept;
unsigned notifications() noexcept;
const ThreadName* thread_name(const char* name) noexcept;

}  // namespace memray::payload::test
