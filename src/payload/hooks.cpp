// The hook functions that patched GOT slots point to, and install/uninstall (hooks.hpp).
//
// Every hook forwards to the *real* definition found by got::resolve_real() (never to "malloc"
// by name: in a non-PIE executable that name is the executable's own PLT entry, i.e. this hook).
// Hooks are noexcept, touch only globals written before any slot was patched, and record only
// while tracking is on and the calling thread is not already inside the tracker.
#include "payload/hooks.hpp"

#include <dlfcn.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <climits>
#include <cstring>
#include <type_traits>

#include "payload/api.hpp"
#include "payload/got_patch.hpp"
#include "payload/hook_list.hpp"
#include "payload/log.hpp"
#include "payload/tracker.hpp"

namespace memray::payload {
namespace {

using format::Allocator;

// Written by install_hooks() (the thread starting a session) before the first slot points at a
// hook; read by every hook afterwards. `installed` is also cleared by uninstall_hooks() and read
// by the dlopen/dlclose hooks (atomic access only). Never reset: a real pointer, once found,
// stays valid for the life of the process (resolve_real only fills empty entries).
struct HooksState {
    got::HookedSymbol symbols[k_hook_count] = {};  // names, hooks, real functions; by HookId
    bool installed = false;
    long pthread_tid_offset = -1;  // offset of the kernel tid in glibc's struct pthread
    pid_t install_pid = 0;         // the process that installed the hooks (owns the capture)
};
constinit HooksState g_hooks;

// real_<name>(): the real function, typed as the list declares it (no casts at the call sites).
#define MEMRAY_REAL_ACCESSOR(sym, ret, params, kind, need)                                      \
    using sym##_fn = ret(*) params;                                                             \
    inline sym##_fn real_##sym() noexcept {                                                     \
        return reinterpret_cast<sym##_fn>(g_hooks.symbols[unsigned(HookId::sym)].real);         \
    }
MEMRAY_PAYLOAD_HOOKS(MEMRAY_REAL_ACCESSOR)
#undef MEMRAY_REAL_ACCESSOR

inline bool should_record() noexcept { return tracking_enabled() && !ReentryGuard::active(); }

// The tracker may clobber errno; a successful allocation must not.
class ErrnoKeeper {
  public:
    ErrnoKeeper() noexcept : m_saved(errno) {}
    ~ErrnoKeeper() { errno = m_saved; }

