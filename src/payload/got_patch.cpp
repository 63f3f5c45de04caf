// GOT/PLT slot patching. See got_patch.hpp and docs/architecture.md ("Hooks").
//
// Everything here is cold path and runs with the patch mutex held. Memory comes from mmap and
// system calls are made through syscall(2) so that this file works unchanged when it is linked into an
// object that is itself patched (the unit tests link it into the test program).
#include "payload/got_patch.hpp"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "payload/lock.hpp"

namespace memray::payload::got {
namespace {

// ---------------------------------------------------------------------------------------------
// System calls and mmap'd storage

void* sys_mmap(size_t len) noexcept {
    long r = syscall(SYS_mmap, nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r < 0 && r > -4096) return nullptr;
    return reinterpret_cast<void*>(r);
}
void sys_munmap(void* p, size_t len) noexcept { syscall(SYS_munmap, p, len); }
int sys_mprotect(uintptr_t addr, size_t len, int prot) noexcept {
    return int(syscall(SYS_mprotect, addr, len, prot));
}
int sys_open(const char* path) noexcept { return int(syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC)); }
long sys_read(int fd, void* buf, size_t len) noexcept { return syscall(SYS_read, fd, buf, len); }
void sys_close(int fd) noexcept { syscall(SYS_close, fd); }

size_t page_size() noexcept {
    static size_t s_page = 0;
    if (s_page == 0) {
        unsigned long p = getauxval(AT_PAGESZ);
        s_page = p ? p : size_t(sysconf(_SC_PAGESIZE));
    }
    return s_page;
}

// A growable array in anonymous memory (trivially copyable T only).
template <typename T>
class MmapVector {
  public:
    size_t size() const noexcept { return m_size; }
    T& operator[](size_t i) noexcept { return m_data[i]; }
    const T& operator[](size_t i) const noexcept { return m_data[i]; }
    bool push_back(const T& v) noexcept {
        if (m_size == m_capacity && !grow()) return false;
        m_data[m_size++] = v;
        return true;
    }
    // Removes element i by moving the last one into its place.
    void swap_remove(size_t i) noexcept {
        m_data[i] = m_data[m_size - 1];
        --m_size;
    }
    void clear() noexcept { m_size = 0; }

  private:
    bool grow() noexcept {
        size_t new_cap = m_capacity ? m_capacity * 2 : page_size() / sizeof(T);
        T* fresh = static_cast<T*>(sys_mmap(new_cap * sizeof(T)));
        if (!fresh) return false;
        if (m_data) {
            memcpy(static_cast<void*>(fresh), m_data, m_size * sizeof(T));
            sys_munmap(m_data, m_capacity * sizeof(T));
        }
        m_data = fresh;
        m_capacity = new_cap;
        return true;
    }
    T* m_data = nullptr;
    size_t m_size = 0;
    size_t m_capacity = 0;
};

// ---------------------------------------------------------------------------------------------
// One loaded object's dynamic section

struct DynInfo {
    uintptr_t bias = 0;
    const ElfW(Sym)* symtab = nullptr;
    const char* strtab = nullptr;
    size_t strsz = 0;
    const ElfW(Rela)* rela = nullptr;
    size_t relasz = 0;
    const ElfW(Rela)* jmprel = nullptr;
    size_t pltrelsz = 0;
    bool pltrel_is_rela = true;
    const uint32_t* gnu_hash = nullptr;
    const uint32_t* sysv_hash = nullptr;
    const ElfW(Half)* versym = nullptr;
    ssize_t runpath = -1;  // offset into strtab
    ssize_t rpath = -1;
};

// glibc rewrites most d_ptr entries to absolute addresses when it relocates an object; an
// object it has not processed yet (or another loader) leaves them relative to the load bias.
template <typename T>
const T* dyn_ptr(uintptr_t bias, ElfW(Addr) value) noexcept {
    if (value == 0) return nullptr;
    return reinterpret_cast<const T*>(value < bias ? bias + value : value);
}

bool read_dynamic(const dl_phdr_info* info, DynInfo& d) noexcept {
    const ElfW(Dyn)* dyn = nullptr;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
            dyn = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
        }
    }
    if (!dyn) return false;
    d = DynInfo{};
    const uintptr_t bias = d.bias = info->dlpi_addr;
    for (; dyn->d_tag != DT_NULL; ++dyn) {
        switch (dyn->d_tag) {
            case DT_SYMTAB: d.symtab = dyn_ptr<ElfW(Sym)>(bias, dyn->d_un.d_ptr); break;
            case DT_STRTAB: d.strtab = dyn_ptr<char>(bias, dyn->d_un.d_ptr); break;
            case DT_STRSZ: d.strsz = dyn->d_un.d_val; break;
            case DT_RELA: d.rela = dyn_ptr<ElfW(Rela)>(bias, dyn->d_un.d_ptr); break;
            case DT_RELASZ: d.relasz = dyn->d_un.d_val; break;
            case DT_JMPREL: d.jmprel = dyn_ptr<ElfW(Rela)>(bias, dyn->d_un.d_ptr); break;
            case DT_PLTRELSZ: d.pltrelsz = dyn->d_un.d_val; break;
            case DT_PLTREL: d.pltrel_is_rela = dyn->d_un.d_val == DT_RELA; break;
            case DT_GNU_HASH: d.gnu_hash = dyn_ptr<uint32_t>(bias, dyn->d_un.d_ptr); break;
            case DT_HASH: d.sysv_hash = dyn_ptr<uint32_t>(bias, dyn->d_un.d_ptr); break;
            case DT_VERSYM: d.versym = dyn_ptr<ElfW(Half)>(bias, dyn->d_un.d_ptr); break;
            case DT_RUNPATH: d.runpath = ssize_t(dyn->d_un.d_val); break;
            case DT_RPATH: d.rpath = ssize_t(dyn->d_un.d_val); break;
            default: break;
        }
    }
    return d.symtab && d.strtab;
}

