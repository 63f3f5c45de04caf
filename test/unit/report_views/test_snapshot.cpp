#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "capture_builder.hpp"
#include "format/reader.hpp"
#include "report/snapshot.hpp"

using namespace memray;
using format::Allocator;
using memray::testing::CaptureBuilder;
using report::SnapshotKind;

namespace {

std::string temp_path(const char* name) {
    return std::string(P_tmpdir) + "/memray-views-test-" + std::to_string(getpid()) + "-" + name;
}

format::HeaderFields header() {
    format::HeaderFields h;
    h.pid = 77;
    h.start_time_unix_ms = 1700000000000ull;
    h.command_line = "python3 views.py";
    h.python_version = "3.11.7";
    h.executable = "/usr/bin/python3";
    return h;
}

using Key = std::tuple<uint32_t, uint32_t, Allocator>;  // node, thread, allocator
using Amounts = std::map<Key, std::pair<uint64_t, uint64_t>>;  // -> (count, bytes)

Amounts amounts(const report::Snapshot& s) {
    Amounts out;
    for (const auto& l : s.locations) {
        auto [it, fresh] = out.emplace(Key{l.node, l.thread, l.allocator},
                                       std::make_pair(l.count, l.bytes));
        CHECK_MESSAGE(fresh, "a location appears twice");
    }
    return out;
}

report::Snapshot snapshot_of(const std::string& path, report::SnapshotOptions o = {}) {
    format::Reader r(path);
    return report::build_snapshot(r, o);
}

void write_codes_and_nodes(CaptureBuilder& b) {
    b.thread_info(1, 1000, "MainThread");
    b.thread_info(2, 1001, "worker");
    b.code(1, "main", "/app/views.py", 1);
    b.code(2, "f", "/app/views.py", 10);
    b.code(3, "g", "/app/views.py", 20);
    b.python_node(1, 0, 1);
    b.python_node(2, 1, 2);
    b.python_node(3, 1, 3);
}

}  // namespace

TEST_CASE("high-water mark and leaks, per node, thread and allocator") {
    std::string path = temp_path("hwm.bin");
    {
        CaptureBuilder b(path, header());
        write_codes_and_nodes(b);
        b.time(1000);
        b.thread(1);
        b.alloc(Allocator::Malloc, 0xa0, 100, 2);
        b.alloc(Allocator::Calloc, 0xb0, 200, 2);
        b.thread(2);
        b.alloc(Allocator::Malloc, 0xc0, 300, 2);  // heap 600: first peak
        b.dealloc(Allocator::Free, 0xc0);
        b.time(2000);
        b.thread(1);
        b.alloc(Allocator::Malloc, 0xd0, 300, 3);  // heap 600 again: the latest peak counts
        b.time(3000);
        b.dealloc(Allocator::Free, 0xa0);
        b.dealloc(Allocator::Free, 0xd0);
        b.alloc(Allocator::Malloc, 0xe0, 50, 3);
        b.finish(4000);
    }
    report::Snapshot hwm = snapshot_of(path);
    CHECK(hwm.kind == SnapshotKind::HighWaterMark);
    CHECK(hwm.peak_bytes == 600);
    CHECK(hwm.peak_time_us == 2000);
    CHECK(hwm.total_allocations == 5);
    CHECK(hwm.total_bytes == 950);
    CHECK(hwm.duration_us == 4000);
    Amounts expected_hwm = {{{2, 1, Allocator::Malloc}, {1, 100}},
                            {{2, 1, Allocator::Calloc}, {1, 200}},
                            {{3, 1, Allocator::Malloc}, {1, 300}}};
    CHECK(amounts(hwm) == expected_hwm);
    REQUIRE(hwm.threads.size() == 3);
    CHECK(hwm.threads[1].tid == 1000);
    CHECK(hwm.threads[1].name == "MainThread");
    CHECK(hwm.threads[2].name == "worker");

    report::SnapshotOptions o;
    o.kind = SnapshotKind::Leaks;
    report::Snapshot leaks = snapshot_of(path, o);
    Amounts expected_leaks = {{{2, 1, Allocator::Calloc}, {1, 200}},
                              {{3, 1, Allocator::Malloc}, {1, 50}}};
    CHECK(amounts(leaks) == expected_leaks);
    CHECK(leaks.intervals.empty());
    std::remove(path.c_str());
}

