#include "payload/fast_unwind.hpp"

#include <link.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "payload/lock.hpp"
#include "payload/log.hpp"

namespace memray::payload {

namespace {

// --- rules

enum RuleKind : uint8_t {
    k_unknown = 0,  // needs the full unwinder
    k_cfa_rsp = 1,  // CFA = rsp + cfa_off
    k_cfa_rbp = 2,  // CFA = rbp + cfa_off
    k_end = 3,      // the return address is undefined: the outermost frame (_start, clone3)
};

struct Rule {
    int32_t cfa_off;
    int16_t rbp_off;   // where the caller's rbp was saved, from the CFA (rbp_saved)
    uint8_t kind;
    uint8_t rbp_saved;  // 0: rbp still holds the caller's value
};
static_assert(sizeof(Rule) == 8);

uint64_t pack(Rule r) noexcept {
    uint64_t v;
    std::memcpy(&v, &r, sizeof v);
    return v;
}
Rule unpack(uint64_t v) noexcept {
    Rule r;
    std::memcpy(&r, &v, sizeof r);
    return r;
}

// --- reading .eh_frame_hdr and .eh_frame (DWARF CFI as in the LSB and the DWARF 4 standard)

constexpr uint8_t k_pe_omit = 0xff;

struct Cursor {
    const uint8_t* p;
    const uint8_t* end;
    bool ok = true;

    bool have(size_t n) noexcept {
        if (!ok || size_t(end - p) < n) ok = false;
        return ok;
    }
    template <class T>
    T raw() noexcept {
        T v{};
        if (!have(sizeof v)) return v;
        std::memcpy(&v, p, sizeof v);
        p += sizeof v;
        return v;
    }
    uint64_t uleb() noexcept {
        uint64_t v = 0;
        for (unsigned shift = 0; have(1); shift += 7) {
            uint8_t b = *p++;
            if (shift < 64) v |= uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80)) return v;
        }
        return 0;
    }
    int64_t sleb() noexcept {
        int64_t v = 0;
        unsigned shift = 0;
        uint8_t b = 0;
        do {
            if (!have(1)) return 0;
            b = *p++;
            if (shift < 64) v |= int64_t(b & 0x7f) << shift;
            shift += 7;
        } while (b & 0x80);
        if (shift < 64 && (b & 0x40)) v |= -(int64_t(1) << shift);
        return v;
    }
    // A pointer in DW_EH_PE encoding `enc`; `data_base` for datarel. Only what x86-64 objects
    // use (absolute, pc-relative, data-relative; indirect is only read for its size).
    uintptr_t pointer(uint8_t enc, uintptr_t data_base) noexcept {
        if (enc == k_pe_omit) return 0;
        uintptr_t at = reinterpret_cast<uintptr_t>(p);
        uintptr_t v = 0;
        switch (enc & 0x0f) {
            case 0x00: v = raw<uint64_t>(); break;
            case 0x01: v = uleb(); break;
            case 0x02: v = raw<uint16_t>(); break;
            case 0x03: v = raw<uint32_t>(); break;
            case 0x04: v = raw<uint64_t>(); break;
            case 0x09: v = uintptr_t(sleb()); break;
            case 0x0a: v = uintptr_t(intptr_t(raw<int16_t>())); break;
            case 0x0b: v = uintptr_t(intptr_t(raw<int32_t>())); break;
            case 0x0c: v = raw<uint64_t>(); break;
            default: ok = false; return 0;
        }
        switch (enc & 0x70) {
            case 0x00: break;
            case 0x10: v += at; break;
            case 0x30: v += data_base; break;
            default: ok = false; return 0;
        }
        return v;
    }
};

// DWARF register numbers on x86-64.
constexpr uint64_t k_reg_rbp = 6;
constexpr uint64_t k_reg_rsp = 7;

enum class How : uint8_t { Same, Offset, Undefined, Other };

struct Row {
    uint64_t cfa_reg = k_reg_rsp;
    int64_t cfa_off = 8;
    bool cfa_expr = false;
    How rbp = How::Same;
    int64_t rbp_off = 0;
    How ra = How::Same;
    int64_t ra_off = 0;
};

struct Cie {
    uint64_t code_align = 1;
    int64_t data_align = -8;
    uint64_t ra_reg = 16;
    uint8_t fde_enc = 0;
    bool has_z = false;
    bool signal = false;
    const uint8_t* insns = nullptr;
    const uint8_t* insns_end = nullptr;
};

