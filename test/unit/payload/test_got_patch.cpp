// GOT patching with the real hooks, checked against what this program really calls. Built twice:
// as a PIE and as a non-PIE executable (whose canonical PLT entries are the classic way to make a
// hook call itself). The tracker is replaced by test_tracker.cpp.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "payload/got_patch.hpp"
#include "payload/hooks.hpp"
#include "test_tracker.hpp"

extern "C" {
void* gp_lib_malloc(size_t size);
void gp_lib_free(void* p);
void* gp_lib_dlopen(const char* name);
}

using memray::format::Allocator;
namespace payload = memray::payload;
namespace tt = memray::payload::test;

namespace {

// Keeps the compiler from eliding or merging the calls under test.
void* volatile g_sink;

struct Tracking {
    Tracking() {
        tt::clear();
        REQUIRE(payload::install_hooks() == 0);
        REQUIRE(payload::patched_slot_count() > 0);
        tt::set_enabled(true);
    }
    ~Tracking() {
        tt::set_enabled(false);
        payload::uninstall_hooks();
    }
};

std::string object_of(const void* addr) {
    Dl_info info{};
    if (!dladdr(addr, &info) || !info.dli_fname) return "";
    return info.dli_fname;
}

// Independent of got_patch.cpp: every JUMP_SLOT / GLOB_DAT slot of every object and its value.
struct Slot {
    uintptr_t address;
    uintptr_t value;
};

std::vector<Slot> all_slots() {
    std::vector<Slot> slots;
    slots.reserve(1 << 16);
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* data) -> int {
            auto& out = *static_cast<std::vector<Slot>*>(data);
            const ElfW(Dyn)* dyn = nullptr;
            for (int i = 0; i < info->dlpi_phnum; ++i) {
                if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
                    dyn = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
            }
            if (!dyn || (info->dlpi_name && strstr(info->dlpi_name, "vdso"))) return 0;
            uintptr_t tables[2] = {0, 0};
            size_t sizes[2] = {0, 0};
            for (; dyn->d_tag != DT_NULL; ++dyn) {
                if (dyn->d_tag == DT_RELA) tables[0] = dyn->d_un.d_ptr;
                if (dyn->d_tag == DT_RELASZ) sizes[0] = dyn->d_un.d_val;
                if (dyn->d_tag == DT_JMPREL) tables[1] = dyn->d_un.d_ptr;
                if (dyn->d_tag == DT_PLTRELSZ) sizes[1] = dyn->d_un.d_val;
            }
            for (int t = 0; t < 2; ++t) {
                if (!tables[t]) continue;
                uintptr_t base = tables[t] < info->dlpi_addr ? tables[t] + info->dlpi_addr : tables[t];
                auto* rel = reinterpret_cast<const ElfW(Rela)*>(base);
                for (size_t i = 0; i < sizes[t] / sizeof(ElfW(Rela)); ++i) {
                    unsigned type = ELF64_R_TYPE(rel[i].r_info);
                    if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) continue;
                    uintptr_t a = info->dlpi_addr + rel[i].r_offset;
                    out.push_back({a, *reinterpret_cast<const uintptr_t*>(a)});
                }
            }
            return 0;
        },
        &slots);
    return slots;
}

// The lines of /proc/self/maps that belong to files (address range, protection, path).
std::vector<std::string> file_mappings() {
    std::vector<std::string> lines;
    FILE* f = fopen("/proc/self/maps", "r");
    REQUIRE(f);
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        if (strchr(line, '/')) lines.emplace_back(line);
    }
    fclose(f);
    return lines;
}

}  // namespace

TEST_CASE("real functions are definitions inside libc, never a PLT entry") {
    payload::got::HookedSymbol syms[] = {{"malloc", nullptr, nullptr}, {"free", nullptr, nullptr},
                                         {"dlopen", nullptr, nullptr}, {"no_such_function_xyz", nullptr, nullptr}};
    CHECK(payload::got::resolve_real(syms, 4, nullptr) == 3);
    CHECK(object_of(syms[0].real).find("libc.so") != std::string::npos);
    CHECK(object_of(syms[1].real).find("libc.so") != std::string::npos);
    CHECK(object_of(syms[2].real).find("libc.so") != std::string::npos);
    CHECK(syms[3].real == nullptr);
#ifdef GP_NON_PIE
    // Here `malloc` as this executable sees it is its own canonical PLT entry.
    void* (*volatile seen)(size_t) = &malloc;
    CHECK(reinterpret_cast<void*>(seen) != syms[0].real);
    CHECK(object_of(reinterpret_cast<void*>(seen)).find("libc.so") == std::string::npos);
#endif
}