TEST_CASE("temporary allocations: at most N other allocations on the same thread") {
    std::string path = temp_path("temp.bin");
    {
        CaptureBuilder b(path, header());
        write_codes_and_nodes(b);
        b.code(4, "h", "/app/views.py", 30);
        b.python_node(4, 1, 4);
        b.time(1000);
        b.thread(1);
        b.alloc(Allocator::Malloc, 0x10, 10, 1);  // freed at once: temporary for every N
        b.dealloc(Allocator::Free, 0x10);
        b.alloc(Allocator::Malloc, 0x20, 20, 2);  // one allocation in between: N >= 1
        b.thread(2);
        b.alloc(Allocator::Malloc, 0x900, 1, 1);  // other threads do not count
        b.alloc(Allocator::Malloc, 0x910, 1, 1);
        b.thread(1);
        b.alloc(Allocator::Malloc, 0x30, 30, 1);
        b.dealloc(Allocator::Free, 0x20);
        b.alloc(Allocator::Malloc, 0x40, 40, 3);  // two in between (0x30 is still in the ring)
        b.alloc(Allocator::Malloc, 0x50, 50, 1);
        b.alloc(Allocator::Malloc, 0x60, 60, 1);
        b.dealloc(Allocator::Free, 0x40);
        b.alloc(Allocator::Malloc, 0x70, 70, 4);  // freed by another thread: not temporary
        b.thread(2);
        b.dealloc(Allocator::Free, 0x70);
        b.finish(2000);
    }
    auto temporary = [&](uint64_t n) {
        report::SnapshotOptions o;
        o.kind = SnapshotKind::Temporary;
        o.temporary_threshold = n;
        return amounts(snapshot_of(path, o));
    };
    Amounts t0 = {{{1, 1, Allocator::Malloc}, {1, 10}}};
    CHECK(temporary(0) == t0);
    Amounts t1 = {{{1, 1, Allocator::Malloc}, {1, 10}}, {{2, 1, Allocator::Malloc}, {1, 20}}};
    CHECK(temporary(1) == t1);
    Amounts t2 = t1;
    t2[{3, 1, Allocator::Malloc}] = {1, 40};
    CHECK(temporary(2) == t2);
    CHECK(temporary(100) == t2);
    std::remove(path.c_str());
}

TEST_CASE("temporal: allocations by the memory-sample intervals they were made and freed in") {
    std::string path = temp_path("temporal.bin");
    {
        CaptureBuilder b(path, header());
        write_codes_and_nodes(b);
        b.time(1000);
        b.thread(1);
        b.alloc(Allocator::Malloc, 0x100, 1000, 2);  // P: interval 0 (before the first sample)
        b.sample(10000, 5000000);
        b.time(12000);
        b.alloc(Allocator::Malloc, 0x200, 2000, 3);  // Q: interval 0
        b.sample(20000, 6000000);
        b.time(21000);
        b.dealloc(Allocator::Free, 0x100);            // P freed in 1
        b.alloc(Allocator::Malloc, 0x300, 4000, 2);  // R: born and freed in 1: never shown
        b.dealloc(Allocator::Free, 0x300);
        b.sample(30000, 7000000);
        b.time(31000);
        b.dealloc(Allocator::Free, 0x200);           // Q freed in 2
        b.alloc(Allocator::Malloc, 0x400, 8000, 2);  // S: born in 2, alive at the end
        b.finish(40000);
    }
    report::SnapshotOptions o;
    o.temporal = true;
    o.kind = SnapshotKind::Leaks;
    report::Snapshot s = snapshot_of(path, o);
    REQUIRE(s.memory.size() == 3);
    CHECK(s.memory[0].time_us == 10000);
    CHECK(s.memory[0].rss == 5000000);
    CHECK(s.memory[0].heap == 1000);
    CHECK(s.memory[1].heap == 3000);
    CHECK(s.memory[2].heap == 2000);
    CHECK(s.memory[2].rss == 7000000);

    // (node, allocated_in, freed_in) -> bytes
    std::map<std::tuple<uint32_t, uint32_t, uint32_t>, uint64_t> got;
    for (const auto& i : s.intervals) {
        REQUIRE(i.location < s.locations.size());
        got[{s.locations[i.location].node, i.allocated_in, i.freed_in}] += i.bytes;
        CHECK(i.count == 1);
    }
    const uint32_t never = report::IntervalAmount::k_never;
    std::map<std::tuple<uint32_t, uint32_t, uint32_t>, uint64_t> expected = {
        {{2, 0, 1}, 1000}, {{3, 0, 2}, 2000}, {{2, 2, never}, 8000}};
    CHECK(got == expected);
    // Locations: the leak S, plus every location named by an interval (P's and S's share one).
    Amounts expected_locations = {{{2, 1, Allocator::Malloc}, {1, 8000}},
                                  {{3, 1, Allocator::Malloc}, {0, 0}}};
    CHECK(amounts(s) == expected_locations);
    std::remove(path.c_str());
}