bool parse_cie(const uint8_t* at, Cie& cie) noexcept {
    Cursor c{at, at + 16};
    uint64_t len = c.raw<uint32_t>();
    if (len == 0xffffffffu || len == 0) return false;  // 64-bit DWARF: not in ELF64 eh_frame
    c.end = at + 4 + len;
    if (c.raw<uint32_t>() != 0) return false;  // CIE id
    uint8_t version = c.raw<uint8_t>();
    if (version != 1 && version != 3) return false;
    const char* aug = reinterpret_cast<const char*>(c.p);
    size_t aug_len = strnlen(aug, size_t(c.end - c.p));
    if (!c.have(aug_len + 1)) return false;
    c.p += aug_len + 1;
    if (aug[0] && aug[0] != 'z') return false;  // e.g. "eh": pre-2000 objects
    cie.code_align = c.uleb();
    cie.data_align = c.sleb();
    cie.ra_reg = version == 1 ? c.raw<uint8_t>() : c.uleb();
    if (aug[0] == 'z') {
        cie.has_z = true;
        uint64_t aug_data = c.uleb();
        const uint8_t* after = c.p + aug_data;
        if (!c.have(aug_data)) return false;
        for (size_t i = 1; i < aug_len && c.ok; ++i) {
            switch (aug[i]) {
                case 'R': cie.fde_enc = c.raw<uint8_t>(); break;
                case 'L': c.raw<uint8_t>(); break;
                case 'P': c.pointer(c.raw<uint8_t>(), 0); break;  // the personality: skipped
                case 'S': cie.signal = true; break;
                case 'B': break;
                default: c.p = after; i = aug_len; break;  // unknown: the length says the rest
            }
        }
        c.p = after;
    }
    cie.insns = c.p;
    cie.insns_end = c.end;
    return c.ok;
}

// Runs CFA instructions [p, end) while the location stays at or below `target`.
bool run_cfa(const Cie& cie, const uint8_t* p, const uint8_t* end, uintptr_t loc, uintptr_t target,
             Row& row, const Row& initial) noexcept {
    Cursor c{p, end};
    Row stack[8];
    int depth = 0;
    auto set_reg = [&](uint64_t reg, How how, int64_t off) {
        if (reg == k_reg_rbp) row.rbp = how, row.rbp_off = off;
        else if (reg == cie.ra_reg) row.ra = how, row.ra_off = off;
    };
    auto restore_reg = [&](uint64_t reg) {
        if (reg == k_reg_rbp) row.rbp = initial.rbp, row.rbp_off = initial.rbp_off;
        else if (reg == cie.ra_reg) row.ra = initial.ra, row.ra_off = initial.ra_off;
    };
    auto advance = [&](uint64_t delta) {
        uintptr_t next = loc + delta * cie.code_align;
        if (next > target) return false;
        loc = next;
        return true;
    };
    while (c.ok && c.p < c.end) {
        uint8_t op = c.raw<uint8_t>();
        uint8_t hi = op & 0xc0, lo = op & 0x3f;
        if (hi == 0x40) {  // advance_loc
            if (!advance(lo)) return true;
            continue;
        }
        if (hi == 0x80) {  // offset
            set_reg(lo, How::Offset, int64_t(c.uleb()) * cie.data_align);
            continue;
        }
        if (hi == 0xc0) {  // restore
            restore_reg(lo);
            continue;
        }
        switch (op) {
            case 0x00: break;  // nop
            case 0x01: {       // set_loc
                uintptr_t next = c.pointer(cie.fde_enc, 0);
                if (next > target) return true;
                loc = next;
                break;
            }
            case 0x02: if (!advance(c.raw<uint8_t>())) return true; break;
            case 0x03: if (!advance(c.raw<uint16_t>())) return true; break;
            case 0x04: if (!advance(c.raw<uint32_t>())) return true; break;
            case 0x05: {  // offset_extended
                uint64_t reg = c.uleb();
                set_reg(reg, How::Offset, int64_t(c.uleb()) * cie.data_align);
                break;
            }
            case 0x06: restore_reg(c.uleb()); break;
            case 0x07: set_reg(c.uleb(), How::Undefined, 0); break;
            case 0x08: set_reg(c.uleb(), How::Same, 0); break;
            case 0x09: {  // register
                uint64_t reg = c.uleb();
                c.uleb();
                set_reg(reg, How::Other, 0);
                break;
            }
            case 0x0a:  // remember_state
                if (depth == 8) return false;
                stack[depth++] = row;
                break;
            case 0x0b:  // restore_state: the whole row, CFA included (as libgcc and libunwind;
                        // GCC brackets a mid-function epilogue with remember/restore)
                if (depth == 0) return false;
                row = stack[--depth];
                break;
            case 0x0c:  // def_cfa
                row.cfa_reg = c.uleb();
                row.cfa_off = int64_t(c.uleb());
                row.cfa_expr = false;
                break;
            case 0x0d: row.cfa_reg = c.uleb(); row.cfa_expr = false; break;
            case 0x0e: row.cfa_off = int64_t(c.uleb()); break;
            case 0x0f: {  // def_cfa_expression
                uint64_t n = c.uleb();
                if (c.have(n)) c.p += n;
                row.cfa_expr = true;
                break;
            }
            case 0x10:    // expression
            case 0x16: {  // val_expression
                uint64_t reg = c.uleb();
                uint64_t n = c.uleb();
                if (c.have(n)) c.p += n;
                set_reg(reg, How::Other, 0);
                break;
            }
            case 0x11: {  // offset_extended_sf
                uint64_t reg = c.uleb();
                set_reg(reg, How::Offset, c.sleb() * cie.data_align);
                break;
            }
            case 0x12:  // def_cfa_sf
                row.cfa_reg = c.uleb();
                row.cfa_off = c.sleb() * cie.data_align;
                row.cfa_expr = false;
                break;
            case 0x13: row.cfa_off = c.sleb() * cie.data_align; break;
            case 0x14: {  // val_offset
                uint64_t reg = c.uleb();
                c.uleb();
                set_reg(reg, How::Other, 0);
                break;
            }
            case 0x15: {  // val_offset_sf
                uint64_t reg = c.uleb();
                c.sleb();
                set_reg(reg, How::Other, 0);
                break;
            }
            case 0x2e: c.uleb(); break;  // GNU_args_size
            case 0x2f: {                 // GNU_negative_offset_extended
                uint64_t reg = c.uleb();
                set_reg(reg, How::Offset, -int64_t(c.uleb()) * cie.data_align);
                break;
            }
            default: return false;
        }
    }
    return c.ok;
}

