// Test-only definitions of the tracker interface (tracker.hpp, log.hpp): the real tracker is not
// linked into the GOT-patching tests, which only need to see which events the hooks report.
#include "test_tracker.hpp"
#include "payload/fast_unwind.hpp"
#include "payload/hooks.hpp"
#include "payload/log.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace memray::payload {

__thread bool t_in_tracker __attribute__((tls_model("initial-exec"))) = false;

namespace {
std::atomic<bool> g_enabled{false};
std::atomic<unsigned> g_next{0};
std::atomic<unsigned> g_notifications{0};
test::Event g_events[test::k_max_events];
test::ThreadName g_names[64];
std::atomic<unsigned> g_next_name{0};

void push(format::Allocator kind, const void* address, size_t size) noexcept {
    ReentryGuard guard;
    unsigned i = g_next.fetch_add(1, std::memory_order_relaxed);
    if (i >= test::k_max_events) return;
    g_events[i] = test::Event{kind, address, size, syscall(SYS_gettid)};
}
}  // namespace

bool tracking_enabled() noexcept { return g_enabled.load(std::memory_order_relaxed); }
void record_allocation(format::Allocator kind, const void* address, size_t size) noexcept {
    push(kind, address, size);
}
void record_deallocation(format::Allocator kind, const void* address, size_t size) noexcept {
    push(kind, address, size);
}
void record_thread_name(long tid, const char* name) noexcept {
    unsigned i = g_next_name.fetch_add(1);
    if (i >= 64) return;
    g_names[i].tid = tid;
    strncpy(g_names[i].name, name, sizeof(g_names[i].name) - 1);
}
void notify_objects_changed() noexcept { g_notifications.fetch_add(1); }
void fast_unwind_objects_changed() noexcept {}  // fast_unwind.hpp: no walker here

void set_log_level(LogLevel) noexcept {}
void log(LogLevel level, const char* fmt, ...) noexcept {
    if (level < LogLevel::Warning) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n > int(sizeof(buf) - 2)) n = int(sizeof(buf) - 2);
    buf[n++] = '\n';
    if (write(2, buf, size_t(n)) < 0) return;
}

namespace test {
void set_enabled(bool on) noexcept { g_enabled.store(on); }
void clear() noexcept {
    g_next.store(0);
    g_next_name.store(0);
    memset(static_cast<void*>(g_names), 0, sizeof(g_names));
}
size_t event_count() noexcept {
    unsigned n = g_next.load();
    return n < k_max_events ? n : k_max_events;
}
const Event& event(size_t i) noexcept { return g_events[i]; }
size_t count(format::Allocator kind, const void* address, size_t size) noexcept {
    size_t n = 0;
    for (size_t i = 0; i < event_count(); ++i) {
        const Event& e = g_events[i];
        if (e.kind == kind && e.address == address && (size == k_any_size || e.size == size)) ++n;
    }
    return n;
}
long index_of(format::Allocator kind, const void* address) noexcept {
    for (size_t i = 0; i < event_count(); ++i) {
        if (g_events[i].kind == kind && g_events[i].address == address) return long(i);
    }
    return -1;
}
unsigned notifications() noexcept { return g_notifications.load(); }
const ThreadName* thread_name(const char* name) noexcept {
    for (unsigned i = 0; i < 64 && i < g_next_name.load(); ++i) {
        if (strcmp(g_names[i].name, name) == 0) return &g_names[i];
    }
    return nullptr;
}
}  // namespace test

}  // namespace memray::payload

// The exec hooks finalize the capture through the API; here that only turns tracking off.
extern "C" int memray_payload_stop(void) {
    memray::payload::test::set_enabled(false);
    return 0;
}

int memray::payload::stop_before_exit() noexcept { return memray_payload_stop(); }
