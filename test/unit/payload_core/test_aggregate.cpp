// aggregate_writer against a plain model of the reports' rules (src/report/allocation_tracker.hpp):
// random streams of malloc/free/realloc-like reuse, mmap and partial munmap on several threads,
// nodes and allocators. The model copies its whole table at every peak (slow, obviously right);
// the writer's tables must give the same numbers per location, at the peak and at the end,
// after every prefix of the stream.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "payload/aggregate_writer.hpp"

using memray::format::AggregateAmounts;
using memray::format::Allocator;
using namespace memray::payload;

namespace {

using Key = std::tuple<uint32_t, uint32_t, uint8_t>;  // node, thread, allocator

struct Model {
    struct Amount {
        uint64_t count = 0, bytes = 0;
    };
    struct Range {
        uint64_t end;
        Key loc;
    };
    std::map<Key, Amount> live, at_peak;
    std::vector<Key> order;  // first allocation order
    std::map<uint64_t, std::pair<uint64_t, Key>> blocks;  // address -> size, location
    std::map<uint64_t, Range> maps;                       // start -> end, location
    uint64_t heap = 0, peak = 0, peak_time = 0, allocations = 0, deallocations = 0;

    void note(const Key& k) {
        if (!live.count(k)) {
            live[k] = {};
            order.push_back(k);
        }
    }
    void update_peak(uint64_t t) {
        if (heap >= peak) {
            peak = heap;
            peak_time = t;
            at_peak = live;
        }
    }
    void munmap(uint64_t address, uint64_t size) {
        uint64_t end = address + size;
        auto it = maps.upper_bound(address);
        if (it != maps.begin()) --it;
        while (it != maps.end() && it->first < end) {
            uint64_t start = it->first;
            Range r = it->second;
            if (r.end <= address) {
                ++it;
                continue;
            }
            uint64_t cs = std::max(start, address), ce = std::min(r.end, end);
            it = maps.erase(it);
            int pieces = 0;
            if (start < cs) maps[start] = {cs, r.loc}, ++pieces;
            if (ce < r.end) it = maps.insert({ce, {r.end, r.loc}}).first, ++it, ++pieces;
            live[r.loc].bytes -= ce - cs;
            live[r.loc].count = live[r.loc].count + uint64_t(pieces) - 1;
            heap -= ce - cs;
        }
    }
    void event(uint32_t thread, Allocator kind, uint64_t address, uint64_t size, uint32_t node,
               uint64_t t) {
        if (kind == Allocator::Free || kind == Allocator::PymallocFree) {
            ++deallocations;
            auto it = blocks.find(address);
            if (it != blocks.end()) {
                live[it->second.second].count -= 1;
                live[it->second.second].bytes -= it->second.first;
                heap -= it->second.first;
                blocks.erase(it);
            }
        } else if (kind == Allocator::Munmap) {
            ++deallocations;
            if (size) munmap(address, size);
        } else {
            ++allocations;
            Key k{node, thread, uint8_t(kind)};
            note(k);
            if (kind == Allocator::Mmap) {
                if (size) {
                    munmap(address, size);
                    maps[address] = {address + size, k};
                    live[k].count += 1;
                    live[k].bytes += size;
                    heap += size;
                }
            } else {
                auto it = blocks.find(address);
                if (it != blocks.end()) {  // reused without a free we saw
                    live[it->second.second].count -= 1;
                    live[it->second.second].bytes -= it->second.first;
                    heap -= it->second.first;
                }
                blocks[address] = {size, k};
                live[k].count += 1;
                live[k].bytes += size;
                heap += size;
            }
        }
        update_peak(t);
    }
};

struct Seen {
    Key key;
    AggregateAmounts a;
};

void collect(const AggregateLocationView& v, void* ctx) {
    static_cast<std::vector<Seen>*>(ctx)->push_back(
        {Key{v.node, v.thread, uint8_t(v.allocator)}, v.amounts});
}

void compare(const Model& m) {
    std::vector<Seen> seen;
    aggregate_for_each_location(collect, &seen);
    std::vector<Seen> want;
    for (const Key& k : m.order) {
        auto l = m.live.at(k);
        auto p = m.at_peak.count(k) ? m.at_peak.at(k) : Model::Amount{};
        if (l.count | l.bytes | p.count | p.bytes)
            want.push_back({k, {p.count, p.bytes, l.count, l.bytes}});
    }
    REQUIRE(seen.size() == want.size());
    for (size_t i = 0; i < seen.size(); ++i) {
        CHECK(seen[i].key == want[i].key);
        CHECK(seen[i].a.peak_count == want[i].a.peak_count);
        CHECK(seen[i].a.peak_bytes == want[i].a.peak_bytes);
        CHECK(seen[i].a.end_count == want[i].a.end_count);
        CHECK(seen[i].a.end_bytes == want[i].a.end_bytes);
    }
    auto t = aggregate_totals();
    CHECK(t.heap == m.heap);
    CHECK(t.peak_bytes == m.peak);
    CHECK(t.peak_time_us == m.peak_time);
    CHECK(t.allocations == m.allocations);
    CHECK(t.deallocations == m.deallocations);
    CHECK(aggregate_heap() == m.heap);
}

// One event to the model and to the writer's tables.
void feed(Model& m, uint32_t thread, Allocator k, uint64_t a, uint64_t size, uint32_t node,
          uint64_t t) {
    m.event(thread, k, a, size, node, t);
    aggregate_event(thread, k, a, size, node, t);
}

}  // namespace