Rule rule_from_row(const Row& row) noexcept {
    Rule r{0, 0, k_unknown, 0};
    if (row.ra == How::Undefined) {
        r.kind = k_end;
        return r;
    }
    if (row.cfa_expr || (row.cfa_reg != k_reg_rsp && row.cfa_reg != k_reg_rbp)) return r;
    if (row.ra != How::Offset || row.ra_off != -8) return r;
    if (row.cfa_off < INT32_MIN || row.cfa_off > INT32_MAX) return r;
    if (row.rbp == How::Offset) {
        if (row.rbp_off < INT16_MIN || row.rbp_off > INT16_MAX) return r;
        r.rbp_saved = 1;
        r.rbp_off = int16_t(row.rbp_off);
    } else if (row.rbp != How::Same) {
        return r;
    }
    r.cfa_off = int32_t(row.cfa_off);
    r.kind = row.cfa_reg == k_reg_rsp ? k_cfa_rsp : k_cfa_rbp;
    return r;
}

// The rule at `pc` from the object whose .eh_frame_hdr is at `hdr`.
Rule rule_in_object(const uint8_t* hdr, uintptr_t pc) noexcept {
    Rule unknown{0, 0, k_unknown, 0};
    Cursor h{hdr, hdr + 12};
    if (h.raw<uint8_t>() != 1) return unknown;
    uint8_t frame_enc = h.raw<uint8_t>();
    uint8_t count_enc = h.raw<uint8_t>();
    uint8_t table_enc = h.raw<uint8_t>();
    h.end = hdr + 4 + 8 + 8;
    uintptr_t base = reinterpret_cast<uintptr_t>(hdr);
    h.pointer(frame_enc, base);
    uint64_t count = h.pointer(count_enc, base);
    if (!h.ok || table_enc != 0x3b || count == 0) return unknown;  // datarel | sdata4 only
    const int32_t* table = reinterpret_cast<const int32_t*>(h.p);
    // The last entry whose start is at or below pc.
    size_t lo = 0, hi = count;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (base + intptr_t(table[2 * mid]) <= pc) lo = mid;
        else hi = mid;
    }
    if (base + intptr_t(table[2 * lo]) > pc) return unknown;
    const uint8_t* fde = hdr + table[2 * lo + 1];
    Cursor f{fde, fde + 8};
    uint32_t len = f.raw<uint32_t>();
    if (len == 0 || len == 0xffffffffu) return unknown;
    f.end = fde + 4 + len;
    const uint8_t* id_at = f.p;
    uint32_t cie_off = f.raw<uint32_t>();
    if (cie_off == 0) return unknown;  // a CIE, not an FDE
    Cie cie;
    if (!parse_cie(id_at - cie_off, cie) || cie.signal) return unknown;
    uintptr_t start = f.pointer(cie.fde_enc, 0);
    uintptr_t range = f.pointer(cie.fde_enc & 0x0f, 0);
    if (!f.ok || pc < start || pc - start >= range) return unknown;
    if (cie.has_z) {
        uint64_t n = f.uleb();
        if (!f.have(n)) return unknown;
        f.p += n;
    }
    Row initial;
    if (!run_cfa(cie, cie.insns, cie.insns_end, start, UINTPTR_MAX, initial, initial))
        return unknown;
    Row row = initial;
    if (!run_cfa(cie, f.p, f.end, start, pc, row, initial)) return unknown;
    return rule_from_row(row);
}

