// Hooks on CPython's PyMem and PyObject allocator domains (--trace-python-allocators).
//
// Why installing and removing them is safe while the program runs (docs/architecture.md):
// - Both are done holding the GIL, and CPython only calls the PyMem/PyObject domains with the
//   GIL held, so no thread is inside one of our hooks at that moment, and no thread is between
//   reading the allocator table and calling through it.
// - Each hook's ctx points to the allocator that was installed before ours (`previous`), which
//   stays in static memory for the life of the process: a block allocated before the hooks is
//   freed by the same allocator that made it, through them or after them.
// - Removing puts back exactly that allocator. If another tool put its own allocator on top of
//   ours meanwhile, removing ours would cut its chain: ours then stay, forwarding only.
// The interpreter is reached through dlsym (no link with libpython, whose version we do not
// know at build time); the structure and the domain numbers are CPython's stable C API (3.5+).
#include "payload/python_allocators.hpp"

#include <dlfcn.h>

#include <cerrno>
#include <cstddef>

#include "format/records.hpp"
#include "payload/log.hpp"
#include "payload/tracker.hpp"

namespace memray::payload {
namespace {

struct PyMemAllocatorEx {
    void* ctx;
    void* (*malloc)(void* ctx, size_t size);
    void* (*calloc)(void* ctx, size_t nelem, size_t elsize);
    void* (*realloc)(void* ctx, void* ptr, size_t new_size);
    void (*free)(void* ctx, void* ptr);
};

// PyMemAllocatorDomain: PYMEM_DOMAIN_RAW = 0 stays untouched (it is malloc, which the GOT hooks
// see already, and may be called without the GIL).
constexpr int k_domains[] = {1, 2};  // PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ
constexpr int k_domain_count = 2;

struct PythonApi {
    void (*get_allocator)(int domain, PyMemAllocatorEx* out) = nullptr;
    void (*set_allocator)(int domain, PyMemAllocatorEx* in) = nullptr;
    int (*gil_ensure)() = nullptr;  // PyGILState_STATE is an enum: an int
    void (*gil_release)(int) = nullptr;
    int (*is_initialized)() = nullptr;
    int (*is_finalizing)() = nullptr;  // _Py_IsFinalizing (3.8-3.12) / Py_IsFinalizing (3.13)
};

// `api` is resolved once (first call, on the thread starting a session) and never changes.
// `previous`, `ours`, `installed` and `stranded` are only touched with the GIL held. `previous`
// is never cleared: a hook still finds a valid allocator through its ctx after removal.
// `wanted` is written by a start (under the session lock) and by a stop (before it takes the
// GIL); an install reads it under the GIL, the hooks read it on every call.
struct PyAllocState {
    PythonApi api;
    bool resolved = false;
    bool installed = false;
    bool stranded = false;  // ours are left inside another tool's chain
    bool wanted = false;
    PyMemAllocatorEx previous[k_domain_count] = {};
    PyMemAllocatorEx ours[k_domain_count] = {};
};
constinit PyAllocState g_pyalloc;

// Hooks that stay in place after a stop (left in another tool's chain, inherited by a fork child)
// must not record into a later session that did not ask for them: `wanted` is that session's wish.
inline bool recording() noexcept {
    return __atomic_load_n(&g_pyalloc.wanted, __ATOMIC_RELAXED) && tracking_enabled();
}

// The real call runs under the guard: the allocator below may be malloc (PYTHONMALLOC=malloc,
// or pymalloc's arenas and large blocks), which must not be recorded a second time as MALLOC.
void* hook_py_malloc(void* ctx, size_t size) noexcept {
    auto* prev = static_cast<const PyMemAllocatorEx*>(ctx);
    void* ret;
    {
        ReentryGuard guard;
        ret = prev->malloc(prev->ctx, size);
    }
    if (ret && recording()) {
        ErrnoKeeper keep;
        record_allocation(format::Allocator::PymallocMalloc, ret, size);
    }
    return ret;
}

void* hook_py_calloc(void* ctx, size_t nelem, size_t elsize) noexcept {
    auto* prev = static_cast<const PyMemAllocatorEx*>(ctx);
    void* ret;
    {
        ReentryGuard guard;
        ret = prev->calloc(prev->ctx, nelem, elsize);
    }
    if (ret && recording()) {
        ErrnoKeeper keep;
        record_allocation(format::Allocator::PymallocCalloc, ret, nelem * elsize);
    }
    return ret;
}

void* hook_py_realloc(void* ctx, void* ptr, size_t size) noexcept {
    auto* prev = static_cast<const PyMemAllocatorEx*>(ctx);
    void* ret;
    {
        ReentryGuard guard;
        ret = prev->realloc(prev->ctx, ptr, size);
    }
    // As the GOT hook and memray: the old block is freed, the new one allocated by REALLOC.
    // PyMem_Realloc(p, 0) returns a block, so there is no "realloc frees" case here.
    if (ret && recording()) {
        ErrnoKeeper keep;
        if (ptr) record_deallocation(format::Allocator::PymallocFree, ptr, 0);
        record_allocation(format::Allocator::PymallocRealloc, ret, size);
    }
    return ret;
}

void hook_py_free(void* ctx, void* ptr) noexcept {
    auto* prev = static_cast<const PyMemAllocatorEx*>(ctx);
    // Before the real free: once freed, another thread may get the address back.
    if (ptr && recording()) {
        ErrnoKeeper keep;
        record_deallocation(format::Allocator::PymallocFree, ptr, 0);
    }
    ReentryGuard guard;
    prev->free(prev->ctx, ptr);
}

template <class F>
bool lookup(F& out, const char* name) noexcept {
    out = reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
    return out != nullptr;
}

bool resolve() noexcept {
    if (g_pyalloc.resolved) return true;
    PythonApi a;
    bool ok = lookup(a.get_allocator, "PyMem_GetAllocator") &&
              lookup(a.set_allocator, "PyMem_SetAllocator") &&
              lookup(a.gil_ensure, "PyGILState_Ensure") &&
              lookup(a.gil_release, "PyGILState_Release") &&
              lookup(a.is_initialized, "Py_IsInitialized");
    if (!ok) return false;
    if (!lookup(a.is_finalizing, "Py_IsFinalizing")) lookup(a.is_finalizing, "_Py_IsFinalizing");
    g_pyalloc.api = a;
    g_pyalloc.resolved = true;
    return true;
}

// A thread that takes the GIL while the interpreter finalizes is ended by CPython
// (PyThread_exit_thread): never try then.
bool interpreter_running() noexcept {
    const PythonApi& a = g_pyalloc.api;
    return a.is_initialized() && !(a.is_finalizing && a.is_finalizing());
}

bool same(const PyMemAllocatorEx& a, const PyMemAllocatorEx& b) noexcept {
    return a.ctx == b.ctx && a.malloc == b.malloc && a.calloc == b.calloc &&
           a.realloc == b.realloc && a.free == b.free;
}

class GilHold {
  public:
    GilHold() noexcept : m_state(g_pyalloc.api.gil_ensure()) {}
    ~GilHold() { g_pyalloc.api.gil_release(m_state); }
    GilHold(const GilHold&) = delete;
    GilHold& operator=(const GilHold&) = delete;