const char* sym_name(const DynInfo& d, uint32_t index) noexcept {
    uint32_t off = d.symtab[index].st_name;
    if (d.strsz && off >= d.strsz) return "";
    return d.strtab + off;
}

// A definition we may forward to: defined here (an undefined symbol with a value is a canonical
// PLT entry of a non-PIE executable, i.e. a way back into the hook), global or weak. Data objects
// are allowed for the few descriptors the hooks read (glibc's _thread_db_* tables).
bool is_usable_definition(const ElfW(Sym)& s) noexcept {
    if (s.st_shndx == SHN_UNDEF || s.st_value == 0) return false;
    unsigned bind = ELF64_ST_BIND(s.st_info);
    unsigned type = ELF64_ST_TYPE(s.st_info);
    if (bind != STB_GLOBAL && bind != STB_WEAK && bind != STB_GNU_UNIQUE) return false;
    return type == STT_FUNC || type == STT_GNU_IFUNC || type == STT_NOTYPE || type == STT_OBJECT;
}

// Index of the preferred definition of `name` (the default version when there are several), or
// -1. Hidden (non-default) versions are used only when nothing else matches.
long lookup_symbol(const DynInfo& d, const char* name) noexcept {
    long hidden_match = -1;
    auto consider = [&](uint32_t idx) -> bool {
        const ElfW(Sym)& s = d.symtab[idx];
        if (!is_usable_definition(s) || strcmp(sym_name(d, idx), name) != 0) return false;
        if (d.versym && (d.versym[idx] & 0x8000)) {
            if (hidden_match < 0) hidden_match = idx;
            return false;
        }
        return true;
    };
    if (d.gnu_hash) {
        uint32_t h = 5381;
        for (const unsigned char* p = reinterpret_cast<const unsigned char*>(name); *p; ++p) h = h * 33 + *p;
        const uint32_t nbuckets = d.gnu_hash[0], symoffset = d.gnu_hash[1];
        const uint32_t bloom_size = d.gnu_hash[2], bloom_shift = d.gnu_hash[3];
        if (nbuckets == 0 || bloom_size == 0) return -1;
        const auto* bloom = reinterpret_cast<const ElfW(Addr)*>(d.gnu_hash + 4);
        const auto* buckets = reinterpret_cast<const uint32_t*>(bloom + bloom_size);
        const uint32_t* chain = buckets + nbuckets;
        constexpr unsigned bits = sizeof(ElfW(Addr)) * 8;
        ElfW(Addr) word = bloom[(h / bits) % bloom_size];
        ElfW(Addr) mask = (ElfW(Addr)(1) << (h % bits)) | (ElfW(Addr)(1) << ((h >> bloom_shift) % bits));
        if ((word & mask) != mask) return -1;
        uint32_t idx = buckets[h % nbuckets];
        if (idx < symoffset) return -1;
        for (;; ++idx) {
            uint32_t h2 = chain[idx - symoffset];
            if ((h | 1) == (h2 | 1) && consider(idx)) return idx;
            if (h2 & 1) break;
        }
        return hidden_match;
    }
    if (d.sysv_hash) {
        uint32_t h = 0;
        for (const unsigned char* p = reinterpret_cast<const unsigned char*>(name); *p; ++p) {
            h = (h << 4) + *p;
            uint32_t g = h & 0xf0000000u;
            if (g) h ^= g >> 24;
            h &= ~g;
        }
        const uint32_t nbucket = d.sysv_hash[0];
        if (nbucket == 0) return -1;
        const uint32_t* buckets = d.sysv_hash + 2;
        const uint32_t* chains = buckets + nbucket;
        for (uint32_t idx = buckets[h % nbucket]; idx != STN_UNDEF; idx = chains[idx]) {
            if (consider(idx)) return idx;
        }
        return hidden_match;
    }
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Object classification

bool object_contains(const dl_phdr_info* info, uintptr_t addr) noexcept {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD) continue;
        uintptr_t start = info->dlpi_addr + ph.p_vaddr;
        if (addr >= start && addr < start + ph.p_memsz) return true;
    }
    return false;
}