TEST_CASE("temporal high-water mark: each interval's shares at its highest heap") {
    std::string path = temp_path("temporal-hwm.bin");
    {
        CaptureBuilder b(path, header());
        write_codes_and_nodes(b);
        b.time(1000);
        b.thread(1);
        b.alloc(Allocator::Malloc, 0x100, 1000, 2);  // A, heap 1000 (interval 0)
        b.sample(10000, 5000000);                    // the first sample starts no interval
        b.time(11000);
        b.alloc(Allocator::Malloc, 0x200, 5000, 3);  // B, heap 6000: interval 0's peak
        b.dealloc(Allocator::Free, 0x200);           // heap 1000
        b.sample(20000, 6000000);                    // interval 1 starts at 1000
        b.time(21000);
        b.alloc(Allocator::Malloc, 0x300, 2000, 3);  // C, heap 3000
        b.dealloc(Allocator::Free, 0x100);           // A freed, heap 2000
        b.alloc(Allocator::Malloc, 0x400, 3000, 2);  // D, heap 5000: interval 1's peak
        b.dealloc(Allocator::Free, 0x400);           // heap 2000
        b.sample(30000, 7000000);                    // interval 2 starts at 2000: its peak
        b.time(31000);
        b.dealloc(Allocator::Free, 0x300);           // heap 0
        b.alloc(Allocator::Malloc, 0x500, 500, 2);   // E, heap 500, alive at the end
        b.finish(40000);
    }
    report::SnapshotOptions o;
    o.temporal = true;
    report::Snapshot s = snapshot_of(path, o);
    CHECK(s.kind == SnapshotKind::HighWaterMark);
    REQUIRE(s.memory.size() == 3);
    CHECK(s.interval_peaks == std::vector<uint64_t>{6000, 5000, 2000});
    // (node, first, end) -> bytes
    std::map<std::tuple<uint32_t, uint32_t, uint32_t>, uint64_t> got;
    for (const auto& i : s.intervals) {
        REQUIRE(i.location < s.locations.size());
        got[{s.locations[i.location].node, i.allocated_in, i.freed_in}] += i.bytes;
        CHECK(i.count == 1);
    }
    const uint32_t never = report::IntervalAmount::k_never;
    std::map<std::tuple<uint32_t, uint32_t, uint32_t>, uint64_t> expected = {
        {{2, 0, 1}, 1000}, {{2, 1, 2}, 3000}, {{3, 0, 1}, 5000}, {{3, 1, never}, 2000}};
    CHECK(got == expected);
    // The whole capture's high-water mark is interval 0's: the default view's amounts.
    CHECK(s.peak_bytes == 6000);
    std::remove(path.c_str());
}

