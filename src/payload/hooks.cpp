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
#include "payload/fast_unwind.hpp"
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
    fast_unwind_objects_changed();  // the unwind rules of unmapped code must not be used again
    if (tracking_enabled()) notify_objects_changed();
    return ret;
}

// ---------------------------------------------------------------------------------------------
// dlsym and dlvsym: a program (ctypes.CDLL(None).malloc, a plugin host) that looks an allocator
// up at runtime calls it through a pointer, never through a GOT slot; it gets our hook instead,
// which forwards to the real one once tracking stops.
//
// glibc resolves RTLD_NEXT, and RTLD_DEFAULT in the caller's own scope, from dlsym's return
// address. Called from a C++ hook that address would be the payload's, so the entry points are
// a few instructions of assembly that jump (keeping the caller's return address) to the real
// function for RTLD_NEXT and for every name we do not hook; only the lookups of our allocator
// names are answered by looking the name up ourselves. RTLD_NEXT is never answered with a hook:
// an interposer that wraps malloc that way would call itself through us for ever.

}  // namespace
}  // namespace memray::payload

extern "C" {
// Read by the entry points below; written by install_hooks() before any slot points to them.
// `used`: only the assembly refers to these, and the payload is built with link-time
// optimization, which would otherwise drop them as unreferenced.
#define MEMRAY_ASM_REFERENCED __attribute__((visibility("hidden"), used))
MEMRAY_ASM_REFERENCED void* memray_real_dlsym = nullptr;
MEMRAY_ASM_REFERENCED void* memray_real_dlvsym = nullptr;
MEMRAY_ASM_REFERENCED bool memray_dlsym_name_hooked(const char* name) noexcept;
MEMRAY_ASM_REFERENCED void* memray_dlsym_hooked(void* handle, const char* name) noexcept;
MEMRAY_ASM_REFERENCED void* memray_dlvsym_hooked(void* handle, const char* name,
                                                 const char* version) noexcept;
#undef MEMRAY_ASM_REFERENCED
__attribute__((visibility("hidden"))) void* memray_hook_dlsym(void* handle, const char* name) noexcept;
__attribute__((visibility("hidden"))) void* memray_hook_dlvsym(void* handle, const char* name,
                                                               const char* version) noexcept;
}

#if defined(__x86_64__)
// rdi handle, rsi name, rdx version (dlvsym). RTLD_NEXT is ((void*)-1). Three pushes after the
// return address leave rsp 16-byte aligned for the call, as the ABI wants. endbr64 (a no-op
// without CET) because the program reaches this through a pointer.
#define MEMRAY_DLSYM_ENTRY(entry, checked, real)                                                \
    ".text\n.p2align 4\n.globl " #entry "\n.hidden " #entry "\n.type " #entry ",@function\n"   \
    #entry ":\n"                                                                                \
    "    .cfi_startproc\n"                                                                      \
    "    endbr64\n"                                                                             \
    "    cmpq $-1, %rdi\n"                                                                      \
    "    je 1f\n"                                                                               \
    "    pushq %rdi\n    .cfi_adjust_cfa_offset 8\n"                                            \
    "    pushq %rsi\n    .cfi_adjust_cfa_offset 8\n"                                            \
    "    pushq %rdx\n    .cfi_adjust_cfa_offset 8\n"                                            \
    "    movq %rsi, %rdi\n"                                                                     \
    "    call memray_dlsym_name_hooked\n"                                                       \
    "    popq %rdx\n    .cfi_adjust_cfa_offset -8\n"                                            \
    "    popq %rsi\n    .cfi_adjust_cfa_offset -8\n"                                            \
    "    popq %rdi\n    .cfi_adjust_cfa_offset -8\n"                                            \
    "    testb %al, %al\n"                                                                      \
    "    jz 1f\n"                                                                               \
    "    jmp " #checked "\n"                                                                    \
    "1:  jmp *" #real "(%rip)\n"                                                                \
    "    .cfi_endproc\n"                                                                        \
    ".size " #entry ", .-" #entry "\n"
asm(MEMRAY_DLSYM_ENTRY(memray_hook_dlsym, memray_dlsym_hooked, memray_real_dlsym)
    MEMRAY_DLSYM_ENTRY(memray_hook_dlvsym, memray_dlvsym_hooked, memray_real_dlvsym));
#undef MEMRAY_DLSYM_ENTRY
#else
// Without the assembly entry points, RTLD_NEXT and scope-relative lookups would be resolved from
// the payload: the list keeps dlsym, but install_hooks() does not patch it (real left null).
void* memray_hook_dlsym(void* handle, const char* name) noexcept {
    return memray_dlsym_hooked(handle, name);
}
void* memray_hook_dlvsym(void* handle, const char* name, const char* version) noexcept {
    return memray_dlvsym_hooked(handle, name, version);
}
#endif