bool is_vdso(const dl_phdr_info* info) noexcept {
    uintptr_t ehdr = getauxval(AT_SYSINFO_EHDR);
    return ehdr != 0 && object_contains(info, ehdr);
}

bool is_loader(const dl_phdr_info* info) noexcept {
    uintptr_t base = getauxval(AT_BASE);
    return base != 0 && info->dlpi_addr == base;
}

// `index` is the object's position in dl_iterate_phdr order: 0 is the main executable.
bool should_skip(const dl_phdr_info* info, size_t index, const void* self) noexcept {
    if (is_vdso(info) || is_loader(info)) return true;
    // The payload is skipped unless it *is* the executable (only in tests that link the hooks
    // into the test program, whose own calls must reach the hooks).
    return index != 0 && self && object_contains(info, reinterpret_cast<uintptr_t>(self));
}

// ---------------------------------------------------------------------------------------------
// Page protections, read from /proc/self/maps (the truth at this moment: it is right for RELRO
// pages whether or not the loader has protected them yet). Falls back to the ELF headers.

class MapsSnapshot {
  public:
    ~MapsSnapshot() {
        if (m_buf) sys_munmap(m_buf, m_cap);
    }
    // Protection of the page containing addr, or -1 if unknown.
    int protection(uintptr_t addr) noexcept {
        if (!m_loaded) load();
        if (!m_buf) return -1;
        const char* p = m_buf;
        const char* end = m_buf + m_len;
        while (p < end) {
            const char* line_end = static_cast<const char*>(memchr(p, '\n', size_t(end - p)));
            if (!line_end) line_end = end;
            char* q = nullptr;
            unsigned long start = strtoul(p, &q, 16);
            if (q && *q == '-') {
                unsigned long stop = strtoul(q + 1, &q, 16);
                if (addr >= start && addr < stop && q + 4 < line_end) {
                    ++q;  // the space
                    int prot = 0;
                    if (q[0] == 'r') prot |= PROT_READ;
                    if (q[1] == 'w') prot |= PROT_WRITE;
                    if (q[2] == 'x') prot |= PROT_EXEC;
                    return prot;
                }
            }
            p = line_end + 1;
        }
        return -1;
    }
    void invalidate() noexcept { m_loaded = false; }

