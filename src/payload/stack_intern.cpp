#include "payload/stack_intern.hpp"

#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "format/encoder.hpp"
#include "payload/lock.hpp"
#include "payload/log.hpp"
#include "payload/python_stack.hpp"

namespace memray::payload {

void writer_wake_now() noexcept;  // writer.cpp

namespace {

constexpr uint32_t k_native_bit = 1u << 31;  // in NodeSlot::parent_kind
constexpr uint32_t k_entry_bit = 1u << 30;   // in NodeSlot::parent_kind: python entry frame
constexpr uint32_t k_max_node_id = (1u << 30) - 1;
constexpr size_t k_initial_node_slots = 1u << 16;
constexpr size_t k_initial_code_slots = 1u << 12;
constexpr size_t k_channel_bytes = size_t(256) << 20;  // reserved, touched as used
constexpr size_t k_max_line_table = size_t(1) << 20;   // larger tables are not copied
constexpr size_t k_node_item_size = 1 + 4 + 4 + 1 + 8;

void* map_memory(size_t bytes) noexcept {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

inline uint64_t mix(uint64_t a, uint64_t b) noexcept {
    uint64_t h = (a * 0x9E3779B97F4A7C15ull) ^ (b + 0x632BE59BD9B4E019ull);
    h ^= h >> 31;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

// Slots are written once: key fields first, then the id with release. Readers treat id == 0 as
// an empty slot, so a half-written slot is simply not found yet (the inserter holds the lock).
struct NodeSlot {
    std::atomic<uint32_t> id;
    uint32_t parent_kind;
    uint64_t value;
    uint64_t hash() const noexcept { return mix(parent_kind, value); }
};
struct CodeSlot {
    std::atomic<uint32_t> id;
    uint32_t pad;
    uint64_t code;
    uint64_t fingerprint;
    uint64_t pad2;
    uint64_t hash() const noexcept { return mix(code, fingerprint); }
};

// One open-addressing table; grows by publishing a rehashed copy twice the size. Readers holding
// the old copy still see correct (if incomplete) contents; a miss is re-checked under the lock in
// the current copy, so nothing is ever interned twice. Old copies live until the next reset.
template <class Slot>
struct Table {
    Table* older;
    size_t mask;
    size_t used;
    size_t map_bytes;
    Slot* slots() noexcept { return reinterpret_cast<Slot*>(this + 1); }
};

template <class Slot>
Table<Slot>* table_new(size_t n_slots) noexcept {
    size_t bytes = sizeof(Table<Slot>) + n_slots * sizeof(Slot);
    auto* t = static_cast<Table<Slot>*>(map_memory(bytes));
    if (!t) return nullptr;
    t->older = nullptr;
    t->mask = n_slots - 1;
    t->used = 0;
    t->map_bytes = bytes;
    return t;
}

template <class Slot>
void table_free_chain(Table<Slot>* t) noexcept {
    while (t) {
        Table<Slot>* older = t->older;
        munmap(t, t->map_bytes);
        t = older;
    }
}

template <class Slot, class Match>
uint32_t table_find(Table<Slot>* t, uint64_t h, Match&& match) noexcept {
    Slot* s = t->slots();
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        uint32_t id = s[i].id.load(std::memory_order_acquire);
        if (id == 0) return 0;
        if (match(s[i])) return id;
    }
}

// Under the lock. Fills key fields through `fill`, then publishes `id`.
template <class Slot, class Fill>
bool table_insert(std::atomic<Table<Slot>*>& current, uint64_t h, uint32_t id,
                  Fill&& fill) noexcept {
    Table<Slot>* t = current.load(std::memory_order_relaxed);
    if ((t->used + 1) * 2 > t->mask + 1) {
        Table<Slot>* bigger = table_new<Slot>((t->mask + 1) * 2);
        if (!bigger) return false;
        Slot* from = t->slots();
        Slot* to = bigger->slots();
        for (size_t i = 0; i <= t->mask; ++i) {
            uint32_t old_id = from[i].id.load(std::memory_order_relaxed);
            if (!old_id) continue;
            size_t j = from[i].hash() & bigger->mask;
            while (to[j].id.load(std::memory_order_relaxed)) j = (j + 1) & bigger->mask;
            std::memcpy(reinterpret_cast<char*>(&to[j]) + sizeof(uint32_t),
                        reinterpret_cast<char*>(&from[i]) + sizeof(uint32_t),
                        sizeof(Slot) - sizeof(uint32_t));
            to[j].id.store(old_id, std::memory_order_relaxed);
        }
        bigger->used = t->used;
        bigger->older = t;
        current.store(bigger, std::memory_order_release);
        t = bigger;
    }
    Slot* s = t->slots();
    size_t i = h & t->mask;
    while (s[i].id.load(std::memory_order_relaxed)) i = (i + 1) & t->mask;
    fill(s[i]);
    s[i].id.store(id, std::memory_order_release);
    ++t->used;
    return true;
}

// The tables are searched lock-free by every recording thread. Everything else is written under
// `lock`: by a recording thread adding a node or code, by the writer thread consuming the
// channel, by intern_reset() between sessions. `consumed` is read by the writer alone. Never
// reset as a whole: the channel mapping and the tables' memory are reused across sessions.
struct InternState {
    SpinLock lock;
    std::atomic<Table<NodeSlot>*> nodes{nullptr};
    std::atomic<Table<CodeSlot>*> codes{nullptr};
    uint32_t next_node = 0;
    uint32_t next_code = 0;
    std::atomic<uint32_t> node_count{0};
    std::atomic<uint32_t> code_count{0};
    bool failed_logged = false;

    uint8_t* channel = nullptr;       // the metadata channel, mapped once
    std::atomic<size_t> committed{0};  // bytes queued
    size_t consumed = 0;               // bytes the writer took
};
constinit InternState g_intern;

// The lock, taken only once the channel has room for `bytes` (for LockGuard). A full channel
// means the writer is far behind: let it catch up rather than lose the record.
struct ChannelRoom {
    size_t bytes;
    void lock() noexcept {
        for (;;) {
            g_intern.lock.lock();
            if (g_intern.committed.load(std::memory_order_relaxed) + bytes <= k_channel_bytes)
                return;
            g_intern.lock.unlock();
            writer_wake_now();
            timespec ts{0, 1000000};
            nanosleep(&ts, nullptr);
        }
    }
    void unlock() noexcept { g_intern.lock.unlock(); }
};

void fail_once(const char* what) noexcept {
    if (g_intern.failed_logged) return;
    g_intern.failed_logged = true;
    log(LogLevel::Error, "error: %s; stacks will be truncated", what);
}

template <class T>
inline void put_raw(uint8_t*& p, T v) noexcept {
    std::memcpy(p, &v, sizeof v);
    p += sizeof v;
}
template <class T>
inline T get_raw(const uint8_t*& p) noexcept {
    T v;
    std::memcpy(&v, p, sizeof v);
    p += sizeof v;
    return v;
}

uint32_t find_node(uint32_t parent_kind, uint64_t value, uint64_t h) noexcept {
    return table_find(g_intern.nodes.load(std::memory_order_acquire), h, [&](const NodeSlot& s) {
        return s.parent_kind == parent_kind && s.value == value;
    });
}

uint32_t find_code(uint64_t code, uint64_t fp, uint64_t h) noexcept {
    return table_find(g_intern.codes.load(std::memory_order_acquire), h, [&](const CodeSlot& s) {
        return s.code == code && s.fingerprint == fp;
    });
}

}  // namespace

bool intern_init() noexcept {
    if (g_intern.channel) return true;
    g_intern.channel = static_cast<uint8_t*>(map_memory(k_channel_bytes));
    if (!g_intern.channel) return false;
    intern_reset();
    return g_intern.nodes.load() && g_intern.codes.load();
}

void intern_reset() noexcept {
    LockGuard lock(g_intern.lock);
    table_free_chain(g_intern.nodes.load(std::memory_order_relaxed));
    table_free_chain(g_intern.codes.load(std::memory_order_relaxed));
    g_intern.nodes.store(table_new<NodeSlot>(k_initial_node_slots), std::memory_order_release);
    g_intern.codes.store(table_new<CodeSlot>(k_initial_code_slots), std::memory_order_release);
    g_intern.next_node = 0;
    g_intern.next_code = 0;
    g_intern.node_count.store(0, std::memory_order_relaxed);
    g_intern.code_count.store(0, std::memory_order_relaxed);
    size_t used = g_intern.committed.load(std::memory_order_relaxed);
    if (used > (size_t(1) << 20)) madvise(g_intern.channel, used, MADV_DONTNEED);
    g_intern.committed.store(0, std::memory_order_release);
    g_intern.consumed = 0;
    g_intern.failed_logged = false;
}

void intern_lock_for_fork() noexcept { g_intern.lock.lock(); }
void intern_unlock_after_fork_parent() noexcept { g_intern.lock.unlock(); }
void intern_after_fork_child() noexcept { g_intern.lock.reset_in_child(); }

uint32_t intern_code(const void* code, uint64_t fingerprint) noexcept {
    uint64_t key = uint64_t(uintptr_t(code));
    uint64_t h = mix(key, fingerprint);
    if (uint32_t id = find_code(key, fingerprint, h)) return id;

    // First sight: copy what the Code record needs outside the lock (may be slow).
    PyCodeDetails details;
    if (!python_code_details(code, details)) {
        std::strcpy(details.function, "<unknown>");
        details.file[0] = '\0';
        details.first_line = 0;
        details.line_table = nullptr;
        details.line_table_len = 0;
    }
    details.function[sizeof details.function - 1] = '\0';
    details.file[sizeof details.file - 1] = '\0';
    size_t lt_len = details.line_table_len <= k_max_line_table ? details.line_table_len : 0;
    size_t bound = 1 + 4 + 1 + 10 + 10 + sizeof details.function + 10 + sizeof details.file +
                   10 + 10 + 10 + lt_len;

    const char* failure = nullptr;  // logged once the lock is released
    uint32_t id;
    {
        ChannelRoom room{bound};
        LockGuard lock(room);
        if ((id = find_code(key, fingerprint, h))) return id;
        id = g_intern.next_code + 1;
        size_t at = g_intern.committed.load(std::memory_order_relaxed);
        uint8_t* p = g_intern.channel + at;
        format::ByteSink sink(p + 5, bound - 5);
        format::encode_code(sink, id, details.function, details.file, details.first_line,
                            python_line_format(), details.line_table, lt_len);
        if (sink.overflow) {  // cannot happen with the bound above; stay safe anyway
            failure = "code record too large";
            id = 0;
        } else {
            uint8_t* q = p;
            put_raw<uint8_t>(q, uint8_t(MetaKind::Code));
            put_raw<uint32_t>(q, uint32_t(sink.size()));
            g_intern.committed.store(at + 5 + sink.size(), std::memory_order_release);
            bool ok = table_insert(g_intern.codes, h, id, [&](CodeSlot& s) {
                s.code = key;
                s.fingerprint = fingerprint;
            });
            // Not found again when the table could not grow: the record is queued, so the id
            // stays usable (a later sight queues another record under a new id, still correct).
            g_intern.next_code = id;
            g_intern.code_count.store(id, std::memory_order_relaxed);
            if (!ok) failure = "cannot grow the code table";
        }
    }
    if (failure) fail_once(failure);
    return id;
}

uint32_t intern_frame(uint32_t parent, const StackFrame& frame) noexcept {
    uint32_t parent_kind;
    uint64_t value;
    uint32_t code_id = 0;
    if (frame.kind != uint32_t(format::FrameKind::Native)) {
        code_id = intern_code(reinterpret_cast<const void*>(uintptr_t(frame.value)),
                              frame.fingerprint);
        if (!code_id) return 0;
        parent_kind =
            frame.kind == uint32_t(format::FrameKind::PythonEntry) ? parent | k_entry_bit : parent;
        value = uint64_t(code_id) | (uint64_t(frame.offset) << 32);
    } else {
        parent_kind = parent | k_native_bit;
        value = frame.value;
    }
    uint64_t h = mix(parent_kind, value);
    if (uint32_t id = find_node(parent_kind, value, h)) return id;

    const char* failure = nullptr;  // logged once the lock is released
    uint32_t id;
    {
        ChannelRoom room{k_node_item_size};
        LockGuard lock(room);
        if ((id = find_node(parent_kind, value, h))) return id;
        if (g_intern.next_node >= k_max_node_id) {
            failure = "too many distinct stacks";
            id = 0;
        } else {
            id = g_intern.next_node + 1;
            // Queue the record before the id becomes visible in the table.
            size_t at = g_intern.committed.load(std::memory_order_relaxed);
            uint8_t* p = g_intern.channel + at;
            put_raw<uint8_t>(p, uint8_t(MetaKind::Node));
            put_raw<uint32_t>(p, id);
            put_raw<uint32_t>(p, parent);
            put_raw<uint8_t>(p, uint8_t(frame.kind));
            put_raw<uint64_t>(p, value);
            g_intern.committed.store(at + k_node_item_size, std::memory_order_release);
            g_intern.next_node = id;
            g_intern.node_count.store(id, std::memory_order_relaxed);
            bool ok = table_insert(g_intern.nodes, h, id, [&](NodeSlot& s) {
                s.parent_kind = parent_kind;
                s.value = value;
            });
            // The queued record then names a node no event uses: harmless.
            if (!ok) {
                failure = "cannot grow the stack table";
                id = 0;
            }
        }
    }
    if (failure) fail_once(failure);
    return id;
}

// Three 8-byte compares: offset and kind are read as the one word the compiler stores them as
// (capture_stack has just written them).
inline bool same_frame(const StackFrame& a, const StackFrame& b) noexcept {
    static_assert(offsetof(StackFrame, kind) == offsetof(StackFrame, offset) + 4);
    uint64_t wa, wb;
    std::memcpy(&wa, &a.offset, 8);
    std::memcpy(&wb, &b.offset, 8);
    return a.value == b.value && a.fingerprint == b.fingerprint && wa == wb;
}

inline PrefixCache::Edge& edge_slot(PrefixCache& cache, uint32_t parent,
                                   const StackFrame& f) noexcept {
    uint64_t h = (f.value ^ (uint64_t(parent) << 20) ^ (uint64_t(f.offset) << 7)) *
                 0x9e3779b97f4a7c15ull;
    return cache.edges[h >> (64 - __builtin_ctzll(PrefixCache::k_edges))];
}

// intern_frame() through the thread's recent edges.
inline uint32_t child_of(PrefixCache& cache, uint32_t parent, const StackFrame& f) noexcept {
    PrefixCache::Edge& e = edge_slot(cache, parent, f);
    if (e.child && e.parent == parent && same_frame(e.frame, f)) return e.child;
    uint32_t child = intern_frame(parent, f);
    if (child) e = PrefixCache::Edge{f, parent, child};
    return child;
}

uint32_t intern_stack(PrefixCache& cache, uint32_t session, const StackFrame* frames,
                      size_t n, size_t known) noexcept {
    if (n > k_max_stack_frames) n = k_max_stack_frames;
    if (cache.session != session) {
        cache.session = session;
        cache.len = 0;
        known = 0;
        std::memset(cache.edges, 0, sizeof cache.edges);
    }
    size_t i = known <= cache.len && known <= n ? known : 0;
    size_t common = n < cache.len ? n : cache.len;
    while (i < common && same_frame(frames[i], cache.frames[i])) ++i;
    uint32_t node = i ? cache.nodes[i - 1] : 0;
    for (; i < n; ++i) {
        uint32_t child = child_of(cache, node, frames[i]);
        if (!child) {
            cache.len = uint32_t(i);
            return node;
        }
        node = child;
        cache.frames[i] = frames[i];
        cache.nodes[i] = node;
    }
    cache.len = uint32_t(n);
    return node;
}

uint32_t intern_node_count() noexcept {
    return g_intern.node_count.load(std::memory_order_relaxed);
}
uint32_t intern_code_count() noexcept {
    return g_intern.code_count.load(std::memory_order_relaxed);
}

MetaView metadata_peek() noexcept {
    size_t end = g_intern.committed.load(std::memory_order_acquire);
    return MetaView{g_intern.channel + g_intern.consumed, end - g_intern.consumed};
}

void metadata_consume(size_t len) noexcept {
    LockGuard lock(g_intern.lock);
    g_intern.consumed += len;
    // Rewind when everything was taken, so the channel only ever touches a few pages.
    if (g_intern.consumed == g_intern.committed.load(std::memory_order_relaxed)) {
        g_intern.consumed = 0;
        g_intern.committed.store(0, std::memory_order_release);
    }
}

const uint8_t* metadata_next(const uint8_t* p, const uint8_t* end, MetaKind& kind, MetaNode& node,
                             const uint8_t*& code_record, size_t& code_len) noexcept {
    if (p >= end) return nullptr;
    kind = MetaKind(get_raw<uint8_t>(p));
    if (kind == MetaKind::Node) {
        node.id = get_raw<uint32_t>(p);
        node.parent = get_raw<uint32_t>(p);
        node.kind = format::FrameKind(get_raw<uint8_t>(p));
        uint64_t value = get_raw<uint64_t>(p);
        node.code_id = uint32_t(value);
        node.offset = uint32_t(value >> 32);
        node.ip = value;
        return p;
    }
    uint32_t len = get_raw<uint32_t>(p);
    code_record = p;
    code_len = len;
    return p + len;
}

}  // namespace memray::payload