struct Lookup {
    uintptr_t pc;
    Rule rule;
};

int find_rule(dl_phdr_info* info, size_t, void* data) noexcept {
    auto* l = static_cast<Lookup*>(data);
    const ElfW(Phdr)* eh = nullptr;
    bool inside = false;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type == PT_GNU_EH_FRAME) eh = &ph;
        if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X)) {
            uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
            if (l->pc >= lo && l->pc < lo + ph.p_memsz) inside = true;
        }
    }
    if (!inside) return 0;
    // Read while dl_iterate_phdr holds the loader's lock: the object cannot go away meanwhile.
    if (eh) {
        const auto* hdr = reinterpret_cast<const uint8_t*>(info->dlpi_addr + eh->p_vaddr);
        l->rule = rule_in_object(hdr, l->pc);
    }
    return 1;
}

// --- the rule table: open addressing, lock-free lookups, inserts under a lock. The key is the
// address plus the table's generation in the top bits, so a table need not be cleared after a
// dlclose: old keys simply stop matching. A full table is replaced by an empty one; old tables
// are freed at the next session start, when no thread can be walking.

constexpr size_t k_slots = size_t(1) << 16;  // 1 MiB, touched as used
constexpr size_t k_max_used = k_slots / 2;

struct Slot {
    std::atomic<uint64_t> key;
    std::atomic<uint64_t> value;
};

struct Table {
    Table* older;
    size_t used;
    Slot slots[k_slots];
};

struct FastUnwindState {
    bool enabled = false;
    bool checking = false;
    bool abort_on_difference = false;  // MEMRAY_STACK_CHECK=abort (the tests)
    std::atomic<Table*> table{nullptr};
    std::atomic<uint32_t> generation{1};
    SpinLock lock;  // inserts, table replacement
    std::atomic<uint64_t> checked{0};
    std::atomic<uint64_t> differed{0};
    std::atomic<uint64_t> fell_back{0};
    std::atomic<uint64_t> resumed{0};  // compared walks that reused frames after a failed attempt
    std::atomic<uint64_t> stopped{0};  // compared walks that ended at an eval-loop call
};
constinit FastUnwindState g_fast;