  private:
    void load() noexcept {
        m_loaded = true;
        m_len = 0;
        int fd = sys_open("/proc/self/maps");
        if (fd < 0) return;
        for (;;) {
            if (m_len + 4096 > m_cap) {
                size_t new_cap = m_cap ? m_cap * 2 : 64 * 1024;
                char* fresh = static_cast<char*>(sys_mmap(new_cap));
                if (!fresh) break;
                if (m_buf) {
                    memcpy(fresh, m_buf, m_len);
                    sys_munmap(m_buf, m_cap);
                }
                m_buf = fresh;
                m_cap = new_cap;
            }
            long n = sys_read(fd, m_buf + m_len, m_cap - m_len);
            if (n == -EINTR) continue;
            if (n <= 0) break;
            m_len += size_t(n);
        }
        sys_close(fd);
    }
    char* m_buf = nullptr;
    size_t m_len = 0;
    size_t m_cap = 0;
    bool m_loaded = false;
};

// Protection of `addr`'s page derived from the program headers: RELRO pages are read-only once
// the loader has protected them; otherwise the segment's flags apply.
int static_protection(const dl_phdr_info* info, uintptr_t addr) noexcept {
    const uintptr_t mask = ~uintptr_t(page_size() - 1);
    int prot = -1;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph.p_vaddr;
        if (ph.p_type == PT_GNU_RELRO) {
            // The loader protects whole pages, rounding the end down.
            if (addr >= (start & mask) && addr < ((start + ph.p_memsz) & mask)) return PROT_READ;
        } else if (ph.p_type == PT_LOAD && addr >= start && addr < start + ph.p_memsz) {
            prot = ((ph.p_flags & PF_R) ? PROT_READ : 0) | ((ph.p_flags & PF_W) ? PROT_WRITE : 0) |
                   ((ph.p_flags & PF_X) ? PROT_EXEC : 0);
        }
    }
    return prot;
}

// Compare-and-swap of one slot, making its page writable for the moment if it is not.
bool swap_slot(uintptr_t slot, uintptr_t expected, uintptr_t desired, int prot) noexcept {
    const uintptr_t page = slot & ~uintptr_t(page_size() - 1);
    const bool unprotect = prot < 0 || !(prot & PROT_WRITE);
    const int restore = prot < 0 ? PROT_READ : prot;
    if (unprotect && sys_mprotect(page, page_size(), restore | PROT_WRITE) != 0) return false;
    bool ok = __atomic_compare_exchange_n(reinterpret_cast<uintptr_t*>(slot), &expected, desired, false,
                                          __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    if (unprotect) sys_mprotect(page, page_size(), restore);
    return ok;
}

// ---------------------------------------------------------------------------------------------
// What we patched

struct ObjectKey {
    uintptr_t bias;
    const void* phdr;
    bool operator==(const ObjectKey& o) const noexcept { return bias == o.bias && phdr == o.phdr; }
};

struct ObjectRecord {
    ObjectKey key;
};

struct SlotRecord {
    ObjectKey object;
    uintptr_t slot;
    uintptr_t previous;
    uintptr_t hook;
};

// Everything is read and written by the thread holding `mutex` (the thread starting or stopping
// a session, or one inside the dlopen/dlclose hooks). Recursive: a constructor run by a dlopen
// we are handling may dlopen again.
struct PatchState {
    Mutex mutex{Mutex::Kind::Recursive};
    MmapVector<ObjectRecord> objects;
    MmapVector<SlotRecord> slots;
    MmapVector<ObjectKey> present;  // scratch for reconcile()
    bool active = false;            // between a full patch_objects() and unpatch_all()
    unsigned long long last_subs = 0;
    bool have_subs = false;
};
constinit PatchState g_patch;

// The mutex for LockGuard. Fork safety (a fork while another thread patches) is the payload's
// one set of fork handlers (api.cpp), which take this mutex in their place in the lock order.
struct PatchMutex {
    void lock() noexcept { g_patch.mutex.lock(); }
    void unlock() noexcept { g_patch.mutex.unlock(); }
};

ObjectKey key_of(const dl_phdr_info* info) noexcept { return {info->dlpi_addr, info->dlpi_phdr}; }

long find_object(const ObjectKey& key) noexcept {
    for (size_t i = 0; i < g_patch.objects.size(); ++i) {
        if (g_patch.objects[i].key == key) return long(i);
    }
    return -1;
}

unsigned long long subs_of(const dl_phdr_info* info, size_t size) noexcept {
    if (size < offsetof(dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) return 0;
    return info->dlpi_subs;
}

// Drops the objects (and their slots) that dl_iterate_phdr no longer reports.

bool present(const ObjectKey& key) noexcept {
    for (size_t i = 0; i < g_patch.present.size(); ++i) {
        if (g_patch.present[i] == key) return true;
    }
    return false;
}

void reconcile() noexcept {
    g_patch.present.clear();
    bool complete = true;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t size, void* data) -> int {
            if (!g_patch.present.push_back(key_of(info))) *static_cast<bool*>(data) = false;
            g_patch.last_subs = subs_of(info, size);
            g_patch.have_subs = true;
            return 0;
        },
        &complete);
    if (!complete) return;  // out of memory: forgetting a live object would be worse than keeping a dead one
    for (size_t i = g_patch.objects.size(); i-- > 0;) {
        if (!present(g_patch.objects[i].key)) g_patch.objects.swap_remove(i);
    }
    for (size_t s = g_patch.slots.size(); s-- > 0;) {
        if (!present(g_patch.slots[s].object)) g_patch.slots.swap_remove(s);
    }
}