  private:
    int m_saved;
};

void record_alloc(Allocator kind, const void* ptr, size_t size) noexcept {
    ErrnoKeeper keep;
    record_allocation(kind, ptr, size);
}

void record_dealloc(Allocator kind, const void* ptr, size_t size) noexcept {
    ErrnoKeeper keep;
    record_deallocation(kind, ptr, size);
}

long current_tid() noexcept { return syscall(SYS_gettid); }

// ---------------------------------------------------------------------------------------------
// Allocators. The real call runs with the guard set so that an allocator which calls another
// hooked function through its own GOT (jemalloc's mmap, say) is recorded once, not twice.

void* hook_malloc(size_t size) noexcept {
    void* ret;
    {
        ReentryGuard guard;
        ret = real_malloc()(size);
    }
    if (ret && should_record()) record_alloc(Allocator::Malloc, ret, size);
    return ret;
}

void hook_free(void* ptr) noexcept {
    if (ptr && should_record()) record_dealloc(Allocator::Free, ptr, 0);
    ReentryGuard guard;
    real_free()(ptr);
}

void* hook_calloc(size_t nmemb, size_t size) noexcept {
    void* ret;
    {
        ReentryGuard guard;
        ret = real_calloc()(nmemb, size);
    }
    if (ret && should_record()) record_alloc(Allocator::Calloc, ret, nmemb * size);
    return ret;
}

void* hook_realloc(void* ptr, size_t size) noexcept {
    // realloc(p, 0) releases p (glibc frees it and returns NULL): record that before the memory
    // can go to another thread.
    const bool releases = ptr && size == 0;
    if (releases && should_record()) record_dealloc(Allocator::Free, ptr, 0);
    void* ret;
    {
        ReentryGuard guard;
        ret = real_realloc()(ptr, size);
    }
    if (ret && should_record()) {
        // As memray: the old block is freed and the new one allocated by REALLOC.
        if (ptr && !releases) record_dealloc(Allocator::Free, ptr, 0);
        record_alloc(Allocator::Realloc, ret, size);
    }
    return ret;
}

int hook_posix_memalign(void** memptr, size_t alignment, size_t size) noexcept {
    int ret;
    {
        ReentryGuard guard;
        ret = real_posix_memalign()(memptr, alignment, size);
    }
    if (ret == 0 && should_record()) record_alloc(Allocator::PosixMemalign, *memptr, size);
    return ret;
}

void* hook_aligned_alloc(size_t alignment, size_t size) noexcept {
    void* ret;
    {
        ReentryGuard guard;
        ret = real_aligned_alloc()(alignment, size);
    }
    if (ret && should_record()) record_alloc(Allocator::AlignedAlloc, ret, size);
    return ret;
}

void* hook_memalign(size_t alignment, size_t size) noexcept {
    void* ret;
    {
        ReentryGuard guard;
        ret = real_memalign()(alignment, size);
    }
    if (ret && should_record()) record_alloc(Allocator::Memalign, ret, size);
    return ret;
}

void* hook_valloc(size_t size) noexcept {
    void* ret;
    {
        ReentryGuard guard;
        ret = real_valloc()(size);
    }
    if (ret && should_record()) record_alloc(Allocator::Valloc, ret, size);
    return ret;
}

void* hook_pvalloc(size_t size) noexcept {
    void* ret;
    {
        ReentryGuard guard;
        ret = real_pvalloc()(size);
    }
    if (ret && should_record()) record_alloc(Allocator::Pvalloc, ret, size);
    return ret;
}

void* mmap_common(mmap_fn real, void* addr, size_t length, int prot, int flags, int fd,
                  off_t offset) noexcept {
    void* ret;
    {
        ReentryGuard guard;
        ret = real(addr, length, prot, flags, fd, offset);
    }
    if (ret != MAP_FAILED && should_record()) record_alloc(Allocator::Mmap, ret, length);
    return ret;
}

void* hook_mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) noexcept {
    return mmap_common(real_mmap(), addr, length, prot, flags, fd, offset);
}

void* hook_mmap64(void* addr, size_t length, int prot, int flags, int fd, off_t offset) noexcept {
    return mmap_common(real_mmap64(), addr, length, prot, flags, fd, offset);
}

int hook_munmap(void* addr, size_t length) noexcept {
    if (should_record()) record_dealloc(Allocator::Munmap, addr, length);
    ReentryGuard guard;
    return real_munmap()(addr, length);
}

void hook_free_sized(void* ptr, size_t size) noexcept {
    if (ptr && should_record()) record_dealloc(Allocator::Free, ptr, 0);
    ReentryGuard guard;
    real_free_sized()(ptr, size);
}

void hook_free_aligned_sized(void* ptr, size_t alignment, size_t size) noexcept {
    if (ptr && should_record()) record_dealloc(Allocator::Free, ptr, 0);
    ReentryGuard guard;
    real_free_aligned_sized()(ptr, alignment, size);
}

// ---------------------------------------------------------------------------------------------
// Loading and unloading

void objects_changed() noexcept {
    if (__atomic_load_n(&g_hooks.installed, __ATOMIC_ACQUIRE)) patch_new_objects();
    if (tracking_enabled()) notify_objects_changed();
}

