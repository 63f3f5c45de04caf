// The stack walk of the safe-point check (see unwinder.hpp): libunwind's DWARF unwinder on an
// address space whose accessors answer from what was read before the thread stopped.
#include "attach/unwinder.hpp"

#include "attach/proc_files.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>

// libunwind's search of an .eh_frame_hdr table (what _UPT_find_proc_info calls once it has
// found and opened the object); exported by libunwind-x86_64 but not declared in its headers.
extern "C" int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as, unw_word_t ip,
                                                  unw_dyn_info_t* di, unw_proc_info_t* pi,
                                                  int need_unwind_info, void* arg);

namespace memray::attach::detail {

namespace {

constexpr uint64_t k_red_zone = 128;
// Deep enough for the native stacks seen here; a read beyond it goes to the target.
constexpr size_t k_stack_snapshot = 64 * 1024;
constexpr uint8_t k_eh_version = 1;
constexpr uint8_t k_pe_omit = 0xff;
constexpr uint8_t k_pe_datarel_sdata4 = 0x3b;

// Size of a DW_EH_PE-encoded value that is not relative to anything we need; 0 if unsupported.
size_t encoded_size(uint8_t encoding) {
    switch (encoding & 0x0f) {
        case 0x00: return 8;         // absptr
        case 0x02: case 0x0a: return 2;  // udata2, sdata2
        case 0x03: case 0x0b: return 4;  // udata4, sdata4
        case 0x04: case 0x0c: return 8;  // udata8, sdata8
    }
    return 0;
}

uint64_t read_unsigned(const uint8_t* p, size_t size) {
    uint64_t v = 0;
    std::memcpy(&v, p, size);  // little endian
    return v;
}

}  // namespace

struct Unwinder::Object {
    uint64_t start = 0, end = 0;  // lowest and highest address of its mappings
    uint8_t* image = nullptr;     // the whole file, mapped read-only here
    size_t size = 0;
    struct Segment {
        uint64_t start, end;
        const uint8_t* data;
    };
    std::vector<Segment> read_only;  // non-writable PT_LOADs: the file's bytes are the memory's
    bool has_table = false;
    unw_dyn_info_t table{};                                   // its .eh_frame_hdr search table
    std::vector<std::pair<uint64_t, const char*>> functions;  // by address, names in `image`

    ~Object() {
        if (image) ::munmap(image, size);
    }
};

struct Unwinder::Walk {
    const Unwinder* self = nullptr;
    pid_t pid = 0;
    user_regs_struct regs{};
    uint64_t stack_start = 0;
    std::vector<uint8_t> stack;
    void* upt = nullptr;  // libunwind-ptrace's state for the thread, for the accessors we keep
};

namespace {

// The walk in progress: libunwind hands the accessors libunwind-ptrace's argument, which must
// stay that for the _UPT functions they fall back to. The Tracer runs on one thread.
thread_local Unwinder::Walk* t_walk = nullptr;

}  // namespace

struct Accessors {
    static int find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t* pi,
                              int need_unwind_info, void* arg) {
        const Unwinder::Object* o = t_walk ? t_walk->self->object_at(ip) : nullptr;
        if (o && o->has_table) {
            unw_dyn_info_t di = o->table;
            int r = _Ux86_64_dwarf_search_unwind_table(as, ip, &di, pi, need_unwind_info, arg);
            if (r != -UNW_ENOINFO) return r;
        }
        // Not prepared (loaded since, or no .eh_frame_hdr): libunwind-ptrace finds it.
        return _UPT_find_proc_info(as, ip, pi, need_unwind_info, arg);
    }

    static int get_dyn_info_list_addr(unw_addr_space_t, unw_word_t*, void*) {
        return -UNW_ENOINFO;  // nobody registers dynamic unwind info (_U_dyn_register)
    }