TEST_CASE("memory points are merged evenly down to max_memory_records, keeping the highest") {
    std::string path = temp_path("downsample.bin");
    {
        CaptureBuilder b(path, header());
        write_codes_and_nodes(b);
        b.thread(1);
        for (uint64_t j = 0; j < 100; ++j) {
            b.time(j * 10000 + 1);
            if (j == 5) b.alloc(Allocator::Malloc, 0x100, 777, 2);
            if (j == 50) b.dealloc(Allocator::Free, 0x100);
            b.sample(j * 10000 + 5000, j == 37 ? 99999999 : 1000000 + j);
        }
        b.finish(1000000);
    }
    report::SnapshotOptions o;
    o.temporal = true;
    o.kind = SnapshotKind::Leaks;
    o.max_memory_records = 10;
    report::Snapshot s = snapshot_of(path, o);
    // 100 samples at most 10 to a point: groups of 16 (powers of two), 7 points.
    REQUIRE(s.memory.size() == 7);
    CHECK(s.memory[0].time_us == 5000);
    CHECK(s.memory[1].time_us == 16 * 10000 + 5000);
    CHECK(s.memory[2].rss == 99999999);  // sample 37 is in group 2 (32..47)
    CHECK(s.memory[6].rss == 1000099);
    CHECK(s.memory[0].heap == 777);  // alive from sample 5
    CHECK(s.memory[3].heap == 777);  // group 48..63: freed after sample 49, so seen at 48, 49
    CHECK(s.memory[4].heap == 0);
    REQUIRE(s.intervals.size() == 1);
    // Allocated after sample 4 (interval 4 -> 0), freed after sample 49 (interval 49 -> 3).
    CHECK(s.intervals[0].allocated_in == 0);
    CHECK(s.intervals[0].freed_in == 3);
    CHECK(s.intervals[0].bytes == 777);

    // The high-water-mark view merges its intervals the same way: the block is part of the
    // highest heap of points 0 to 3 (the free comes after sample 49, in point 3).
    o.kind = SnapshotKind::HighWaterMark;
    report::Snapshot h = snapshot_of(path, o);
    CHECK(h.interval_peaks == std::vector<uint64_t>{777, 777, 777, 777, 0, 0, 0});
    REQUIRE(h.intervals.size() == 1);
    CHECK(h.intervals[0].allocated_in == 0);
    CHECK(h.intervals[0].freed_in == 4);
    CHECK(h.intervals[0].bytes == 777);
    std::remove(path.c_str());
}

namespace {

// An independent, slow model of the three views: maps keyed by address, a second pass for the
// high-water mark, deques for the temporary rings.
struct Model {
    struct Ev {
        bool alloc;
        Allocator kind;
        uint32_t thread;
        uint64_t address, size;
        uint32_t node;
    };
    std::vector<Ev> events;
    std::vector<size_t> samples;  // events before each memory sample
    uint64_t threshold = 3;

    // Live amounts after each of `positions` (ascending numbers of events).
    std::vector<Amounts> live_at(const std::vector<size_t>& positions) const {
        std::unordered_map<uint64_t, std::pair<Key, uint64_t>> live;
        std::vector<Amounts> out;
        size_t i = 0;
        for (size_t n : positions) {
            for (; i < n; ++i) {
                const Ev& e = events[i];
                if (e.alloc) live[e.address] = {Key{e.node, e.thread, e.kind}, e.size};
                else live.erase(e.address);
            }
            Amounts a;
            for (const auto& [addr, v] : live) {
                a[v.first].first += 1;
                a[v.first].second += v.second;
            }
            out.push_back(std::move(a));
        }
        return out;
    }
    // The heap after each number of events (0 to all).
    std::vector<uint64_t> heaps() const {
        std::unordered_map<uint64_t, uint64_t> live;
        std::vector<uint64_t> out(1, 0);
        uint64_t heap = 0;
        for (const Ev& e : events) {
            auto it = live.find(e.address);
            if (it != live.end()) {
                heap -= it->second;
                live.erase(it);
            }
            if (e.alloc) {
                live[e.address] = e.size;
                heap += e.size;
            }
            out.push_back(heap);
        }
        return out;
    }
    // Temporal high-water mark with 2^shift samples per interval: where each interval's
    // highest heap is (the latest on ties; an interval runs from the state its first sample
    // saw, or the start, to the state the next interval's first sample sees, or the end).
    std::vector<size_t> interval_peaks(unsigned shift, size_t n_intervals) const {
        std::vector<uint64_t> h = heaps();
        std::vector<size_t> at;
        for (size_t p = 0; p < n_intervals; ++p) {
            size_t from = p == 0 ? 0 : samples[p << shift];
            size_t to = ((p + 1) << shift) < samples.size() ? samples[(p + 1) << shift]
                                                            : events.size();
            size_t best = from;
            for (size_t i = from; i <= to; ++i)
                if (h[i] >= h[best]) best = i;
            at.push_back(best);
        }
        return at;
    }

