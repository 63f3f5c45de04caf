#include "payload/aggregate_writer.hpp"

#include <sys/mman.h>

#include <cstring>

#include "payload/log.hpp"
#include "payload/state.hpp"

namespace memray::payload {

namespace {

using format::Allocator;

// Open addressing with linear probing; key 0 marks an empty slot. A free leaves its slot as a
// tombstone that keeps the key (location k_freed): allocators hand a freed address out again soon
// (glibc's tcache at once), and the next allocation there takes the slot back, where deleting
// it (shifting its probe chain back) and inserting it again cost the writer ~8% of a native
// churn run. An allocation at another address may take a tombstone on its way too (slot_for).
// Tombstones count towards the load; a rebuild drops them.
constexpr uint32_t k_freed = UINT32_MAX;
struct LiveSlot {
    uint64_t key;  // address + 1
    uint64_t size;
    uint32_t location;  // k_freed: a tombstone
};
struct IndexSlot {
    uint64_t key;  // location_key(): never 0 (an allocation's allocator is never 0)
    uint32_t location;
};
// Alive now (live_*) and at the latest peak (saved_* when saved_epoch is that peak's number,
// else live_*: a location not touched since the peak holds what it held then). The same epoch
// rule as the reports' AllocationTracker; O(1) per event, nothing to copy at a new peak.
struct Location {
    uint64_t live_count;
    uint64_t live_bytes;
    uint64_t saved_count;
    uint64_t saved_bytes;
    uint64_t saved_epoch;
    uint32_t node;
    uint32_t thread;
    Allocator allocator;
};
// mmap'd ranges, sorted by start: munmap may trim or split them.
struct MmapRange {
    uint64_t start;
    uint64_t end;
    uint32_t location;
};

// Cache-line aligned: the writer stores to it on every event, and the hooks read the globals
// linked next to it (g_hooks) on every call; a shared line bounced between the two CPUs (the
// writer's stores to it took a third of its --aggregate time on PYTHONMALLOC=malloc Python).
struct alignas(64) AggregateState {
    LiveSlot* live = nullptr;
    size_t live_capacity = 0;  // a power of two
    size_t live_count = 0;
    size_t freed_count = 0;  // tombstones
    IndexSlot* index = nullptr;
    size_t index_capacity = 0;
    Location* locations = nullptr;
    size_t location_capacity = 0;
    size_t location_count = 0;
    MmapRange* mmaps = nullptr;
    size_t mmap_capacity = 0;
    size_t mmap_count = 0;