TEST_CASE("calls from the executable reach the hooks") {
    Tracking tracking;
    void* p = malloc(12345);
    g_sink = p;
    CHECK(tt::count(Allocator::Malloc, p, 12345) == 1);
    free(p);
    CHECK(tt::count(Allocator::Free, p) == 1);

    void* c = calloc(7, 1000);
    g_sink = c;
    CHECK(tt::count(Allocator::Calloc, c, 7000) == 1);

    void* r = malloc(100);
    void* r2 = realloc(r, 200000);
    g_sink = r2;
    CHECK(tt::count(Allocator::Free, r) == 1);  // old block freed, new one allocated by REALLOC
    CHECK(tt::count(Allocator::Realloc, r2, 200000) == 1);
    CHECK(realloc(r2, 0) == nullptr);  // glibc: frees
    CHECK(tt::count(Allocator::Free, r2) == 1);
    free(c);

    void* pm = nullptr;
    REQUIRE(posix_memalign(&pm, 64, 4321) == 0);
    CHECK(tt::count(Allocator::PosixMemalign, pm, 4321) == 1);
    void* bad = nullptr;
    CHECK(posix_memalign(&bad, 3, 10) != 0);  // invalid alignment: nothing recorded
    CHECK(tt::count(Allocator::PosixMemalign, bad) == 0);
    free(pm);

    void* aa = aligned_alloc(128, 1280);
    CHECK(tt::count(Allocator::AlignedAlloc, aa, 1280) == 1);
    void* ma = memalign(256, 777);
    CHECK(tt::count(Allocator::Memalign, ma, 777) == 1);
    void* va = valloc(999);
    CHECK(tt::count(Allocator::Valloc, va, 999) == 1);
    void* pv = pvalloc(555);
    CHECK(tt::count(Allocator::Pvalloc, pv, 555) == 1);
    free(aa);
    free(ma);
    free(va);
    free(pv);

    void* m = mmap(nullptr, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(m != MAP_FAILED);
    CHECK(tt::count(Allocator::Mmap, m, 3 * 4096) == 1);
    CHECK(munmap(m, 3 * 4096) == 0);
    CHECK(tt::count(Allocator::Munmap, m, 3 * 4096) == 1);

    // Nothing is recorded while tracking is off, but calls still work.
    tt::set_enabled(false);
    void* off = malloc(4242);
    g_sink = off;
    CHECK(tt::count(Allocator::Malloc, off) == 0);
    free(off);
}

TEST_CASE("allocators looked up with dlsym/dlvsym while tracking lead to the hooks") {
    using malloc_fn = void* (*)(size_t);
    void* real_malloc = nullptr;
    {
        Tracking tracking;
        auto by_name = reinterpret_cast<malloc_fn>(dlsym(RTLD_DEFAULT, "malloc"));
        auto by_version = reinterpret_cast<malloc_fn>(dlvsym(RTLD_DEFAULT, "malloc", "GLIBC_2.2.5"));
        void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
        REQUIRE(libc != nullptr);
        auto by_handle = reinterpret_cast<malloc_fn>(dlsym(libc, "malloc"));
        REQUIRE(reinterpret_cast<void*>(by_name) != nullptr);
        REQUIRE(reinterpret_cast<void*>(by_version) != nullptr);
        REQUIRE(reinterpret_cast<void*>(by_handle) != nullptr);
        void* a = by_name(54321);
        void* b = by_version(54322);
        void* c = by_handle(54323);
        g_sink = a;
        CHECK(tt::count(Allocator::Malloc, a, 54321) == 1);
        CHECK(tt::count(Allocator::Malloc, b, 54322) == 1);
        CHECK(tt::count(Allocator::Malloc, c, 54323) == 1);
        free(a);
        free(b);
        free(c);
        // Names we do not hook, and RTLD_NEXT (answered from the caller's position, here the
        // objects after this executable), resolve as without the hooks.
        CHECK(dlsym(RTLD_DEFAULT, "getpid") == reinterpret_cast<void*>(&getpid));
        real_malloc = dlsym(RTLD_NEXT, "malloc");
        CHECK(object_of(real_malloc).find("libc.so") != std::string::npos);
        CHECK(dlsym(RTLD_DEFAULT, "no_such_function_xyz") == nullptr);
        dlclose(libc);
    }
    // Once uninstalled, a lookup returns the real function again.
    CHECK(dlsym(RTLD_NEXT, "malloc") == real_malloc);
#ifndef GP_NON_PIE
    CHECK(dlsym(RTLD_DEFAULT, "malloc") == real_malloc);
#endif
}

TEST_CASE("free is recorded before the real free runs") {
    Tracking tracking;
    void* p = malloc(1111);
    g_sink = p;
    free(p);
    void* q = malloc(1111);  // glibc hands the same chunk back
    g_sink = q;
    long freed = tt::index_of(Allocator::Free, p);
    REQUIRE(freed >= 0);
    CHECK(freed > tt::index_of(Allocator::Malloc, p));
    if (q == p) CHECK(tt::count(Allocator::Malloc, p, 1111) == 2);
    free(q);
}

TEST_CASE("calls from a shared library and from inside libc and libstdc++ reach the hooks") {
    Tracking tracking;
    void* lp = gp_lib_malloc(23456);
    CHECK(tt::count(Allocator::Malloc, lp, 23456) == 1);
    gp_lib_free(lp);
    CHECK(tt::count(Allocator::Free, lp) == 1);

    std::string text(2999, 'x');
    char* dup = strdup(text.c_str());  // libc calls malloc through its own GLOB_DAT slot
    g_sink = dup;
    CHECK(tt::count(Allocator::Malloc, dup, 3000) == 1);
    free(dup);

    tt::clear();
    char* arr = new char[34567];  // operator new in libstdc++ calls malloc through its PLT
    g_sink = arr;
    CHECK(tt::count(Allocator::Malloc, arr, 34567) == 1);
    const auto arr_address = reinterpret_cast<uintptr_t>(arr);
    delete[] arr;
    CHECK(tt::count(Allocator::Free, reinterpret_cast<void*>(arr_address)) == 1);
}

TEST_CASE("thread names") {
    Tracking tracking;
    REQUIRE(pthread_setname_np(pthread_self(), "gp-self") == 0);
    const tt::ThreadName* self = tt::thread_name("gp-self");
    REQUIRE(self);
    CHECK(self->tid == syscall(SYS_gettid));

    REQUIRE(prctl(PR_SET_NAME, "gp-prctl-a-very-long-name", 0, 0, 0) == 0);
    const tt::ThreadName* pr = tt::thread_name("gp-prctl-a-very");  // the kernel keeps 15 bytes
    REQUIRE(pr);
    CHECK(pr->tid == syscall(SYS_gettid));

    static long other_tid = 0;
    static pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, nullptr, 2);
    pthread_t th;
    REQUIRE(pthread_create(
                &th, nullptr,
                [](void*) -> void* {
                    other_tid = syscall(SYS_gettid);
                    pthread_barrier_wait(&barrier);  // named by main
                    pthread_barrier_wait(&barrier);
                    return nullptr;
                },
                nullptr) == 0);
    pthread_barrier_wait(&barrier);
    REQUIRE(pthread_setname_np(th, "gp-other") == 0);
    pthread_barrier_wait(&barrier);
    pthread_join(th, nullptr);
    pthread_barrier_destroy(&barrier);
    const tt::ThreadName* other = tt::thread_name("gp-other");
    REQUIRE(other);
    CHECK(other->tid == other_tid);
}