namespace memray::payload {
namespace {

// The hook of an Allocator/Deallocator whose real definition is `found`, else `found`.
void* hook_for(void* found) noexcept {
    if (!found) return found;
    for (unsigned i = 0; i < k_hook_count; ++i) {
        HookKind kind = k_hook_info[i].kind;
        if ((kind == HookKind::Allocator || kind == HookKind::Deallocator) &&
            g_hooks.symbols[i].real == found)
            return g_hooks.symbols[i].hook;
    }
    return found;
}

constexpr auto& hook_dlsym = memray_hook_dlsym;
constexpr auto& hook_dlvsym = memray_hook_dlvsym;

}  // namespace
}  // namespace memray::payload

using memray::payload::g_hooks;

extern "C" bool memray_dlsym_name_hooked(const char* name) noexcept {
    using namespace memray::payload;
    // Only while tracking: a pointer taken afterwards needs no hook. (One taken while tracking
    // keeps its hook, which only forwards once tracking stopped.)
    if (!name || !__atomic_load_n(&g_hooks.installed, __ATOMIC_ACQUIRE)) return false;
    for (unsigned i = 0; i < k_hook_count; ++i) {
        HookKind kind = k_hook_info[i].kind;
        if ((kind == HookKind::Allocator || kind == HookKind::Deallocator) &&
            g_hooks.symbols[i].real && std::strcmp(name, k_hook_info[i].name) == 0)
            return true;
    }
    return false;
}

extern "C" void* memray_dlsym_hooked(void* handle, const char* name) noexcept {
    using namespace memray::payload;
    return hook_for(real_dlsym()(handle, name));
}

extern "C" void* memray_dlvsym_hooked(void* handle, const char* name, const char* version) noexcept {
    using namespace memray::payload;
    return hook_for(real_dlvsym()(handle, name, version));
}

namespace memray::payload {
namespace {

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
    stop_before_exit();
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

// glibc's execl* call its internal execve directly, never through a slot we patch: they get hooks
// of their own, which gather the list and go on through the real vector form. `envp` (execle)
// receives the pointer after the terminating NULL when `with_env`.
#define MEMRAY_EXEC_LIST(first, argv, envp, with_env)                                           \
    size_t argc = 1;                                                                            \
    {                                                                                           \
        va_list count;                                                                          \
        va_start(count, first);                                                                 \
        while (va_arg(count, const char*)) ++argc;                                              \
        va_end(count);                                                                          \
    }                                                                                           \
    auto** argv = static_cast<char**>(__builtin_alloca((argc + 1) * sizeof(char*)));            \
    char* const* envp = nullptr;                                                                \
    {                                                                                           \
        va_list ap;                                                                             \
        va_start(ap, first);                                                                    \
        argv[0] = const_cast<char*>(first);                                                     \
        for (size_t i = 1; i <= argc; ++i) argv[i] = va_arg(ap, char*);                         \
        if (with_env) envp = va_arg(ap, char* const*);                                          \
        va_end(ap);                                                                             \
    }                                                                                           \
    (void)envp

int hook_execl(const char* path, const char* arg, ...) noexcept {
    MEMRAY_EXEC_LIST(arg, argv, envp, false);
    finish_capture_here();
    return real_execv()(path, argv);
}

int hook_execlp(const char* file, const char* arg, ...) noexcept {
    MEMRAY_EXEC_LIST(arg, argv, envp, false);
    finish_capture_here();
    return real_execvp()(file, argv);
}

int hook_execle(const char* path, const char* arg, ...) noexcept {
    MEMRAY_EXEC_LIST(arg, argv, envp, true);
    finish_capture_here();
    return real_execve()(path, argv, envp);
}
#undef MEMRAY_EXEC_LIST

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
#if defined(__x86_64__)
    memray_real_dlsym = g_hooks.symbols[unsigned(HookId::dlsym)].real;
    memray_real_dlvsym = g_hooks.symbols[unsigned(HookId::dlvsym)].real;
#else
    g_hooks.symbols[unsigned(HookId::dlsym)].real = nullptr;   // not patched: see hook_dlsym
    g_hooks.symbols[unsigned(HookId::dlvsym)].real = nullptr;
#endif
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

void hooks_adopt_in_child() noexcept { g_hooks.install_pid = getpid(); }

}  // namespace memray::payload