    Amounts live_after(size_t n) const {
        std::unordered_map<uint64_t, std::pair<Key, uint64_t>> live;
        for (size_t i = 0; i < n; ++i) {
            const Ev& e = events[i];
            if (e.alloc) live[e.address] = {Key{e.node, e.thread, e.kind}, e.size};
            else live.erase(e.address);
        }
        Amounts out;
        for (const auto& [addr, v] : live) {
            out[v.first].first += 1;
            out[v.first].second += v.second;
        }
        return out;
    }
    size_t last_peak() const {
        std::unordered_map<uint64_t, uint64_t> live;
        uint64_t heap = 0, peak = 0;
        size_t at = 0;
        for (size_t i = 0; i < events.size(); ++i) {
            const Ev& e = events[i];
            auto it = live.find(e.address);
            if (it != live.end()) {
                heap -= it->second;
                live.erase(it);
            }
            if (e.alloc) {
                live[e.address] = e.size;
                heap += e.size;
            }
            if (heap >= peak) {
                peak = heap;
                at = i + 1;
            }
        }
        return at;
    }
    Amounts temporary() const {
        struct R {
            uint64_t address, size;
            Key key;
        };
        std::map<uint32_t, std::deque<R>> rings;
        Amounts out;
        for (const Ev& e : events) {
            auto& ring = rings[e.thread];
            if (e.alloc) {
                ring.push_back({e.address, e.size, Key{e.node, e.thread, e.kind}});
                if (ring.size() > threshold + 1) ring.pop_front();
                continue;
            }
            for (auto it = ring.rbegin(); it != ring.rend(); ++it) {
                if (it->address != e.address) continue;
                out[it->key].first += 1;
                out[it->key].second += it->size;
                ring.erase(std::next(it).base());
                break;
            }
        }
        return out;
    }
};

}  // namespace

