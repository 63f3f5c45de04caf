// Loaded objects with their build-ids, for Object records (objects.hpp).
#include "payload/objects.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "payload/got_patch.hpp"
#include "payload/lock.hpp"

namespace memray::payload {
namespace {

Mutex g_walk_lock;  // objects.hpp: held across fork()

// The loader's list lock inside ld.so's `_rtld_global`, or null when not found (objects.hpp).
pthread_mutex_t* g_loader_list_lock = nullptr;

struct ProbeContext {
    unsigned char* base;
    size_t size;
    const unsigned char* before;  // the same bytes just before the walk
    pid_t tid;
    pthread_mutex_t* found;
    int candidates;
};

unsigned char g_probe_copy[16384];

// Runs while dl_iterate_phdr holds the list lock for this thread: the lock is the recursive
// mutex that this thread took once more than it held before the walk (in an attach, the loader's
// other lock is held too: the payload's constructor runs inside dlopen).
int probe_callback(dl_phdr_info*, size_t, void* data) {
    auto& ctx = *static_cast<ProbeContext*>(data);
    for (size_t off = 0; off + sizeof(pthread_mutex_t) <= ctx.size; off += alignof(pthread_mutex_t)) {
        auto* m = reinterpret_cast<pthread_mutex_t*>(ctx.base + off);
        pthread_mutex_t was;
        std::memcpy(&was, ctx.before + off, sizeof was);
        unsigned held_before = was.__data.__owner == ctx.tid ? was.__data.__count : 0;
        if (m->__data.__lock != 0 && m->__data.__owner == ctx.tid &&
            m->__data.__count == held_before + 1 &&
            (m->__data.__kind & 0x7f) == PTHREAD_MUTEX_RECURSIVE_NP) {
            ctx.found = m;
            ++ctx.candidates;
        }
    }
    return 1;  // one call is enough
}

struct IterateContext {
    void (*fn)(const LoadedObject&, void*);
    void* ctx;
    size_t index;
};

// The GNU build-id note of an object, from its PT_NOTE segments (already mapped).
void find_build_id(const dl_phdr_info* info, LoadedObject& obj) noexcept {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_NOTE) continue;
        const auto* p = reinterpret_cast<const uint8_t*>(info->dlpi_addr + ph.p_vaddr);
        const uint8_t* end = p + ph.p_memsz;
        // GNU property notes live in an 8-byte-aligned PT_NOTE and are padded to 8; the rest to 4.
        const size_t align = ph.p_align >= 8 ? 8 : 4;
        auto round = [align](size_t n) { return (n + align - 1) & ~(align - 1); };
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const auto* nh = reinterpret_cast<const ElfW(Nhdr)*>(p);
            const uint8_t* name = p + sizeof(ElfW(Nhdr));
            const uint8_t* desc = name + round(nh->n_namesz);
            if (desc + nh->n_descsz > end) break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                obj.build_id = desc;
                obj.build_id_len = nh->n_descsz;
                return;
            }
            p = desc + round(nh->n_descsz);
        }
    }
}

int iterate_callback(dl_phdr_info* info, size_t, void* data) {
    auto& ctx = *static_cast<IterateContext*>(data);
    const size_t index = ctx.index++;
    LoadedObject obj{};
    obj.load_bias = info->dlpi_addr;
    char exe[PATH_MAX];
    if (index == 0 && (!info->dlpi_name || !*info->dlpi_name)) {
        obj.path = got::executable_path(exe, sizeof(exe)) ? exe : "";
    } else {
        obj.path = info->dlpi_name ? info->dlpi_name : "";
    }
    find_build_id(info, obj);
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD) continue;
        if (obj.n_segments == sizeof(obj.segments) / sizeof(obj.segments[0])) break;
        obj.segments[obj.n_segments++] = format::Segment{ph.p_vaddr, ph.p_memsz};
    }
    ctx.fn(obj, ctx.ctx);
    return 0;
}

}  // namespace

void for_each_loaded_object(void (*fn)(const LoadedObject&, void*), void* ctx) noexcept {
    IterateContext ictx{fn, ctx, 0};
    LockGuard lock(g_walk_lock);
    dl_iterate_phdr(iterate_callback, &ictx);
}

void objects_init() noexcept {
    if (g_loader_list_lock) return;
    void* global = dlsym(RTLD_DEFAULT, "_rtld_global");
    Dl_info info;
    void* entry = nullptr;
    if (!global || !dladdr1(global, &info, &entry, RTLD_DL_SYMENT) || !entry) return;
    const auto* sym = static_cast<const ElfW(Sym)*>(entry);
    if (sym->st_size < sizeof(pthread_mutex_t) || sym->st_size > sizeof g_probe_copy) return;
    std::memcpy(g_probe_copy, global, sym->st_size);
    ProbeContext ctx{static_cast<unsigned char*>(global), size_t(sym->st_size), g_probe_copy,
                     pid_t(syscall(SYS_gettid)), nullptr, 0};
    dl_iterate_phdr(probe_callback, &ctx);
    if (ctx.candidates == 1) g_loader_list_lock = ctx.found;  // otherwise unsure: leave it alone
}

// In the order of api.cpp's handlers: after the payload's own locks but before the intern lock,
// which a thread inside a walk may need (a callback that allocates, an unload that frees).
void objects_lock_for_fork() noexcept {
    g_walk_lock.lock();
    if (g_loader_list_lock) pthread_mutex_lock(g_loader_list_lock);
}

void objects_unlock_after_fork_parent() noexcept {
    if (g_loader_list_lock) pthread_mutex_unlock(g_loader_list_lock);
    g_walk_lock.unlock();
}

// Not unlock(): the lock records the forking thread's tid, which the child's thread no longer
// has. The list is as the parent left it between two walks.
void objects_after_fork_child() noexcept {
    g_walk_lock.reset_in_child();
    if (g_loader_list_lock) *g_loader_list_lock = pthread_mutex_t PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
}

}  // namespace memray::payload