    static int access_mem(unw_addr_space_t as, unw_word_t address, unw_word_t* value, int write,
                          void* arg) {
        if (write || !t_walk) return _UPT_access_mem(as, address, value, write, arg);
        if (t_walk->self->read_cached(address, *value, *t_walk)) return 0;
        iovec local{value, sizeof *value};
        iovec remote{reinterpret_cast<void*>(address), sizeof *value};
        if (::process_vm_readv(t_walk->pid, &local, 1, &remote, 1, 0) == sizeof *value) return 0;
        return _UPT_access_mem(as, address, value, write, arg);
    }

    static int access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t* value, int write,
                          void* arg) {
        if (write || !t_walk) return _UPT_access_reg(as, reg, value, write, arg);
        const user_regs_struct& r = t_walk->regs;
        switch (reg) {
            case UNW_X86_64_RAX: *value = r.rax; return 0;
            case UNW_X86_64_RDX: *value = r.rdx; return 0;
            case UNW_X86_64_RCX: *value = r.rcx; return 0;
            case UNW_X86_64_RBX: *value = r.rbx; return 0;
            case UNW_X86_64_RSI: *value = r.rsi; return 0;
            case UNW_X86_64_RDI: *value = r.rdi; return 0;
            case UNW_X86_64_RBP: *value = r.rbp; return 0;
            case UNW_X86_64_RSP: *value = r.rsp; return 0;
            case UNW_X86_64_R8: *value = r.r8; return 0;
            case UNW_X86_64_R9: *value = r.r9; return 0;
            case UNW_X86_64_R10: *value = r.r10; return 0;
            case UNW_X86_64_R11: *value = r.r11; return 0;
            case UNW_X86_64_R12: *value = r.r12; return 0;
            case UNW_X86_64_R13: *value = r.r13; return 0;
            case UNW_X86_64_R14: *value = r.r14; return 0;
            case UNW_X86_64_R15: *value = r.r15; return 0;
            case UNW_X86_64_RIP: *value = r.rip; return 0;
        }
        return _UPT_access_reg(as, reg, value, write, arg);
    }
};

Unwinder::Unwinder(pid_t pid) : m_pid(pid) {
    unw_accessors_t accessors = _UPT_accessors;
    accessors.find_proc_info = &Accessors::find_proc_info;
    accessors.get_dyn_info_list_addr = &Accessors::get_dyn_info_list_addr;
    accessors.access_mem = &Accessors::access_mem;
    accessors.access_reg = &Accessors::access_reg;
    m_space = unw_create_addr_space(&accessors, 0);
    if (m_space) unw_set_caching_policy(m_space, UNW_CACHE_GLOBAL);
}

Unwinder::~Unwinder() {
    if (m_space) unw_destroy_addr_space(m_space);
}

