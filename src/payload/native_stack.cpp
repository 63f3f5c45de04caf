#include "payload/native_stack.hpp"
#include "payload/fast_unwind.hpp"
#include "payload/thread_state.hpp"

#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <link.h>

#include <cstring>

namespace memray::payload {

// Address range of the payload's executable segments: its frames (hook, tracker, walker) are
// not part of the program's stack. The tracker reads them too (thread_state.hpp).
uintptr_t g_self_lo = 0;
uintptr_t g_self_hi = 0;

namespace {

int find_self(dl_phdr_info* info, size_t, void* data) noexcept {
    uintptr_t probe = reinterpret_cast<uintptr_t>(data);
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
        uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        uintptr_t hi = lo + ph.p_memsz;
        if (probe >= lo && probe < hi) {
            g_self_lo = lo;
            g_self_hi = hi;
            return 1;
        }
    }
    return 0;
}

}  // namespace

void native_stack_init() noexcept {
    // Per-thread caches: no lock shared between threads while unwinding.
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    fast_unwind_init();
    if (!g_self_hi) {
        dl_iterate_phdr(find_self, reinterpret_cast<void*>(&native_stack_init));
    }
}

}  // namespace memray::payload