TEST_CASE("a library dlopen'ed after install is patched, and forgotten after dlclose") {
    Tracking tracking;
    const unsigned before = payload::patched_slot_count();
    const unsigned notified = tt::notifications();
    void* h = dlopen(GP_PLUGIN_PATH, RTLD_NOW);
    REQUIRE(h);
    CHECK(payload::patched_slot_count() > before);
    CHECK(tt::notifications() > notified);
    auto fn = reinterpret_cast<void* (*)(size_t)>(dlsym(h, "gp_plugin_malloc"));
    REQUIRE(reinterpret_cast<void*>(fn) != nullptr);
    void* p = fn(45678);
    CHECK(tt::count(Allocator::Malloc, p, 45678) == 1);
    free(p);
    CHECK(dlclose(h) == 0);
    CHECK(payload::patched_slot_count() == before);
}

TEST_CASE("dlopen by name searches the real caller's RUNPATH") {
    // Without hooks: the library finds the plugin through its own RUNPATH ($ORIGIN/gp_plugins),
    // this executable does not (its RUNPATH lacks gp_plugins).
    void* native = gp_lib_dlopen("libgp_plugin.so");
    REQUIRE(native);
    dlclose(native);
    REQUIRE(dlopen("libgp_plugin.so", RTLD_NOW | RTLD_NOLOAD) == nullptr);
    CHECK(dlopen("libgp_plugin.so", RTLD_NOW) == nullptr);

    Tracking tracking;
    void* h = gp_lib_dlopen("libgp_plugin.so");  // reaches the real dlopen from the hook
    CHECK(h != nullptr);
    if (h) {
        auto fn = reinterpret_cast<void* (*)(size_t)>(dlsym(h, "gp_plugin_malloc"));
        REQUIRE(reinterpret_cast<void*>(fn) != nullptr);
        void* p = fn(5678);
        CHECK(tt::count(Allocator::Malloc, p, 5678) == 1);
        free(p);
        // Already loaded: a by-name dlopen from anywhere returns the same object.
        void* again = dlopen("libgp_plugin.so", RTLD_NOW);
        CHECK(again == h);
        if (again) dlclose(again);
        dlclose(h);
    }
    CHECK(dlopen("libgp_plugin.so", RTLD_NOW) == nullptr);  // still this executable's search path
}