    uint64_t heap = 0;
    uint64_t peak = 0;
    uint64_t peak_time_us = 0;
    uint64_t epoch = 0;  // number of the latest peak (0 = none yet); 64 bits never wrap
    uint64_t allocations = 0;
    uint64_t deallocations = 0;
    uint64_t total_bytes = 0;
    uint64_t last_time_us = 0;
    // The location of the previous allocation: a loop allocating from one place (the common
    // case) skips the index probe.
    uint64_t last_key = 0;
    uint32_t last_location = 0;
    bool ok = true;
};
constinit AggregateState g_agg;

constexpr size_t k_initial_slots = 1u << 12;
constexpr size_t k_prefetch_min_slots = 1u << 16;  // 1.5 MiB of live slots

template <class T>
T* map_array(size_t n) noexcept {
    void* p = mmap(nullptr, n * sizeof(T), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    return p == MAP_FAILED ? nullptr : static_cast<T*>(p);
}
template <class T>
void unmap_array(T*& p, size_t n) noexcept {
    if (p) munmap(p, n * sizeof(T));
    p = nullptr;
}

void out_of_memory() noexcept {
    if (!g_agg.ok) return;
    g_agg.ok = false;
    log(LogLevel::Error, "error: --aggregate: cannot grow its tables; the numbers of this capture "
                         "are incomplete from now on");
}

size_t slot_of(uint64_t key, size_t capacity) noexcept {
    // Fibonacci hashing: addresses are aligned, the multiply spreads their high bits.
    unsigned bits = unsigned(__builtin_ctzll(capacity));
    return size_t((key * 0x9e3779b97f4a7c15ull) >> (64 - bits));
}

// --- live allocations

// Puts e in the first empty slot of its probe chain in `table` (capacity slots, not full).
void place_live(LiveSlot* table, size_t capacity, const LiveSlot& e) noexcept {
    size_t j = slot_of(e.key, capacity);
    while (table[j].key != 0) j = (j + 1) & (capacity - 1);
    table[j] = e;
}

// Drops the tombstones where the table is: no new mapping, whose munmap later would interrupt
// the program's threads (a TLB shootdown on every CPU they run on). Each live entry, taken in
// order from an empty slot on, is inserted again: it lands at or before its old slot, since its
// probe chain has no empty slot before that.
void purge_live() noexcept {
    size_t mask = g_agg.live_capacity - 1;
    for (size_t i = 0; i <= mask; ++i) {
        if (g_agg.live[i].location == k_freed) g_agg.live[i].key = 0;
    }
    size_t start = 0;
    while (g_agg.live[start].key != 0) ++start;  // there is one: the table is at most half full
    for (size_t n = 1; n <= mask; ++n) {
        LiveSlot& here = g_agg.live[(start + n) & mask];
        if (here.key == 0) continue;
        LiveSlot e = here;
        here.key = 0;
        place_live(g_agg.live, g_agg.live_capacity, e);
    }
    g_agg.freed_count = 0;
}

// Without the tombstones: in place when they are more than half the load, else into a table
// twice as large (live blocks were then over a quarter of it: at most 8 slots per live block).
bool rebuild_live() noexcept {
    if (g_agg.live_count < g_agg.freed_count) {
        purge_live();
        return true;
    }
    size_t capacity = g_agg.live_capacity * 2;
    LiveSlot* fresh = map_array<LiveSlot>(capacity);
    if (!fresh) return false;
    for (size_t i = 0; i < g_agg.live_capacity; ++i) {
        const LiveSlot& s = g_agg.live[i];
        if (s.key != 0 && s.location != k_freed) place_live(fresh, capacity, s);
    }
    unmap_array(g_agg.live, g_agg.live_capacity);
    g_agg.live = fresh;
    g_agg.live_capacity = capacity;
    g_agg.freed_count = 0;
    return true;
}

LiveSlot* find_live(uint64_t key) noexcept {
    size_t mask = g_agg.live_capacity - 1;
    for (size_t i = slot_of(key, g_agg.live_capacity);; i = (i + 1) & mask) {
        LiveSlot& s = g_agg.live[i];
        if (s.key == key || s.key == 0) return &s;
    }
}

// Where an allocation at `key` goes: its own slot (live or a tombstone), else the first
// tombstone on its probe chain, else the empty slot that ends the chain.
LiveSlot* slot_for(uint64_t key) noexcept {
    size_t mask = g_agg.live_capacity - 1;
    LiveSlot* reuse = nullptr;
    for (size_t i = slot_of(key, g_agg.live_capacity);; i = (i + 1) & mask) {
        LiveSlot& s = g_agg.live[i];
        if (s.key == key) return &s;
        if (s.key == 0) return reuse ? reuse : &s;
        if (!reuse && s.location == k_freed) reuse = &s;
    }
}

// --- locations

uint64_t location_key(uint32_t node, uint32_t thread, Allocator allocator) noexcept {
    return uint64_t(thread) << 37 | uint64_t(uint8_t(allocator) & 31) << 32 | node;
}

bool grow_index() noexcept {
    size_t capacity = g_agg.index_capacity * 2;
    IndexSlot* fresh = map_array<IndexSlot>(capacity);
    if (!fresh) return false;
    for (size_t i = 0; i < g_agg.index_capacity; ++i) {
        const IndexSlot& s = g_agg.index[i];
        if (s.key == 0) continue;
        size_t j = slot_of(s.key, capacity);
        while (fresh[j].key != 0) j = (j + 1) & (capacity - 1);
        fresh[j] = s;
    }
    unmap_array(g_agg.index, g_agg.index_capacity);
    g_agg.index = fresh;
    g_agg.index_capacity = capacity;
    return true;
}

// The location's id, made at its first allocation; UINT32_MAX when the tables cannot grow.
uint32_t location_of(uint32_t node, uint32_t thread, Allocator allocator) noexcept {
    // The key packs the thread into 27 bits; a larger index would take another's key.
    if (thread >= (1u << 27)) thread = (1u << 27) - 1;
    uint64_t key = location_key(node, thread, allocator);
    if (key == g_agg.last_key) return g_agg.last_location;
    size_t mask = g_agg.index_capacity - 1;
    size_t i = slot_of(key, g_agg.index_capacity);
    for (; g_agg.index[i].key != 0; i = (i + 1) & mask) {
        if (g_agg.index[i].key == key) {
            g_agg.last_key = key;
            g_agg.last_location = g_agg.index[i].location;
            return g_agg.last_location;
        }
    }
    if ((g_agg.location_count + 1) * 2 > g_agg.index_capacity) {
        if (!grow_index()) {
            out_of_memory();
            return UINT32_MAX;
        }
        return location_of(node, thread, allocator);
    }
    if (g_agg.location_count == g_agg.location_capacity) {
        size_t capacity = g_agg.location_capacity * 2;
        void* p = mremap(g_agg.locations, g_agg.location_capacity * sizeof(Location),
                         capacity * sizeof(Location), MREMAP_MAYMOVE);
        if (p == MAP_FAILED) {
            out_of_memory();
            return UINT32_MAX;
        }
        g_agg.locations = static_cast<Location*>(p);
        g_agg.location_capacity = capacity;
    }
    uint32_t id = uint32_t(g_agg.location_count++);
    g_agg.locations[id] = Location{0, 0, 0, 0, 0, node, thread, allocator};
    g_agg.index[i] = IndexSlot{key, id};
    return id;
}

Location& location_for_update(uint32_t id) noexcept {
    Location& l = g_agg.locations[id];
    if (l.saved_epoch != g_agg.epoch) {  // first change since the latest peak: remember it
        l.saved_count = l.live_count;
        l.saved_bytes = l.live_bytes;
        l.saved_epoch = g_agg.epoch;
    }
    return l;
}

void acquire(uint32_t id, uint64_t bytes) noexcept {
    Location& l = location_for_update(id);
    l.live_count += 1;
    l.live_bytes += bytes;
    g_agg.heap += bytes;
}

void release(uint32_t id, uint64_t bytes, uint64_t count) noexcept {
    Location& l = location_for_update(id);
    l.live_count -= count;
    l.live_bytes -= bytes;
    g_agg.heap -= bytes;
}

void update_peak(uint64_t time_us) noexcept {
    // ">=": the latest of equal peaks counts, as in the reports and memray.
    if (g_agg.heap >= g_agg.peak) {
        g_agg.peak = g_agg.heap;
        g_agg.peak_time_us = time_us;
        ++g_agg.epoch;
    }
}

// --- mmap ranges

size_t first_range_after(uint64_t address) noexcept {  // first with start > address
    size_t lo = 0, hi = g_agg.mmap_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g_agg.mmaps[mid].start <= address) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

bool insert_range(size_t at, const MmapRange& r) noexcept {
    if (g_agg.mmap_count == g_agg.mmap_capacity) {
        size_t capacity = g_agg.mmap_capacity * 2;
        void* p = mremap(g_agg.mmaps, g_agg.mmap_capacity * sizeof(MmapRange),
                         capacity * sizeof(MmapRange), MREMAP_MAYMOVE);
        if (p == MAP_FAILED) {
            out_of_memory();
            return false;
        }
        g_agg.mmaps = static_cast<MmapRange*>(p);
        g_agg.mmap_capacity = capacity;
    }
    std::memmove(&g_agg.mmaps[at + 1], &g_agg.mmaps[at],
                 (g_agg.mmap_count - at) * sizeof(MmapRange));
    g_agg.mmaps[at] = r;
    ++g_agg.mmap_count;
    return true;
}

void erase_range(size_t at) noexcept {
    std::memmove(&g_agg.mmaps[at], &g_agg.mmaps[at + 1],
                 (g_agg.mmap_count - at - 1) * sizeof(MmapRange));
    --g_agg.mmap_count;
}

void on_munmap(uint64_t address, uint64_t size) noexcept {
    if (size == 0 || g_agg.mmap_count == 0) return;
    uint64_t end = address + size;
    size_t i = first_range_after(address);
    if (i != 0) --i;
    while (i < g_agg.mmap_count && g_agg.mmaps[i].start < end) {
        MmapRange r = g_agg.mmaps[i];
        if (r.end <= address) {
            ++i;
            continue;
        }
        uint64_t cut_start = r.start > address ? r.start : address;
        uint64_t cut_end = r.end < end ? r.end : end;
        bool keep_left = r.start < cut_start;
        bool keep_right = cut_end < r.end;
        // Each remaining piece counts as one allocation (as the reports count them).
        erase_range(i);
        uint64_t pieces = 0;
        if (keep_left && insert_range(i, MmapRange{r.start, cut_start, r.location})) {
            ++i;
            ++pieces;
        }
        if (keep_right && insert_range(i, MmapRange{cut_end, r.end, r.location})) {
            ++i;
            ++pieces;
        }
        Location& l = location_for_update(r.location);
        l.live_bytes -= cut_end - cut_start;
        l.live_count = l.live_count + pieces - 1;
        g_agg.heap -= cut_end - cut_start;
    }
}

void on_mmap(uint32_t id, uint64_t address, uint64_t size) noexcept {
    if (size == 0) return;
    on_munmap(address, size);  // a mapping placed over live ones (MAP_FIXED) replaces them
    if (id == UINT32_MAX) return;
    if (!insert_range(first_range_after(address), MmapRange{address, address + size, id})) return;
    acquire(id, size);
}

}  // namespace

bool aggregate_start() noexcept {
    aggregate_release();
    g_agg.live = map_array<LiveSlot>(k_initial_slots);
    g_agg.index = map_array<IndexSlot>(k_initial_slots);
    g_agg.locations = map_array<Location>(k_initial_slots);
    g_agg.mmaps = map_array<MmapRange>(k_initial_slots);
    g_agg.live_capacity = g_agg.index_capacity = g_agg.location_capacity = g_agg.mmap_capacity =
        k_initial_slots;
    if (!g_agg.live || !g_agg.index || !g_agg.locations || !g_agg.mmaps) {
        aggregate_release();
        return false;
    }
    return true;
}

void aggregate_release() noexcept {
    unmap_array(g_agg.live, g_agg.live_capacity);
    unmap_array(g_agg.index, g_agg.index_capacity);
    unmap_array(g_agg.locations, g_agg.location_capacity);
    unmap_array(g_agg.mmaps, g_agg.mmap_capacity);
    reset_state(g_agg);
}

void aggregate_event(uint32_t thread, Allocator kind, uint64_t address, uint64_t size,
                     uint32_t node, uint64_t time_us, uint64_t ahead) noexcept {
    if (!g_agg.live) return;
    // Only a table beyond the caches gains from it (a small one pays the hash for nothing).
    if (ahead && g_agg.live_capacity >= k_prefetch_min_slots)
        __builtin_prefetch(&g_agg.live[slot_of(ahead + 1, g_agg.live_capacity)]);
    g_agg.last_time_us = time_us;
    switch (kind) {
        case Allocator::Free:
        case Allocator::PymallocFree: {
            ++g_agg.deallocations;
            LiveSlot* s = find_live(address + 1);
            if (s->key != 0 && s->location != k_freed) {
                release(s->location, s->size, 1);
                s->location = k_freed;
                --g_agg.live_count;
                ++g_agg.freed_count;
            }
            update_peak(time_us);
            return;
        }
        case Allocator::Munmap:
            ++g_agg.deallocations;
            on_munmap(address, size);
            update_peak(time_us);
            return;
        default: break;
    }
    ++g_agg.allocations;
    g_agg.total_bytes += size;
    uint32_t id = location_of(node, thread, kind);
    if (kind == Allocator::Mmap) {
        on_mmap(id, address, size);
        update_peak(time_us);
        return;
    }
    LiveSlot* s = slot_for(address + 1);
    if (s->key == address + 1) {
        if (s->location != k_freed) {
            // The address was handed out again without a free we saw: the old block is gone.
            release(s->location, s->size, 1);
            s->location = k_freed;  // a tombstone until taken below
            --g_agg.live_count;
            ++g_agg.freed_count;
        }
    } else if (s->key == 0 &&
               (g_agg.live_count + g_agg.freed_count + 1) * 2 > g_agg.live_capacity) {
        s = rebuild_live() ? slot_for(address + 1) : nullptr;
    }
    if (s && id != UINT32_MAX) {
        if (s->key != 0) --g_agg.freed_count;  // a tombstone: this address's or another's
        *s = LiveSlot{address + 1, size, id};
        ++g_agg.live_count;
        acquire(id, size);
    } else if (id != UINT32_MAX) {
        out_of_memory();
    }
    update_peak(time_us);
}

bool aggregate_ok() noexcept { return g_agg.ok; }
uint64_t aggregate_heap() noexcept { return g_agg.heap; }

format::CheckpointFields aggregate_totals() noexcept {
    format::CheckpointFields c;
    c.time_us = g_agg.last_time_us;
    c.allocations = g_agg.allocations;
    c.deallocations = g_agg.deallocations;
    c.total_bytes = g_agg.total_bytes;
    c.heap = g_agg.heap;
    c.peak_bytes = g_agg.peak;
    c.peak_time_us = g_agg.peak_time_us;
    return c;
}

void aggregate_for_each_location(void (*fn)(const AggregateLocationView&, void*),
                                 void* ctx) noexcept {
    for (size_t id = 0; id < g_agg.location_count; ++id) {
        const Location& l = g_agg.locations[id];
        AggregateLocationView v{l.node, l.thread, l.allocator, {}};
        bool saved = g_agg.epoch != 0 && l.saved_epoch == g_agg.epoch;
        v.amounts.peak_count = saved ? l.saved_count : l.live_count;
        v.amounts.peak_bytes = saved ? l.saved_bytes : l.live_bytes;
        v.amounts.end_count = l.live_count;
        v.amounts.end_bytes = l.live_bytes;
        if (v.amounts.peak_count | v.amounts.peak_bytes | v.amounts.end_count |
            v.amounts.end_bytes)
            fn(v, ctx);
    }
}

}  // namespace memray::payload