TEST_CASE("views match an independent model on a random capture, on one and two threads") {
    std::string path = temp_path("random.bin");
    Model m;
    {
        CaptureBuilder b(path, header());
        b.thread_info(1, 1000, "MainThread");
        b.thread_info(2, 1001, "a");
        b.thread_info(3, 1002, "b");
        b.code(1, "f", "/r.py", 1);
        for (uint32_t n = 1; n <= 300; ++n) b.python_node(n, n > 1 ? (n - 1) / 2 : 0, 1, n);
        uint64_t x = 0x9E3779B97F4A7C15ull;
        std::vector<uint64_t> live;
        uint32_t thread = 1;
        b.thread(1);
        for (uint64_t i = 0; i < 600000; ++i) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            if (i % 777 == 0) b.time(i);
            if (i % 5000 == 0) {
                b.sample(i, i * 10);
                m.samples.push_back(m.events.size());
            }
            if (i % 61 == 0) {
                thread = uint32_t(x % 3) + 1;
                b.thread(thread);
            }
            if (!live.empty() && x % 100 < 47) {
                // Mostly the youngest blocks (temporaries), sometimes any.
                size_t k = x % 7 ? live.size() - 1 - size_t(x >> 32) % std::min<size_t>(live.size(), 6)
                                 : size_t(x >> 32) % live.size();
                b.dealloc(Allocator::Free, live[k]);
                m.events.push_back({false, Allocator::Free, thread, live[k], 0, 0});
                live[k] = live.back();
                live.pop_back();
            } else {
                // A small address space: some addresses come back without a recorded free.
                uint64_t addr = 0x10000 + (x >> 20) % 200000 * 16;
                Allocator kinds[] = {Allocator::Malloc, Allocator::Calloc,
                                     Allocator::PymallocMalloc};
                Allocator kind = kinds[(x >> 8) % 3];
                uint64_t size = (x >> 40) % 5000 + 1;
                uint32_t node = uint32_t(x >> 50) % 300 + 1;
                b.alloc(kind, addr, size, node);
                m.events.push_back({true, kind, thread, addr, size, node});
                live.push_back(addr);
            }
        }
        b.finish(600000);
    }
    Amounts hwm = m.live_after(m.last_peak());
    Amounts leaks = m.live_after(m.events.size());
    Amounts temporary = m.temporary();
    REQUIRE(!temporary.empty());
    for (int threads : {1, 2}) {
        CAPTURE(threads);
        report::SnapshotOptions o;
        o.threads = threads;
        CHECK(amounts(snapshot_of(path, o)) == hwm);
        o.kind = SnapshotKind::Leaks;
        CHECK(amounts(snapshot_of(path, o)) == leaks);
        o.kind = SnapshotKind::Temporary;
        o.temporary_threshold = m.threshold;
        CHECK(amounts(snapshot_of(path, o)) == temporary);
        // --temporal: every block alive at the end is in an interval that never ends.
        o.kind = SnapshotKind::Leaks;
        o.temporal = true;
        report::Snapshot t = snapshot_of(path, o);
        Amounts never;
        for (const auto& i : t.intervals) {
            if (i.freed_in != report::IntervalAmount::k_never) continue;
            const auto& l = t.locations[i.location];
            never[{l.node, l.thread, l.allocator}].first += i.count;
            never[{l.node, l.thread, l.allocator}].second += i.bytes;
        }
        CHECK(never == leaks);
        CHECK(t.memory.size() == 120);

        // Temporal high-water mark: at every interval, the runs that cover it hold what was
        // alive at its highest heap; with all the samples, and merged (7 points: 32 samples
        // each, with merges on the way).
        o.kind = SnapshotKind::HighWaterMark;
        for (size_t max_points : {size_t(10000), size_t(7)}) {
            CAPTURE(max_points);
            o.max_memory_records = max_points;
            report::Snapshot p = snapshot_of(path, o);
            unsigned shift = max_points == 7 ? 5 : 0;
            REQUIRE(p.memory.size() == (119u >> shift) + 1);
            REQUIRE(p.interval_peaks.size() == p.memory.size());
            std::vector<size_t> at = m.interval_peaks(shift, p.memory.size());
            std::vector<Amounts> expected = m.live_at(at);
            std::vector<uint64_t> h = m.heaps();
            std::vector<Amounts> shown(p.memory.size());
            for (const auto& i : p.intervals) {
                const auto& l = p.locations[i.location];
                uint32_t end = i.freed_in == report::IntervalAmount::k_never
                                   ? uint32_t(p.memory.size())
                                   : i.freed_in;
                for (uint32_t k = i.allocated_in; k < end; ++k) {
                    shown[k][{l.node, l.thread, l.allocator}].first += i.count;
                    shown[k][{l.node, l.thread, l.allocator}].second += i.bytes;
                }
            }
            for (size_t k = 0; k < shown.size(); ++k) {
                CAPTURE(k);
                CHECK(p.interval_peaks[k] == h[at[k]]);
                CHECK(shown[k] == expected[k]);
            }
            // The whole capture's high-water mark is the highest interval's (latest on ties).
            size_t top = 0;
            for (size_t k = 0; k < shown.size(); ++k)
                if (p.interval_peaks[k] >= p.interval_peaks[top]) top = k;
            CHECK(shown[top] == hwm);
        }
        o.max_memory_records = 10000;
    }
    std::remove(path.c_str());
}

TEST_CASE("progress is reported up to the file size") {
    std::string path = temp_path("progress.bin");
    {
        CaptureBuilder b(path, header());
        write_codes_and_nodes(b);
        b.thread(1);
        for (uint64_t i = 0; i < 3000000; ++i) b.alloc(Allocator::Malloc, 0x1000 + (i % 1000) * 16, 8, 2);
        b.finish(10);
    }
    std::vector<std::pair<uint64_t, uint64_t>> calls;
    report::SnapshotOptions o;
    o.progress = [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); };
    format::Reader r(path);
    report::build_snapshot(r, o);
    REQUIRE(calls.size() >= 2);
    CHECK(calls.back().first == r.file_size());
    for (const auto& c : calls) CHECK(c.second == r.file_size());
    std::remove(path.c_str());
}