TEST_CASE("uninstall restores every slot and page protection exactly") {
    REQUIRE_MESSAGE(getenv("LD_BIND_NOW"), "needs LD_BIND_NOW=1 so lazy binding does not change slots");
    const std::vector<std::string> maps_before = file_mappings();
    const std::vector<Slot> before = all_slots();
    REQUIRE(before.size() > 0);
    std::vector<Slot> patched;
    {
        Tracking tracking;
        patched = all_slots();
        const std::vector<std::string> maps_during = file_mappings();
        CHECK(maps_during == maps_before);  // protections restored right after each write
        struct Count {
            size_t slots = 0, holding_other_value = 0;
        } count;
        payload::got::for_each_patched_slot(
            [](uintptr_t slot, uintptr_t previous, void* ctx) {
                auto& c = *static_cast<Count*>(ctx);
                ++c.slots;
                if (*reinterpret_cast<const uintptr_t*>(slot) != previous) ++c.holding_other_value;
            },
            &count);
        CHECK(count.slots == payload::patched_slot_count());
        CHECK(count.holding_other_value == count.slots);
    }
    CHECK(payload::patched_slot_count() == 0);
    const std::vector<Slot> after = all_slots();
    REQUIRE(after.size() == before.size());
    REQUIRE(patched.size() == before.size());
    size_t changed_while_patched = 0, differing = 0;
    for (size_t i = 0; i < before.size(); ++i) {
        CHECK(after[i].address == before[i].address);
        if (patched[i].value != before[i].value) ++changed_while_patched;
        if (after[i].value != before[i].value) ++differing;
    }
    CHECK(changed_while_patched > 0);
    CHECK(differing == 0);
    CHECK(file_mappings() == maps_before);
}

TEST_CASE("install and uninstall are repeatable") {
    for (int i = 0; i < 3; ++i) {
        Tracking tracking;
        REQUIRE(payload::install_hooks() == 0);  // idempotent
        void* p = malloc(2222);
        g_sink = p;
        CHECK(tt::count(Allocator::Malloc, p, 2222) == 1);
        free(p);
    }
    tt::clear();
    tt::set_enabled(true);  // only slots could still lead here now
    void* p = malloc(2222);
    g_sink = p;
    tt::set_enabled(false);
    CHECK(tt::count(Allocator::Malloc, p, 2222) == 0);
    free(p);
}

TEST_CASE("patching while other threads allocate, load and unload libraries") {
    static std::atomic<bool> stop{false};
    static std::atomic<long> operations{0};
    stop = false;
    auto allocate = [](void*) -> void* {
        while (!stop.load()) {
            void* p = malloc(64);
            void* q = realloc(p, 4096);
            char* s = strdup("memray");
            free(s);
            free(q);
            operations.fetch_add(1);
        }
        return nullptr;
    };
    auto load = [](void*) -> void* {
        while (!stop.load()) {
            void* h = dlopen(GP_PLUGIN_PATH, RTLD_NOW);
            if (h) {
                auto fn = reinterpret_cast<void* (*)(size_t)>(dlsym(h, "gp_plugin_malloc"));
                free(fn(32));
                dlclose(h);
            }
            operations.fetch_add(1);
        }
        return nullptr;
    };
    pthread_t threads[4];
    REQUIRE(pthread_create(&threads[0], nullptr, allocate, nullptr) == 0);
    REQUIRE(pthread_create(&threads[1], nullptr, allocate, nullptr) == 0);
    REQUIRE(pthread_create(&threads[2], nullptr, load, nullptr) == 0);
    REQUIRE(pthread_create(&threads[3], nullptr, load, nullptr) == 0);
    for (int i = 0; i < 50; ++i) {
        Tracking tracking;
        usleep(1000);
    }
    stop = true;
    for (pthread_t t : threads) pthread_join(t, nullptr);
    CHECK(operations.load() > 0);
    CHECK(payload::patched_slot_count() == 0);
    // Every slot is back: nothing reaches the hooks any more.
    tt::clear();
    tt::set_enabled(true);
    void* p = gp_lib_malloc(3333);
    tt::set_enabled(false);
    CHECK(tt::event_count() == 0);
    gp_lib_free(p);
}
