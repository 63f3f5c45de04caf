// Preloaded into a real interpreter (LD_PRELOAD) by probe_python.sh: installs the hooks from its
// constructor, exactly where the payload would, and lets probe_python.py ask what was seen.
#include <unistd.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "payload/got_patch.hpp"
#include "payload/hooks.hpp"
#include "test_tracker.hpp"

using memray::format::Allocator;
namespace payload = memray::payload;
namespace tt = memray::payload::test;

namespace {
unsigned g_slots_at_start = 0;

__attribute__((constructor)) void probe_start() {
    if (payload::install_hooks() != 0) {
        fprintf(stderr, "gp_probe: install_hooks failed\n");
        _exit(3);
    }
    g_slots_at_start = payload::patched_slot_count();
    tt::set_enabled(true);
}
}  // namespace

extern "C" {
__attribute__((visibility("default"))) unsigned gp_probe_slots_at_start() { return g_slots_at_start; }
__attribute__((visibility("default"))) unsigned gp_probe_slots_now() { return payload::patched_slot_count(); }
__attribute__((visibility("default"))) void gp_probe_reset() { tt::clear(); }
// Allocation events (malloc/calloc/realloc) whose size is within [size, size + slack].
__attribute__((visibility("default"))) unsigned gp_probe_count(size_t size, size_t slack) {
    unsigned n = 0;
    for (size_t i = 0; i < tt::event_count(); ++i) {
        const tt::Event& e = tt::event(i);
        if ((e.kind == Allocator::Malloc || e.kind == Allocator::Calloc || e.kind == Allocator::Realloc) &&
            e.size >= size && e.size <= size + slack)
            ++n;
    }
    return n;
}
// Lists each patched slot's object and the function it held (for looking, not checking).
__attribute__((visibility("default"))) void gp_probe_dump() {
    memray::payload::got::for_each_patched_slot(
        [](uintptr_t slot, uintptr_t previous, void*) {
            Dl_info where{}, what{};
            dladdr(reinterpret_cast<void*>(slot), &where);
            dladdr(reinterpret_cast<void*>(previous), &what);
            fprintf(stderr, "  %-60s %-20s -> %s\n", where.dli_fname ? where.dli_fname : "?",
                    what.dli_sname ? what.dli_sname : "?", what.dli_fname ? what.dli_fname : "?");
        },
        nullptr);
}
__attribute__((visibility("default"))) unsigned gp_probe_uninstall() {
    tt::set_enabled(false);
    payload::uninstall_hooks();
    return payload::patched_slot_count();
}
}