TEST_CASE("aggregate tables equal a model that snapshots at every peak") {
    for (unsigned seed = 1; seed <= 20; ++seed) {
        CAPTURE(seed);
        REQUIRE(aggregate_start());
        Model m;
        std::mt19937_64 rng(seed);
        std::vector<uint64_t> addresses;  // some live, some freed: frees of unknown addresses too
        const Allocator kinds[] = {Allocator::Malloc, Allocator::Calloc, Allocator::Realloc,
                                   Allocator::PymallocMalloc};
        // Enough events to grow every table past its first size (4096 slots).
        int n = seed <= 2 ? 40000 : 3000;
        for (int i = 0; i < n; ++i) {
            uint64_t t = uint64_t(i);
            uint32_t thread = 1 + uint32_t(rng() % 3);
            uint32_t node = uint32_t(rng() % (seed <= 2 ? 5000 : 40));
            unsigned r = unsigned(rng() % 100);
            if (r < 45) {
                // Addresses from a small pool so that reuse without a free happens.
                uint64_t a = 0x10000 + 16 * (rng() % (seed <= 2 ? 20000 : 300));
                Allocator k = kinds[rng() % 4];
                uint64_t size = rng() % 5000;
                feed(m, thread, k, a, size, node, t);
                addresses.push_back(a);
            } else if (r < 85 && !addresses.empty()) {
                uint64_t a = addresses[rng() % addresses.size()];
                feed(m, thread, Allocator::Free, a, 0, 0, t);
            } else if (r < 93) {
                uint64_t a = 0x7f0000000000 + 4096 * (rng() % 64);
                uint64_t size = 4096 * (rng() % 8);
                feed(m, thread, Allocator::Mmap, a, size, node, t);
            } else {
                uint64_t a = 0x7f0000000000 + 4096 * (rng() % 64);
                uint64_t size = 4096 * (rng() % 6);
                feed(m, thread, Allocator::Munmap, a, size, 0, t);
            }
            if (i % 997 == 0) compare(m);
        }
        compare(m);
        CHECK(aggregate_ok());
        aggregate_release();
    }
}

TEST_CASE("a free followed at once by an allocation at the same address equals the model") {
    // A freed slot stays as a tombstone that the very next event may take again: every kind of
    // next event must still give the model's numbers.
    for (unsigned seed = 1; seed <= 10; ++seed) {
        CAPTURE(seed);
        REQUIRE(aggregate_start());
        Model m;
        std::mt19937_64 rng(seed);
        std::vector<uint64_t> live;
        const Allocator kinds[] = {Allocator::Malloc, Allocator::Calloc, Allocator::Realloc,
                                   Allocator::PymallocMalloc, Allocator::Mmap};
        uint64_t t = 0;
        auto ev = [&](uint32_t thread, Allocator k, uint64_t a, uint64_t size, uint32_t node) {
            feed(m, thread, k, a, size, node, t);
            ++t;
        };
        for (int i = 0; i < 6000; ++i) {
            uint32_t thread = 1 + uint32_t(rng() % 2);
            uint32_t node = 1 + uint32_t(rng() % 30);
            if (live.empty() || rng() % 3 == 0) {
                uint64_t a = 0x20000 + 16 * (rng() % 500);
                ev(thread, Allocator::Malloc, a, rng() % 3000, node);
                live.push_back(a);
                continue;
            }
            size_t k = size_t(rng() % live.size());
            uint64_t a = live[k];
            ev(thread, rng() % 2 ? Allocator::Free : Allocator::PymallocFree, a, 0, 0);
            switch (rng() % 6) {
                case 0:
                case 1:  // the same address again, of any allocating kind
                    ev(thread, kinds[rng() % 4], a, rng() % 3000, node);
                    break;
                case 2:  // freed twice
                    ev(thread, Allocator::Free, a, 0, 0);
                    live.erase(live.begin() + long(k));
                    break;
                case 3: {  // a mapping or an unmapping comes next
                    bool map = rng() % 2;
                    ev(thread, map ? Allocator::Mmap : Allocator::Munmap,
                       0x7f0000000000 + 4096 * (rng() % 16), 4096 * (1 + rng() % 3),
                       map ? node : 0);
                    live.erase(live.begin() + long(k));
                    break;
                }
                default:  // another address
                    live.erase(live.begin() + long(k));
                    break;
            }
            if (i % 499 == 0) compare(m);
        }
        compare(m);
        CHECK(aggregate_ok());
        aggregate_release();
    }
}

TEST_CASE("tombstones of addresses never used again are dropped, live blocks kept") {
    // Every allocation at a new address, about 1000 alive at a time, so that the frees' tombstones
    // fill the table: rebuilds at the same size (more tombstones than live blocks) and larger
    // ones (the live set grows for a while) must keep every live block and its location.
    REQUIRE(aggregate_start());
    Model m;
    std::mt19937_64 rng(7);
    std::vector<uint64_t> live;
    uint64_t next = 0x100000;
    for (int i = 0; i < 60000; ++i) {
        uint64_t t = uint64_t(i);
        size_t target = i < 30000 ? 1000 : 6000;
        if (live.size() < target || rng() % 2) {
            feed(m, 1, Allocator::Malloc, next, 1 + rng() % 100, 1 + uint32_t(rng() % 7), t);
            live.push_back(next);
            next += 32;
        } else {
            size_t k = size_t(rng() % live.size());
            feed(m, 1, Allocator::Free, live[k], 0, 0, t);
            live[k] = live.back();
            live.pop_back();
        }
        if (i % 4999 == 0) compare(m);
    }
    for (uint64_t a : live) feed(m, 1, Allocator::Free, a, 0, 0, 60000);
    compare(m);
    CHECK(aggregate_ok());
    aggregate_release();
}