Table* new_table(Table* older) noexcept {
    void* p = mmap(nullptr, sizeof(Table), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    auto* t = static_cast<Table*>(p);
    t->older = older;
    t->used = 0;
    return t;
}

inline size_t slot_of(uint64_t key) noexcept {
    return size_t((key * 0x9e3779b97f4a7c15ull) >> 48) & (k_slots - 1);
}

inline uint64_t key_of(uintptr_t pc, uint64_t generation) noexcept {
    return (uint64_t(pc) & ((uint64_t(1) << 48) - 1)) | ((generation & 0xffff) << 48);
}

Rule slow_rule(uintptr_t pc) noexcept {
    Lookup l{pc, Rule{0, 0, k_unknown, 0}};
    dl_iterate_phdr(find_rule, &l);
    return l.rule;
}

Rule shared_rule_for(uintptr_t pc, uint64_t key) noexcept {
    Table* t = g_fast.table.load(std::memory_order_acquire);
    if (t) {
        for (size_t i = slot_of(key);; i = (i + 1) & (k_slots - 1)) {
            uint64_t k = t->slots[i].key.load(std::memory_order_acquire);
            if (k == key) return unpack(t->slots[i].value.load(std::memory_order_relaxed));
            if (k == 0) break;
        }
    }
    Rule r = slow_rule(pc);
    LockGuard guard(g_fast.lock);
    t = g_fast.table.load(std::memory_order_relaxed);
    if (!t || t->used >= k_max_used) {
        Table* fresh = new_table(t);
        if (!fresh) return r;
        g_fast.table.store(fresh, std::memory_order_release);
        t = fresh;
    }
    for (size_t i = slot_of(key);; i = (i + 1) & (k_slots - 1)) {
        uint64_t k = t->slots[i].key.load(std::memory_order_relaxed);
        if (k == key) return r;  // another thread was first
        if (k != 0) continue;
        t->slots[i].value.store(pack(r), std::memory_order_relaxed);
        t->slots[i].key.store(key, std::memory_order_release);
        ++t->used;
        return r;
    }
}

inline Rule rule_for(uintptr_t pc, uint64_t generation, UnwindRuleCache& cache) noexcept {
    uint64_t key = key_of(pc, generation);
    size_t i = size_t((pc ^ (pc >> 9)) & (UnwindRuleCache::k_size - 1));
    if (cache.key[i] == key) return unpack(cache.rule[i]);
    Rule r = shared_rule_for(pc, key);
    cache.key[i] = key;
    cache.rule[i] = pack(r);
    return r;
}

bool env_flag(const char* name, bool fallback) noexcept {
    const char* v = getenv(name);
    if (!v || !*v) return fallback;
    return std::strcmp(v, "0") != 0;
}

}  // namespace

bool fast_unwind_init() noexcept {
#if defined(__x86_64__)
    g_fast.enabled = env_flag("MEMRAY_FAST_UNWIND", true);
#else
    g_fast.enabled = false;
#endif
    g_fast.checking = g_fast.enabled && env_flag("MEMRAY_STACK_CHECK", false);
    const char* check = getenv("MEMRAY_STACK_CHECK");
    g_fast.abort_on_difference = g_fast.checking && check && std::strcmp(check, "abort") == 0;
    {
        // A new session: no thread is walking (tracking is off), so older tables can go.
        LockGuard guard(g_fast.lock);
        Table* t = g_fast.table.load(std::memory_order_relaxed);
        if (t) {
            for (Table* old = t->older; old;) {
                Table* next = old->older;
                munmap(old, sizeof(Table));
                old = next;
            }
            t->older = nullptr;
        }
    }
    g_fast.checked.store(0);
    g_fast.differed.store(0);
    g_fast.fell_back.store(0);
    g_fast.resumed.store(0);
    log(LogLevel::Debug, "native stacks: %s%s", g_fast.enabled ? "own walker" : "libunwind",
        g_fast.checking ? ", checked against libunwind on every event" : "");
    return g_fast.enabled;
}

bool fast_unwind_enabled() noexcept { return g_fast.enabled; }
bool fast_unwind_checking() noexcept { return g_fast.checking; }