  private:
    int m_state;
};

}  // namespace

bool python_allocators_available() noexcept { return resolve() && interpreter_running(); }

void python_allocators_want(bool on) noexcept {
    __atomic_store_n(&g_pyalloc.wanted, on, __ATOMIC_RELEASE);
}

int python_allocators_install() noexcept {
    ReentryGuard guard;  // the GIL's thread state and anything else here is ours, not the program's
    if (!resolve()) return -ENOSYS;
    if (!interpreter_running()) return -ESRCH;
    GilHold gil;
    if (!__atomic_load_n(&g_pyalloc.wanted, __ATOMIC_ACQUIRE)) return 0;  // a stop came first
    if (g_pyalloc.installed) return 0;
    if (g_pyalloc.stranded) {
        // previous[] is part of the chain of the allocator on top of ours: overwriting it with
        // the current allocator would make that chain a loop.
        log(LogLevel::Error, "another tool replaced the Python allocators on top of ours; cannot "
                             "trace them again in this process");
        return -EBUSY;
    }
    for (int i = 0; i < k_domain_count; ++i) {
        g_pyalloc.api.get_allocator(k_domains[i], &g_pyalloc.previous[i]);
        g_pyalloc.ours[i] = {&g_pyalloc.previous[i], hook_py_malloc, hook_py_calloc,
                             hook_py_realloc, hook_py_free};
    }
    for (int i = 0; i < k_domain_count; ++i) g_pyalloc.api.set_allocator(k_domains[i], &g_pyalloc.ours[i]);
    g_pyalloc.installed = true;
    log(LogLevel::Debug, "Python allocator hooks installed");
    return 0;
}

void python_allocators_uninstall() noexcept {
    ReentryGuard guard;
    if (!g_pyalloc.resolved) return;
    python_allocators_want(false);
    if (!interpreter_running()) return;  // ours stay and forward: tracking is off
    GilHold gil;  // an install waiting for the GIL sees `wanted` off once it has it
    if (!g_pyalloc.installed) return;
    PyMemAllocatorEx current[k_domain_count];
    bool ours_on_top = true;
    for (int i = 0; i < k_domain_count; ++i) {
        g_pyalloc.api.get_allocator(k_domains[i], &current[i]);
        ours_on_top = ours_on_top && same(current[i], g_pyalloc.ours[i]);
    }
    g_pyalloc.installed = false;
    if (!ours_on_top) {
        g_pyalloc.stranded = true;
        log(LogLevel::Warning, "the Python allocators were replaced after ours; leaving ours "
                               "in place (they only forward now)");
        return;
    }
    for (int i = 0; i < k_domain_count; ++i)
        g_pyalloc.api.set_allocator(k_domains[i], &g_pyalloc.previous[i]);
    log(LogLevel::Debug, "Python allocator hooks removed");
}

}  // namespace memray::payload