struct PatchContext {
    const HookedSymbol* symbols;
    size_t count;
    const void* self;
    bool only_new;
    size_t index;
    int patched;
    int error;
    bool deferred;  // the current object has slots the loader has not filled in yet
    MapsSnapshot maps;
};

const HookedSymbol* match_symbol(const PatchContext& ctx, const char* name) noexcept {
    for (size_t i = 0; i < ctx.count; ++i) {
        if (ctx.symbols[i].real && strcmp(ctx.symbols[i].name, name) == 0) return &ctx.symbols[i];
    }
    return nullptr;
}

void remember_slot(const SlotRecord& rec, PatchContext& ctx) noexcept {
    for (size_t i = 0; i < g_patch.slots.size(); ++i) {
        if (g_patch.slots[i].slot == rec.slot) {  // a reloaded object at the same address
            g_patch.slots[i] = rec;
            return;
        }
    }
    if (!g_patch.slots.push_back(rec)) ctx.error = -ENOMEM;
}

// A lazy JUMP_SLOT the loader has not processed holds its PLT stub's link-time address: inside the
// object's unbiased address range and (the bias being nonzero) not code that is mapped there.
bool looks_unrelocated(const dl_phdr_info* info, uintptr_t value, MapsSnapshot& maps) noexcept {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type == PT_LOAD && value >= ph.p_vaddr && value < ph.p_vaddr + ph.p_memsz) {
            const int prot = maps.protection(value);
            return prot < 0 || !(prot & PROT_EXEC);
        }
    }
    return false;
}

void patch_relocations(const dl_phdr_info* info, const DynInfo& d, const ElfW(Rela)* rel, size_t bytes,
                       PatchContext& ctx) noexcept {
    if (!rel) return;
    const size_t n = bytes / sizeof(ElfW(Rela));
    for (size_t i = 0; i < n; ++i) {
        const unsigned type = ELF64_R_TYPE(rel[i].r_info);
        const uint32_t sym = ELF64_R_SYM(rel[i].r_info);
        if (sym == 0) continue;
        if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT && type != R_X86_64_64) continue;
        if (type == R_X86_64_64 && rel[i].r_addend != 0) continue;
        const HookedSymbol* hs = match_symbol(ctx, sym_name(d, sym));
        if (!hs) continue;
        const uintptr_t slot = d.bias + rel[i].r_offset;
        const uintptr_t hook = reinterpret_cast<uintptr_t>(hs->hook);
        const uintptr_t current = __atomic_load_n(reinterpret_cast<const uintptr_t*>(slot), __ATOMIC_ACQUIRE);
        if (current == hook) continue;
        // Not relocated yet (an object another thread is loading right now) or an unresolved weak
        // reference: leave it; the dlopen hook patches the object once it is ready.
        if (current == 0 || (d.bias != 0 && looks_unrelocated(info, current, ctx.maps))) {
            ctx.deferred = true;
            continue;
        }
        // A data pointer is only ours to change while it still points at the real function.
        if (type == R_X86_64_64 && current != reinterpret_cast<uintptr_t>(hs->real)) continue;
        int prot = ctx.maps.protection(slot);
        if (prot < 0) prot = static_protection(info, slot);
        if (!swap_slot(slot, current, hook, prot)) continue;
        remember_slot(SlotRecord{key_of(info), slot, current, hook}, ctx);
        ++ctx.patched;
    }
}

