// The one list of functions the payload hooks. Adding a hook is one line here plus its body
// (hook_<name>) in hooks.cpp; the enum, the typed access to the real function, the patch table,
// the check that the body has the listed signature, and the names the attacher uses all come
// from this list. Free of payload internals on purpose: src/inject includes it for the names.
#pragma once

// X(name, return type, (parameter types), kind, need)
//   name  the C symbol; also the enum entry HookId::name, the body hook_name, real_name()
//   types as the C library declares the function (prctl and execl* are variadic there, so are
//         their hooks);
//         _exit and _Exit do not return, their hooks neither (the type cannot say so)
//   kind  HookKind below: what the hook is for
//   need  Required: tracking does not start when no loaded object defines it; else Optional
// The parameter types are only spelled out where X uses them (hooks.cpp), so a user that only
// wants the names needs none of the headers that declare them.
#define MEMRAY_PAYLOAD_HOOKS(X)                                                                 \
    X(malloc, void*, (size_t), Allocator, Required)                                             \
    X(free, void, (void*), Deallocator, Required)                                               \
    X(calloc, void*, (size_t, size_t), Allocator, Required)                                     \
    X(realloc, void*, (void*, size_t), Allocator, Required)                                     \
    X(posix_memalign, int, (void**, size_t, size_t), Allocator, Optional)                       \
    X(aligned_alloc, void*, (size_t, size_t), Allocator, Optional)                              \
    X(memalign, void*, (size_t, size_t), Allocator, Optional)                                   \
    X(valloc, void*, (size_t), Allocator, Optional)                                             \
    X(pvalloc, void*, (size_t), Allocator, Optional)                                            \
    X(mmap, void*, (void*, size_t, int, int, int, off_t), Allocator, Optional)                  \
    X(mmap64, void*, (void*, size_t, int, int, int, off_t), Allocator, Optional)                \
    X(munmap, int, (void*, size_t), Deallocator, Optional)                                      \
    X(free_sized, void, (void*, size_t), Deallocator, Optional)                                 \
    X(free_aligned_sized, void, (void*, size_t, size_t), Deallocator, Optional)                 \
    X(dlopen, void*, (const char*, int), Loader, Optional)                                      \
    X(dlclose, int, (void*), Loader, Optional)                                                  \
    X(dlsym, void*, (void*, const char*), Resolver, Optional)                                   \
    X(dlvsym, void*, (void*, const char*, const char*), Resolver, Optional)                     \
    X(prctl, int, (int, ...), ThreadName, Optional)                                             \
    X(pthread_setname_np, int, (pthread_t, const char*), ThreadName, Optional)                  \
    X(execve, int, (const char*, char* const*, char* const*), Exec, Optional)                   \
    X(execv, int, (const char*, char* const*), Exec, Optional)                                  \
    X(execvp, int, (const char*, char* const*), Exec, Optional)                                 \
    X(execvpe, int, (const char*, char* const*, char* const*), Exec, Optional)                  \
    X(fexecve, int, (int, char* const*, char* const*), Exec, Optional)                          \
    X(execl, int, (const char*, const char*, ...), Exec, Optional)                              \
    X(execlp, int, (const char*, const char*, ...), Exec, Optional)                             \
    X(execle, int, (const char*, const char*, ...), Exec, Optional)                             \
    X(_exit, void, (int), Exit, Optional)                                                       \
    X(_Exit, void, (int), Exit, Optional)

namespace memray::payload {

enum class HookKind : unsigned char {
    Allocator,    // returns memory: recorded after the real call returns
    Deallocator,  // releases memory: recorded before the real call (the address may be reused)
    Loader,       // patches objects loaded later, refreshes the capture's object list
    Resolver,     // dlsym/dlvsym: a looked-up Allocator/Deallocator resolves to its hook
    ThreadName,   // renames a thread: ThreadInfo records
    Exec,         // finalizes the capture before the program image is replaced
    Exit,         // finalizes the capture before the process ends without running destructors
};

enum class HookNeed : unsigned char { Required, Optional };

enum class HookId : unsigned {
#define MEMRAY_HOOK_ID(sym, ret, params, kind, need) sym,
    MEMRAY_PAYLOAD_HOOKS(MEMRAY_HOOK_ID)
#undef MEMRAY_HOOK_ID
};

struct HookInfo {
    const char* name;
    HookKind kind;
    HookNeed need;
};

inline constexpr HookInfo k_hook_info[] = {
#define MEMRAY_HOOK_INFO(sym, ret, params, kind, need) {#sym, HookKind::kind, HookNeed::need},
    MEMRAY_PAYLOAD_HOOKS(MEMRAY_HOOK_INFO)
#undef MEMRAY_HOOK_INFO
};

inline constexpr unsigned k_hook_count = sizeof(k_hook_info) / sizeof(k_hook_info[0]);

constexpr const HookInfo& hook_info(HookId id) { return k_hook_info[unsigned(id)]; }
constexpr const char* hook_name(HookId id) { return hook_info(id).name; }

}  // namespace memray::payload
