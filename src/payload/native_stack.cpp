#include "payload/native_stack.hpp"
#include "payload/fast_unwind.hpp"
#include "payload/thread_state.hpp"

#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <dlfcn.h>
#include <link.h>

#include <cstring>

namespace memray::payload {

// Address range of the payload's executable segments: its frames (hook, tracker, walker) are
// not part of the program's stack. The tracker reads them too (thread_state.hpp).
uintptr_t g_self_lo = 0;
uintptr_t g_self_hi = 0;
uintptr_t g_eval_lo = 0;
uintptr_t g_eval_hi = 0;

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
    // CPython's eval loop (3.8-3.13 export it), where the tracker splits a hybrid stack.
    if (!g_eval_hi) {
        void* eval = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
        Dl_info info;
        ElfW(Sym)* sym = nullptr;
        if (eval && dladdr1(eval, &info, reinterpret_cast<void**>(&sym), RTLD_DL_SYMENT) &&
            sym && sym->st_size > 0) {
            g_eval_lo = reinterpret_cast<uintptr_t>(eval);
            g_eval_hi = g_eval_lo + sym->st_size;
        }
    }
}

}  // namespace memray::payload