int patch_callback(dl_phdr_info* info, size_t size, void* data) {
    auto& ctx = *static_cast<PatchContext*>(data);
    const size_t index = ctx.index++;
    if (should_skip(info, index, ctx.self)) return 0;
    const ObjectKey key = key_of(info);
    const long known = find_object(key);
    if (known >= 0 && ctx.only_new) return 0;
    (void)size;
    DynInfo d;
    if (!read_dynamic(info, d)) return 0;
    ctx.deferred = false;
    patch_relocations(info, d, d.rela, d.relasz, ctx);
    if (d.pltrel_is_rela) patch_relocations(info, d, d.jmprel, d.pltrelsz, ctx);
    // An object with slots still to be filled stays "new" so that the next pass looks again.
    if (known < 0 && !ctx.deferred && !g_patch.objects.push_back(ObjectRecord{key})) ctx.error = -ENOMEM;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// resolve_real

struct ResolveContext {
    HookedSymbol* symbols;
    size_t count;
    const void* self;
    size_t index;
    bool ifunc[64];
};

int resolve_callback(dl_phdr_info* info, size_t, void* data) {
    auto& ctx = *static_cast<ResolveContext*>(data);
    const size_t index = ctx.index++;
    if (should_skip(info, index, ctx.self)) return 0;
    DynInfo d;
    if (!read_dynamic(info, d)) return 0;
    for (size_t i = 0; i < ctx.count; ++i) {
        if (ctx.symbols[i].real) continue;
        long idx = lookup_symbol(d, ctx.symbols[i].name);
        if (idx < 0) continue;
        const ElfW(Sym)& s = d.symtab[idx];
        ctx.symbols[i].real = reinterpret_cast<void*>(d.bias + s.st_value);
        if (i < 64) ctx.ifunc[i] = ELF64_ST_TYPE(s.st_info) == STT_GNU_IFUNC;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Library search for the dlopen hook

struct CallerContext {
    uintptr_t caller;
    size_t index;
    bool found;
    bool is_main;
    DynInfo dyn;
    const char* name;  // dlpi_name
    bool main_found;
    DynInfo main_dyn;
};

int caller_callback(dl_phdr_info* info, size_t, void* data) {
    auto& ctx = *static_cast<CallerContext*>(data);
    const size_t index = ctx.index++;
    if (index == 0 && read_dynamic(info, ctx.main_dyn)) ctx.main_found = true;
    if (!ctx.found && object_contains(info, ctx.caller) && read_dynamic(info, ctx.dyn)) {
        ctx.found = true;
        ctx.is_main = index == 0;
        ctx.name = info->dlpi_name;
    }
    return 0;
}

size_t executable_path_into(char* out, size_t len) noexcept {
    long n = syscall(SYS_readlink, "/proc/self/exe", out, len - 1);
    if (n <= 0) {
        out[0] = '\0';
        return 0;
    }
    out[n] = '\0';
    return size_t(n);
}

// A 64-bit x86-64 ELF file we can read: what the loader would accept while searching.
bool usable_library(const char* path) noexcept {
    int fd = sys_open(path);
    if (fd < 0) return false;
    ElfW(Ehdr) eh;
    long n = sys_read(fd, &eh, sizeof(eh));
    sys_close(fd);
    return n == long(sizeof(eh)) && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
           eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_machine == EM_X86_64;
}

bool append(char* out, size_t out_len, size_t& pos, const char* s, size_t n) noexcept {
    if (pos + n + 1 > out_len) return false;
    memcpy(out + pos, s, n);
    pos += n;
    out[pos] = '\0';
    return true;
}

// Searches a ':'-separated list (with $ORIGIN expanded to `origin`) for `name`.
bool search_path_list(const char* list, const char* origin, const char* name, char* out, size_t out_len) noexcept {
    const char* p = list;
    while (true) {
        const char* end = strchr(p, ':');
        if (!end) end = p + strlen(p);
        size_t pos = 0;
        bool ok = true;
        out[0] = '\0';
        for (const char* c = p; c < end && ok;) {
            if (*c == '$') {
                size_t tok = 0;
                if (size_t(end - c) >= 7 && memcmp(c, "$ORIGIN", 7) == 0) tok = 7;
                else if (size_t(end - c) >= 9 && memcmp(c, "${ORIGIN}", 9) == 0) tok = 9;
                if (tok && origin) {
                    ok = append(out, out_len, pos, origin, strlen(origin));
                    c += tok;
                } else {
                    ok = false;  // $LIB, $PLATFORM: left to the loader
                }
            } else {
                ok = append(out, out_len, pos, c, 1);
                ++c;
            }
        }
        if (ok && pos == 0) ok = append(out, out_len, pos, ".", 1);  // empty entry: the cwd
        if (ok && (out[pos - 1] == '/' || append(out, out_len, pos, "/", 1)) &&
            append(out, out_len, pos, name, strlen(name)) && usable_library(out)) {
            return true;
        }
        if (*end == '\0') return false;
        p = end + 1;
    }
}

}  // namespace

size_t resolve_real(HookedSymbol* symbols, size_t count, const void* self) noexcept {
    PatchMutex mutex;
    LockGuard lock(mutex);
    ResolveContext ctx{symbols, count, self, 0, {}};
    dl_iterate_phdr(resolve_callback, &ctx);
    size_t resolved = 0;
    for (size_t i = 0; i < count; ++i) {
        if (i < 64 && ctx.ifunc[i] && symbols[i].real) {
            // An IFUNC symbol's value is its resolver; the loader calls it with no arguments here.
            auto resolver = reinterpret_cast<void* (*)()>(symbols[i].real);
            symbols[i].real = resolver();
        }
        if (symbols[i].real) ++resolved;
    }
    return resolved;
}

int patch_objects(const HookedSymbol* symbols, size_t count, const void* self, bool only_new) noexcept {
    PatchMutex mutex;
    LockGuard lock(mutex);
    // Checked under the lock: a dlopen hook that raced with unpatch_all() must not patch again.
    if (only_new && !g_patch.active) return 0;
    g_patch.active = true;
    // Something was unloaded since the last pass: forget it, and look at every object again, since
    // a new one may have been loaded at a known address (slots holding our hook are left alone).
    unsigned long long subs = 0;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t size, void* out) -> int {
            *static_cast<unsigned long long*>(out) = subs_of(info, size);
            return 1;
        },
        &subs);
    if (g_patch.have_subs && subs != g_patch.last_subs) {
        reconcile();
        only_new = false;
    }
    g_patch.last_subs = subs;
    g_patch.have_subs = true;
    PatchContext ctx{symbols, count, self, only_new, 0, 0, 0, false, {}};
    dl_iterate_phdr(patch_callback, &ctx);
    return ctx.error ? ctx.error : ctx.patched;
}