namespace {

enum class Step : uint8_t { Caller, End, Fail };

// Moves the registers one frame out by the frame's rule. End: this was the outermost frame (its
// rule says so, or its return address is 0: `end_slot` is then that slot). Fail: the rule cannot
// be followed here.
inline Step step_out(Rule r, uintptr_t& ip, uintptr_t& pc, uintptr_t& sp, uintptr_t& bp,
                     uintptr_t& end_slot) noexcept {
    if (r.kind == k_end) return Step::End;
    if (r.kind == k_unknown) return Step::Fail;
    uintptr_t cfa = (r.kind == k_cfa_rsp ? sp : bp) + uintptr_t(intptr_t(r.cfa_off));
    // Frames move up the stack; anything else is a stack switch or a wrong rule.
    if (cfa <= sp || cfa - sp > (uintptr_t(64) << 20) || (cfa & 7)) return Step::Fail;
    uintptr_t ra = *reinterpret_cast<const uintptr_t*>(cfa - 8);
    if (r.rbp_saved) bp = *reinterpret_cast<const uintptr_t*>(cfa + intptr_t(r.rbp_off));
    sp = cfa;
    if (ra == 0) {
        end_slot = cfa - 8;
        return Step::End;
    }
    ip = ra;
    pc = ra - 1;
    return Step::Caller;
}

// Frame `d` of the history has the registers of the walk's current frame: re-read what the
// previous walk read from there outward. Returns 0 when every value is unchanged; k when history
// frame k - 1 differs now (its return address or saved rbp: an attempt from frame k or further
// in reads that again); UINT32_MAX when the end marker changed.
uint32_t history_differs(const UnwindHistory& h, uint32_t d) noexcept {
    for (uint32_t i = h.checks_below[d]; i-- > 0;) {
        if (*reinterpret_cast<const uintptr_t*>(h.check_addr[i]) != h.check_value[i])
            return h.check_frame[i];
    }
    bool end_holds = h.end_slot == 0 || *reinterpret_cast<const uintptr_t*>(h.end_slot) == 0;
    return end_holds ? 0 : UINT32_MAX;
}

// Keeps this walk as the history: its `n` frames (innermost first; ips in `out`) below history
// frame `keep` (kept frames 0..keep-1 are the outer ones; keep = 0 replaces all).
void store_history(UnwindHistory& h, const uintptr_t* out, int n, uint32_t keep,
                   uint64_t generation, uintptr_t end_slot, bool set_end) noexcept {
    for (int t = 0; t < n; ++t) {
        uint32_t d = keep + uint32_t(n - 1 - t);
        h.ip[d] = out[t];
        h.sp[d] = h.new_sp[t];
        h.bp[d] = h.new_bp[t];
        h.rule[d] = h.new_rule[t];
    }
    // Outermost first: a frame reads its rbp when its CFA comes from rbp, or when it passes rbp
    // on unchanged to a caller frame that reads it.
    for (uint32_t d = keep; d < keep + uint32_t(n); ++d) {
        Rule r = unpack(h.rule[d]);
        h.needs_bp[d] = r.kind == k_cfa_rbp || (!r.rbp_saved && d > 0 && h.needs_bp[d - 1]);
    }
    h.count = keep + uint32_t(n);
    // The checks of frames keep - 1 and inward changed (frame keep's rule and needs_bp are new).
    uint32_t from = keep > 0 ? keep : 1;
    uint32_t at = from > 1 ? h.checks_below[from - 1] : 0;
    if (h.count > 0) h.checks_below[0] = 0;
    for (uint32_t k = from; k < h.count; ++k) {
        uintptr_t cfa = h.sp[k - 1];
        h.check_addr[at] = cfa - 8;
        h.check_value[at] = h.ip[k - 1];
        h.check_frame[at++] = k;
        Rule r = unpack(h.rule[k]);
        if (r.rbp_saved && h.needs_bp[k - 1]) {
            h.check_addr[at] = cfa + uintptr_t(intptr_t(r.rbp_off));
            h.check_value[at] = h.bp[k - 1];
            h.check_frame[at++] = k;
        }
        h.checks_below[k] = at;
    }
    if (set_end) h.end_slot = end_slot;
    h.generation = generation;
}

}  // namespace

