#include "stubs.hpp"

#include <cstring>

#include "payload/got_patch.hpp"
#include "payload/hooks.hpp"
#include "payload/objects.hpp"
#include "payload/python_allocators.hpp"
#include "payload/python_stack.hpp"

namespace stubs {
bool python_present = false;
thread_local memray::payload::PyFrameRef fake_frames[16];
thread_local size_t fake_depth = 0;
int install_result = 0;
std::atomic<int> install_calls{0};
std::atomic<int> uninstall_calls{0};
}  // namespace stubs

namespace memray::payload {

bool python_init() noexcept { return stubs::python_present; }
const char* python_version_string() noexcept { return stubs::python_present ? "3.99.0" : ""; }
const char* python_allocator_name() noexcept {
    return stubs::python_present ? "pymalloc_debug" : "";
}
uint32_t python_line_format() noexcept { return 0x0363; }

void python_set_root(const void*) noexcept {}

size_t python_walk(PyFrameRef* out, size_t max, bool, bool*) noexcept {
    size_t n = stubs::fake_depth < max ? stubs::fake_depth : max;
    for (size_t i = 0; i < n; ++i) {
        out[i] = stubs::fake_frames[i];
        out[i].fingerprint = python_code_fingerprint(out[i].code);
    }
    return n;
}

uint64_t python_code_fingerprint(const void* code) noexcept {
    return static_cast<const stubs::FakeCode*>(code)->fingerprint;
}

bool python_code_details(const void* code, PyCodeDetails& out) noexcept {
    auto* c = static_cast<const stubs::FakeCode*>(code);
    std::strncpy(out.function, c->function, sizeof out.function - 1);
    out.function[sizeof out.function - 1] = '\0';
    std::strncpy(out.file, c->file, sizeof out.file - 1);
    out.file[sizeof out.file - 1] = '\0';
    out.first_line = c->first_line;
    out.line_table = reinterpret_cast<const uint8_t*>(c->function);  // any bytes will do
    out.line_table_len = std::strlen(c->function);
    return true;
}

int install_hooks() noexcept {
    ++stubs::install_calls;
    return stubs::install_result;
}
int patch_new_objects() noexcept { return 0; }
void uninstall_hooks() noexcept { ++stubs::uninstall_calls; }
unsigned patched_slot_count() noexcept { return 0; }
void hooks_adopt_in_child() noexcept {}

namespace got {
void lock_for_fork() noexcept {}
void unlock_after_fork_parent() noexcept {}
void reset_after_fork_child() noexcept {}
}  // namespace got

// No interpreter here: a session asking for the Python allocator hooks is refused.
bool python_allocators_available() noexcept { return false; }
void python_allocators_want(bool) noexcept {}
int python_allocators_install() noexcept { return 0; }
void python_allocators_uninstall() noexcept {}

void for_each_loaded_object(void (*fn)(const LoadedObject&, void*), void* ctx) noexcept {
    static const uint8_t k_build_id[4] = {0xde, 0xad, 0xbe, 0xef};
    LoadedObject o{};
    o.load_bias = 0x400000;
    o.path = "/fake/object";
    o.build_id = k_build_id;
    o.build_id_len = sizeof k_build_id;
    o.segments[0] = format::Segment{0x1000, 0x2000};
    o.n_segments = 1;
    fn(o, ctx);
}
void objects_init() noexcept {}
void objects_lock_for_fork() noexcept {}
void objects_unlock_after_fork_parent() noexcept {}
void objects_after_fork_child() noexcept {}

}  // namespace memray::payload