void* hook_dlopen(const char* file, int flags) noexcept {
    const void* caller = __builtin_return_address(0);
    dlopen_fn real = real_dlopen();
    void* handle = nullptr;
    char path[PATH_MAX];
    const char* name = file;
    if (file && !strchr(file, '/')) {
        // A name already loaded (as a path's basename or a soname) is returned by the loader without
        // a search; a path from the caller's RUNPATH could load a second copy instead.
        handle = real(file, flags | RTLD_NOLOAD);
        if (!handle && got::resolve_library_for_caller(file, caller, path, sizeof(path))) name = path;
    }
    if (!handle) handle = real(name, flags);
    if (handle) {
        ErrnoKeeper keep;
        objects_changed();
    }
    return handle;
}

int hook_dlclose(void* handle) noexcept {
    int ret = real_dlclose()(handle);
    ErrnoKeeper keep;
    if (__atomic_load_n(&g_hooks.installed, __ATOMIC_ACQUIRE)) got::forget_unloaded();
    if (tracking_enabled()) notify_objects_changed();
    return ret;
}

// ---------------------------------------------------------------------------------------------
// Thread names

// Variadic as declared; every option takes at most four more integer arguments, and reading all
// four whatever the option is what glibc's own prctl does before the system call.
int hook_prctl(int option, ...) noexcept {
    va_list ap;
    va_start(ap, option);
    unsigned long arg2 = va_arg(ap, unsigned long);
    unsigned long arg3 = va_arg(ap, unsigned long);
    unsigned long arg4 = va_arg(ap, unsigned long);
    unsigned long arg5 = va_arg(ap, unsigned long);
    va_end(ap);
    int ret = real_prctl()(option, arg2, arg3, arg4, arg5);
    if (ret == 0 && option == PR_SET_NAME && arg2 != 0 && should_record()) {
        char name[16];  // what the kernel keeps: 15 bytes and a NUL
        strncpy(name, reinterpret_cast<const char*>(arg2), sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        ErrnoKeeper keep;
        record_thread_name(current_tid(), name);
    }
    return ret;
}

int hook_pthread_setname_np(pthread_t thread, const char* name) noexcept {
    int ret = real_pthread_setname_np()(thread, name);
    if (ret == 0 && name && should_record()) {
        long tid = -1;
        if (pthread_equal(thread, pthread_self())) {
            tid = current_tid();
        } else if (g_hooks.pthread_tid_offset >= 0) {
            const char* pd = reinterpret_cast<const char*>(thread);
            tid = *reinterpret_cast<const pid_t*>(pd + g_hooks.pthread_tid_offset);
        }
        ErrnoKeeper keep;
        if (tid > 0) record_thread_name(tid, name);
    }
    return ret;
}

// ---------------------------------------------------------------------------------------------
// exec and _exit: the new program image, or the end of the process without atexit handlers and
// destructors (os._exit() in forked workers), would drop the writer thread and its unflushed
// blocks, so the capture is finalized first. Only the process that owns the capture does this:
// a fork child has tracking off already, and a vfork child shares our memory but must not touch
// our writer.

void finish_capture_here() noexcept {
    if (!tracking_enabled() || ReentryGuard::active() || getpid() != g_hooks.install_pid) return;
    ErrnoKeeper keep;
    memray_payload_stop();
}

int hook_execve(const char* path, char* const argv[], char* const envp[]) noexcept {
    finish_capture_here();
    return real_execve()(path, argv, envp);
}

int hook_execv(const char* path, char* const argv[]) noexcept {
    finish_capture_here();
    return real_execv()(path, argv);
}

int hook_execvp(const char* file, char* const argv[]) noexcept {
    finish_capture_here();
    return real_execvp()(file, argv);
}

int hook_execvpe(const char* file, char* const argv[], char* const envp[]) noexcept {
    finish_capture_here();
    return real_execvpe()(file, argv, envp);
}

int hook_fexecve(int fd, char* const argv[], char* const envp[]) noexcept {
    finish_capture_here();
    return real_fexecve()(fd, argv, envp);
}

[[noreturn]] void exit_now(_exit_fn real, int status) noexcept {
    finish_capture_here();
    if (real) real(status);
    syscall(SYS_exit_group, status);  // only if the real one returned or was never found
    __builtin_unreachable();
}

void hook__exit(int status) noexcept { exit_now(real__exit(), status); }

// glibc exports _Exit as its own symbol (an alias of _exit): a program that calls it has a slot
// of that name.
void hook__Exit(int status) noexcept { exit_now(real__Exit(), status); }

// ---------------------------------------------------------------------------------------------

const void* self_address() noexcept { return reinterpret_cast<const void*>(&install_hooks); }

// Each body must have its line's signature: a slot patched with a mismatched hook would pass the
// caller's arguments wrongly.
#define MEMRAY_CHECK_HOOK(sym, ret, params, kind, need)                                         \
    static_assert(std::is_same_v<decltype(&hook_##sym), ret(*) params noexcept>,                \
                  "hook_" #sym " does not have the signature hook_list.hpp gives");
MEMRAY_PAYLOAD_HOOKS(MEMRAY_CHECK_HOOK)
#undef MEMRAY_CHECK_HOOK

// Names and hooks only: `real` is filled once by resolve_real and never rewritten.
void init_table() noexcept {
#define MEMRAY_TABLE_ENTRY(sym, ret, params, kind, need)                                        \
    g_hooks.symbols[unsigned(HookId::sym)].name = #sym;                                         \
    g_hooks.symbols[unsigned(HookId::sym)].hook = reinterpret_cast<void*>(&hook_##sym);
    MEMRAY_PAYLOAD_HOOKS(MEMRAY_TABLE_ENTRY)
#undef MEMRAY_TABLE_ENTRY
}

// glibc publishes struct pthread's layout for libthread_db; trust it only if it finds our own tid.
void find_pthread_tid_offset() noexcept {
    if (g_hooks.pthread_tid_offset >= 0) return;
    got::HookedSymbol desc{"_thread_db_pthread_tid", nullptr, nullptr};
    if (got::resolve_real(&desc, 1, self_address()) == 0) return;
    const auto* d = static_cast<const uint32_t*>(desc.real);  // {size in bits, count, offset}
    if (d[0] != 32 || d[2] > 4096) return;
    const auto* self = reinterpret_cast<const char*>(pthread_self());
    if (*reinterpret_cast<const pid_t*>(self + d[2]) == pid_t(current_tid()))
        g_hooks.pthread_tid_offset = d[2];
}

}  // namespace

int install_hooks() noexcept {
    ReentryGuard guard;  // anything we call may allocate; none of it is the program's
    init_table();
    got::resolve_real(g_hooks.symbols, k_hook_count, self_address());
    for (unsigned i = 0; i < k_hook_count; ++i) {
        if (k_hook_info[i].need == HookNeed::Required && !g_hooks.symbols[i].real) {
            log(LogLevel::Error, "cannot find the real %s in any loaded object; not tracking",
                g_hooks.symbols[i].name);
            return -ENOENT;
        }
    }
    find_pthread_tid_offset();
    g_hooks.install_pid = getpid();
    __atomic_store_n(&g_hooks.installed, true, __ATOMIC_RELEASE);
    int ret = got::patch_objects(g_hooks.symbols, k_hook_count, self_address(), false);
    if (ret < 0) {
        log(LogLevel::Error, "patching GOT slots failed (%s); not tracking", strerror(-ret));
        uninstall_hooks();
        return ret;
    }
    log(LogLevel::Debug, "patched %u GOT slots", got::patched_slot_count());
    return 0;
}

int patch_new_objects() noexcept {
    if (!__atomic_load_n(&g_hooks.installed, __ATOMIC_ACQUIRE)) return 0;
    ReentryGuard guard;
    int ret = got::patch_objects(g_hooks.symbols, k_hook_count, self_address(), true);
    return ret < 0 ? ret : 0;
}

void uninstall_hooks() noexcept {
    ReentryGuard guard;
    __atomic_store_n(&g_hooks.installed, false, __ATOMIC_RELEASE);
    got::unpatch_all();
}

unsigned patched_slot_count() noexcept { return got::patched_slot_count(); }

}  // namespace memray::payload