// Both walks stay out of record_allocation (LTO inlined them there): with both inlined, the
// capture's own loops around them ran slower (3.10, Python frames 30 deep, --native: 1.05x).
__attribute__((noinline)) int fast_unwind_walk(uintptr_t ip, uintptr_t sp, uintptr_t bp,
                                               bool returned_to, uintptr_t* out, int max,
                                               UnwindRuleCache& cache, UnwindHistory& h) noexcept {
    // Where the rule is looked up: the call instruction for callers.
    uintptr_t pc = returned_to ? ip - 1 : ip;
    const uint64_t generation = g_fast.generation.load(std::memory_order_acquire);
    if (max > int(UnwindHistory::k_max)) max = int(UnwindHistory::k_max);
    // The history frame whose sp is the next at or above this frame's (sp grows outward).
    bool try_history = h.generation == generation && h.count > 0;
    h.reused = 0;
    h.resumed = false;
    int64_t d = int64_t(h.count) - 1;
    // Attempts only from history frames outside (below) this one: after a failed attempt, the
    // frame it found changed. Nearly every failure is the next frame out: the same callee at the
    // same depth, called from another call site (a tenth of the walks with --native on Python).
    // The frames out from there usually still match, so the walk goes on looking.
    int64_t retry_below = d + 1;
    bool failed = false;
    int n = 0;
    while (n < max) {
        if (try_history) {
            while (d >= 0 && h.sp[d] < sp) --d;
            if (d < 0) {
                try_history = false;
            } else if (d < retry_below && h.sp[d] == sp && h.ip[d] == ip &&
                       (h.bp[d] == bp || !h.needs_bp[d])) {
                if (n + d + 1 > max) {
                    try_history = false;
                } else if (uint32_t k = history_differs(h, uint32_t(d)); k == 0) {
                    for (int64_t j = d; j >= 0; --j) out[n++] = h.ip[j];
                    // Frames above d stay; this walk's own n - d - 1 frames go below them.
                    store_history(h, out, n - int(d) - 1, uint32_t(d) + 1, generation, 0, false);
                    h.reused = uint32_t(d) + 1;
                    h.resumed = failed;
                    return n;
                } else if (k == UINT32_MAX || k < 2) {
                    try_history = false;  // nothing further out can hold
                } else {
                    retry_below = int64_t(k) - 1;
                    failed = true;
                }
            }
        }
        out[n] = ip;
        h.new_sp[n] = sp;
        h.new_bp[n] = bp;
        Rule r = rule_for(pc, generation, cache);
        h.new_rule[n] = pack(r);
        ++n;
        uintptr_t end_slot = 0;
        Step step = step_out(r, ip, pc, sp, bp, end_slot);
        if (step == Step::End) {
            store_history(h, out, n, 0, generation, end_slot, true);
            return n;
        }
        if (step == Step::Fail) break;
    }
    // Given up, or cut at `max`: no history (a cut walk's outermost frame is not the end).
    h.generation = 0;
    return n < max ? -1 : n;
}

__attribute__((noinline)) int fast_unwind_walk_until(uintptr_t ip, uintptr_t sp, uintptr_t bp,
                                                     bool returned_to, uintptr_t* out, int max,
                                                     UnwindRuleCache& cache, uintptr_t lo,
                                                     uintptr_t hi, size_t count,
                                                     bool& stopped) noexcept {
    uintptr_t pc = returned_to ? ip - 1 : ip;
    const uint64_t generation = g_fast.generation.load(std::memory_order_acquire);
    stopped = false;
    int n = 0;
    while (n < max) {
        out[n++] = ip;
        if (ip >= lo && ip < hi && --count == 0) {
            stopped = true;
            return n;
        }
        uintptr_t end_slot = 0;
        Step step = step_out(rule_for(pc, generation, cache), ip, pc, sp, bp, end_slot);
        if (step == Step::End) return n;
        if (step == Step::Fail) return -1;
    }
    return n;
}

void fast_unwind_objects_changed() noexcept {
    g_fast.generation.fetch_add(1, std::memory_order_relaxed);
}

void fast_unwind_count_check(bool same, bool fell_back, bool resumed, bool stopped) noexcept {
    g_fast.checked.fetch_add(1, std::memory_order_relaxed);
    if (resumed) g_fast.resumed.fetch_add(1, std::memory_order_relaxed);
    if (stopped) g_fast.stopped.fetch_add(1, std::memory_order_relaxed);
    if (fell_back) g_fast.fell_back.fetch_add(1, std::memory_order_relaxed);
    else if (!same) g_fast.differed.fetch_add(1, std::memory_order_relaxed);
    if (!same && !fell_back && g_fast.abort_on_difference) {
        log(LogLevel::Error, "stack check: the walk and libunwind differ; aborting "
                             "(MEMRAY_STACK_CHECK=abort)");
        abort();
    }
}

void fast_unwind_report() noexcept {
    if (!g_fast.checking) return;
    uint64_t checked = g_fast.checked.load(), differed = g_fast.differed.load(),
             fell_back = g_fast.fell_back.load(), resumed = g_fast.resumed.load(),
             stopped = g_fast.stopped.load();
    log(differed ? LogLevel::Error : LogLevel::Info,
        "stack check: %llu native stacks compared with libunwind, %llu differed, %llu left to "
        "libunwind, %llu took frames over after a failed attempt, %llu ended at the eval-loop "
        "call of their outermost Python frames",
        (unsigned long long)checked, (unsigned long long)differed, (unsigned long long)fell_back,
        (unsigned long long)resumed, (unsigned long long)stopped);
}

}  // namespace memray::payload