void unpatch_all() noexcept {
    PatchMutex mutex;
    LockGuard lock(mutex);
    // Restores from inside dl_iterate_phdr: glibc unmaps an object and unlinks it from the list
    // under the same lock that iteration holds, so an object we are visiting cannot disappear
    // while we write to it. Slots of objects that are gone are not visited, only forgotten.
    MapsSnapshot maps;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* data) -> int {
            auto& maps = *static_cast<MapsSnapshot*>(data);
            const ObjectKey key = key_of(info);
            for (size_t i = 0; i < g_patch.slots.size(); ++i) {
                const SlotRecord& rec = g_patch.slots[i];
                if (!(rec.object == key)) continue;
                // Only where the slot still holds our hook: anything else was put there by someone else.
                if (__atomic_load_n(reinterpret_cast<const uintptr_t*>(rec.slot), __ATOMIC_ACQUIRE) != rec.hook)
                    continue;
                int prot = maps.protection(rec.slot);
                if (prot < 0) prot = static_protection(info, rec.slot);
                swap_slot(rec.slot, rec.hook, rec.previous, prot);
            }
            return 0;
        },
        &maps);
    g_patch.slots.clear();
    g_patch.objects.clear();
    g_patch.present.clear();
    g_patch.active = false;
}

void forget_unloaded() noexcept {
    PatchMutex mutex;
    LockGuard lock(mutex);
    reconcile();
}