void Unwinder::prepare(const std::vector<Mapping>& maps,
                       const std::function<bool(const std::string&)>& want_names) {
    if (m_space) unw_flush_cache(m_space, 0, 0);
    m_objects.clear();
    std::map<std::pair<std::string, uint64_t>, std::vector<const Mapping*>> files;
    for (const Mapping& m : maps)
        if (!m.path.empty() && m.path[0] == '/') files[{m.path, m.inode}].push_back(&m);

    for (auto& [key, parts] : files) {
        const Mapping* first = nullptr;
        auto o = std::make_unique<Object>();
        o->start = UINT64_MAX;
        for (const Mapping* m : parts) {
            if (m->offset == 0 && (!first || m->start < first->start)) first = m;
            o->start = std::min(o->start, m->start);
            o->end = std::max(o->end, m->end);
        }
        if (!first) continue;
        // The file as the target sees it (its mount namespace), and the very file it mapped.
        int fd = ::open((proc::path(m_pid, "root") + key.first).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st {};
        bool same = ::fstat(fd, &st) == 0 && st.st_ino == key.second &&
                    static_cast<size_t>(st.st_size) >= sizeof(Elf64_Ehdr);
        void* image = same ? ::mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
        ::close(fd);
        if (image == MAP_FAILED) continue;
        o->image = static_cast<uint8_t*>(image);
        o->size = static_cast<size_t>(st.st_size);

        const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(o->image);
        if (std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
            eh->e_phentsize != sizeof(Elf64_Phdr) ||
            eh->e_phoff + uint64_t(eh->e_phnum) * sizeof(Elf64_Phdr) > o->size)
            continue;
        const auto* ph = reinterpret_cast<const Elf64_Phdr*>(o->image + eh->e_phoff);
        const Elf64_Phdr* first_load = nullptr;
        const Elf64_Phdr* eh_frame = nullptr;
        uint64_t low = UINT64_MAX, high = 0;
        for (int i = 0; i < eh->e_phnum; ++i) {
            if (ph[i].p_type == PT_LOAD) {
                if (!first_load) first_load = &ph[i];
                low = std::min(low, ph[i].p_vaddr);
                high = std::max(high, ph[i].p_vaddr + ph[i].p_memsz);
            } else if (ph[i].p_type == PT_GNU_EH_FRAME) {
                eh_frame = &ph[i];
            }
        }
        if (!first_load) continue;
        uint64_t bias = first->start - (first_load->p_vaddr & ~uint64_t{0xfff});
        for (int i = 0; i < eh->e_phnum; ++i) {
            if (ph[i].p_type != PT_LOAD || (ph[i].p_flags & PF_W) || ph[i].p_offset >= o->size)
                continue;
            uint64_t bytes = std::min<uint64_t>(ph[i].p_filesz, o->size - ph[i].p_offset);
            o->read_only.push_back({bias + ph[i].p_vaddr, bias + ph[i].p_vaddr + bytes,
                                    o->image + ph[i].p_offset});
        }

        // The .eh_frame_hdr binary search table, described as libunwind-ptrace describes it.
        if (eh_frame && eh_frame->p_offset + 4 <= o->size) {
            const uint8_t* hdr = o->image + eh_frame->p_offset;
            size_t ptr_size = encoded_size(hdr[1]);
            size_t count_size = encoded_size(hdr[2]);
            size_t at = 4 + ptr_size;
            if (hdr[0] == k_eh_version && hdr[1] != k_pe_omit && ptr_size != 0 &&
                count_size != 0 && (hdr[2] & 0x70) == 0 && hdr[3] == k_pe_datarel_sdata4 &&
                eh_frame->p_offset + at + count_size <= o->size) {
                uint64_t count = read_unsigned(hdr + at, count_size);
                at += count_size;
                o->table.start_ip = bias + low;
                o->table.end_ip = bias + high;
                o->table.gp = 0;
                o->table.format = UNW_INFO_FORMAT_REMOTE_TABLE;
                o->table.u.rti.name_ptr = 0;
                o->table.u.rti.segbase = bias + eh_frame->p_vaddr;
                o->table.u.rti.table_len = count * 8 / sizeof(unw_word_t);
                o->table.u.rti.table_data = bias + eh_frame->p_vaddr + at;
                o->has_table = true;
            }
        }

        // Function symbols, for the names the stack check looks at.
        if (want_names(key.first) && eh->e_shoff != 0 && eh->e_shentsize == sizeof(Elf64_Shdr) &&
            eh->e_shoff + uint64_t(eh->e_shnum) * sizeof(Elf64_Shdr) <= o->size) {
            const auto* sh = reinterpret_cast<const Elf64_Shdr*>(o->image + eh->e_shoff);
            for (int i = 0; i < eh->e_shnum; ++i) {
                if (sh[i].sh_type != SHT_SYMTAB && sh[i].sh_type != SHT_DYNSYM) continue;
                if (sh[i].sh_link >= eh->e_shnum || sh[i].sh_entsize != sizeof(Elf64_Sym)) continue;
                const Elf64_Shdr& strings = sh[sh[i].sh_link];
                if (sh[i].sh_offset + sh[i].sh_size > o->size ||
                    strings.sh_offset + strings.sh_size > o->size || strings.sh_size == 0)
                    continue;
                const auto* syms = reinterpret_cast<const Elf64_Sym*>(o->image + sh[i].sh_offset);
                const char* names = reinterpret_cast<const char*>(o->image + strings.sh_offset);
                for (size_t s = 0; s < sh[i].sh_size / sizeof(Elf64_Sym); ++s) {
                    if (ELF64_ST_TYPE(syms[s].st_info) != STT_FUNC || syms[s].st_shndx == SHN_UNDEF ||
                        syms[s].st_name >= strings.sh_size)
                        continue;
                    // The string table ends with a NUL, so every name in it is terminated.
                    if (names[strings.sh_size - 1] != '\0') break;
                    uint64_t address = syms[s].st_value + (syms[s].st_shndx == SHN_ABS ? 0 : bias);
                    o->functions.emplace_back(address, names + syms[s].st_name);
                }
            }
            std::sort(o->functions.begin(), o->functions.end(),
                      [](const auto& a, const auto& b) { return a.first < b.first; });
        }
        m_objects.push_back(std::move(o));
    }
    std::sort(m_objects.begin(), m_objects.end(),
              [](const auto& a, const auto& b) { return a->start < b->start; });
}

const Unwinder::Object* Unwinder::object_at(uint64_t address) const {
    auto it = std::upper_bound(m_objects.begin(), m_objects.end(), address,
                               [](uint64_t a, const auto& o) { return a < o->start; });
    if (it == m_objects.begin()) return nullptr;
    --it;
    return address < (*it)->end ? it->get() : nullptr;
}

bool Unwinder::read_cached(uint64_t address, uint64_t& value, const Walk& w) const {
    if (address >= w.stack_start && address - w.stack_start + sizeof value <= w.stack.size()) {
        std::memcpy(&value, w.stack.data() + (address - w.stack_start), sizeof value);
        return true;
    }
    const Object* o = object_at(address);
    if (!o) return false;
    for (const Object::Segment& s : o->read_only) {
        if (address >= s.start && address + sizeof value <= s.end) {
            std::memcpy(&value, s.data + (address - s.start), sizeof value);
            return true;
        }
    }
    return false;
}

const char* Unwinder::function_name(uint64_t ip) const {
    const Object* o = object_at(ip);
    if (!o || o->functions.empty()) return nullptr;
    auto it = std::upper_bound(o->functions.begin(), o->functions.end(), ip,
                               [](uint64_t a, const auto& f) { return a < f.first; });
    if (it == o->functions.begin()) return nullptr;
    return std::prev(it)->second;
}

bool Unwinder::walk(pid_t tid, int max_depth, const std::function<bool(int, uint64_t)>& frame,
                    std::string& why) {
    if (!m_space) {
        why = "libunwind unavailable";
        return false;
    }
    Walk w;
    w.self = this;
    w.pid = m_pid;
    if (::ptrace(PTRACE_GETREGS, tid, nullptr, &w.regs) != 0) {
        why = "cannot read its registers";
        return false;
    }
    // One read of the stack from just below the red zone up; a partial read (the end of the
    // stack mapping) keeps what it got.
    w.stack_start = w.regs.rsp - k_red_zone;
    w.stack.resize(k_stack_snapshot);
    iovec local{w.stack.data(), w.stack.size()};
    iovec remote{reinterpret_cast<void*>(w.stack_start), w.stack.size()};
    ssize_t n = ::process_vm_readv(m_pid, &local, 1, &remote, 1, 0);
    w.stack.resize(n > 0 ? static_cast<size_t>(n) : 0);
    w.upt = _UPT_create(tid);
    if (!w.upt) {
        why = "_UPT_create failed";
        return false;
    }
    t_walk = &w;
    bool complete = true;
    unw_cursor_t cursor;
    if (unw_init_remote(&cursor, m_space, w.upt) < 0) {
        why = "unw_init_remote failed";
        complete = false;
    }
    for (int depth = 0; complete && depth < max_depth; ++depth) {
        unw_word_t ip = 0;
        unw_get_reg(&cursor, UNW_REG_IP, &ip);
        if (!frame(depth, ip)) break;
        int step = unw_step(&cursor);
        if (step == 0) break;
        if (step < 0) {
            char text[32];
            std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(ip));
            why = "cannot unwind past frame " + std::to_string(depth) + " (" + text + ")";
            complete = false;
        }
    }
    t_walk = nullptr;
    _UPT_destroy(w.upt);
    return complete;
}

}  // namespace memray::attach::detail