void lock_for_fork() noexcept { g_patch.mutex.lock(); }
void unlock_after_fork_parent() noexcept { g_patch.mutex.unlock(); }
// Not unlock(): the child's thread has a new tid, and a recursive mutex refuses (EPERM) to be
// unlocked by a thread other than the owner it recorded.
void reset_after_fork_child() noexcept { g_patch.mutex.reset_in_child(); }

unsigned patched_slot_count() noexcept {
    PatchMutex mutex;
    LockGuard lock(mutex);
    return unsigned(g_patch.slots.size());
}

void for_each_patched_slot(void (*fn)(uintptr_t slot, uintptr_t previous, void* ctx), void* ctx) noexcept {
    PatchMutex mutex;
    LockGuard lock(mutex);
    for (size_t i = 0; i < g_patch.slots.size(); ++i)
        fn(g_patch.slots[i].slot, g_patch.slots[i].previous, ctx);
}

size_t executable_path(char* out, size_t len) noexcept { return executable_path_into(out, len); }

bool resolve_library_for_caller(const char* name, const void* caller, char* out, size_t out_len) noexcept {
    if (!name || !*name || strchr(name, '/') || out_len < 2) return false;
    CallerContext ctx{};
    ctx.caller = reinterpret_cast<uintptr_t>(caller);
    {
        // Under the mutex the fork handlers hold: see objects.hpp on walks across fork().
        PatchMutex mutex;
        LockGuard lock(mutex);
        dl_iterate_phdr(caller_callback, &ctx);
    }
    if (!ctx.found) return false;

    char origin[PATH_MAX];
    origin[0] = '\0';
    if (ctx.is_main || !ctx.name || !*ctx.name) executable_path_into(origin, sizeof(origin));
    else if (strlen(ctx.name) < sizeof(origin)) memcpy(origin, ctx.name, strlen(ctx.name) + 1);
    if (char* slash = strrchr(origin, '/')) {
        *(slash == origin ? slash + 1 : slash) = '\0';
    } else {
        origin[0] = '\0';
    }
    const char* origin_or_null = origin[0] ? origin : nullptr;

    const DynInfo& d = ctx.dyn;
    if (d.runpath >= 0) {
        // LD_LIBRARY_PATH comes before DT_RUNPATH: if it has the library, the loader finds it alone.
        const char* ld_path = getenv("LD_LIBRARY_PATH");
        if (ld_path && *ld_path && search_path_list(ld_path, nullptr, name, out, out_len)) return false;
        return search_path_list(d.strtab + d.runpath, origin_or_null, name, out, out_len);
    }
    // DT_RPATH of the caller, then of the executable (unless the executable uses DT_RUNPATH).
    if (d.rpath >= 0 && search_path_list(d.strtab + d.rpath, origin_or_null, name, out, out_len)) return true;
    if (!ctx.is_main && ctx.main_found && ctx.main_dyn.runpath < 0 && ctx.main_dyn.rpath >= 0) {
        char exe_origin[PATH_MAX];
        executable_path_into(exe_origin, sizeof(exe_origin));
        if (char* slash = strrchr(exe_origin, '/')) *slash = '\0';
        return search_path_list(ctx.main_dyn.strtab + ctx.main_dyn.rpath, exe_origin[0] ? exe_origin : nullptr,
                                name, out, out_len);
    }
    return false;
}

}  // namespace memray::payload::got
