#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "format/block.hpp"
#include "format/encoder.hpp"
#include "format/reader.hpp"

using namespace memray::format;

namespace {

// Builds a capture in memory the way the payload's writer does: header, then framed blocks.
class CaptureBuilder {
  public:
    explicit CaptureBuilder(Codec codec = Codec::Lz4) : m_codec(codec), m_raw(1 << 20) {
        std::vector<uint8_t> hdr(4096);
        ByteSink s(hdr.data(), hdr.size());
        HeaderFields h;
        h.flags = k_flag_native | (codec == Codec::Lz4 ? uint32_t(k_flag_compressed) : 0u);
        h.pid = 4242;
        h.start_time_unix_ms = 1700000000123;
        h.command_line = "python3 demo.py --x";
        h.python_version = "3.11.7";
        h.executable = "/usr/bin/python3.11";
        h.python_allocator = "pymalloc_debug";
        encode_file_header(s, h);
        REQUIRE(!s.overflow);
        m_file.assign(hdr.data(), hdr.data() + s.size());
        m_sink = ByteSink(m_raw.data(), m_raw.size());
    }
    ByteSink& sink() { return m_sink; }
    EncoderState& state() { return m_state; }
    void flush_block() {
        REQUIRE(!m_sink.overflow);
        std::vector<uint8_t> out(max_framed_size(m_sink.size()));
        size_t n = frame_block(m_raw.data(), m_sink.size(), m_codec, out.data(), out.size());
        REQUIRE(n > 0);
        m_file.insert(m_file.end(), out.data(), out.data() + n);
        m_sink.clear();
        m_state.reset();
    }
    std::string write(const std::string& name) {
        std::string path = std::string(P_tmpdir) + "/memray-test-" + std::to_string(getpid()) + "-" + name;
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(m_file.data()), std::streamsize(m_file.size()));
        return path;
    }
    std::vector<uint8_t>& bytes() { return m_file; }

  private:
    Codec m_codec;
    std::vector<uint8_t> m_raw;
    std::vector<uint8_t> m_file;
    ByteSink m_sink;
    EncoderState m_state;
};

std::string write_bytes(const std::vector<uint8_t>& b, const std::string& name) {
    std::string path = std::string(P_tmpdir) + "/memray-test-" + std::to_string(getpid()) + "-" + name;
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    return path;
}

// One of every record type, across two blocks.
void build_full(CaptureBuilder& b) {
    auto& s = b.sink();
    auto& st = b.state();
    encode_thread_info(s, 1, 1001, "MainThread");
    encode_thread_info(s, 2, 1002, "worker");
    const uint8_t table[] = {0x80, 0x01, 0x02};
    encode_code(s, 1, "make_report", "/tmp/demo.py", 10, 0x030b, table, sizeof table);
    encode_python_node(s, st, 1, 0, 1, 46);
    encode_native_node(s, st, 2, 1, 0x7f0000123456);
    encode_objects_reset(s, 1);
    Segment segs[2] = {{0, 0x1000}, {0x2000, 0x500}};
    const uint8_t bid[] = {0xde, 0xad, 0xbe, 0xef};
    encode_object(s, 0x555555554000, "/usr/bin/prog", bid, sizeof bid, segs, 2);
    encode_time(s, st, 5000);
    encode_thread_switch(s, st, 1);
    encode_allocation(s, st, Allocator::Malloc, 0x1000, 1048577, 2);
    encode_allocation(s, st, Allocator::Calloc, 0x800, 24, 1);
    encode_memory_sample(s, 5100, 123456789);
    b.flush_block();
    encode_time(s, st, 7500);
    encode_thread_switch(s, st, 2);
    encode_deallocation(s, st, Allocator::Free, 0x1000, 0);
    encode_allocation(s, st, Allocator::Mmap, 0x7f0000000000, 1 << 20, 2);
    encode_deallocation(s, st, Allocator::Munmap, 0x7f0000000000, 4096);
    TrailerFields t;
    t.end_time_us = 8000;
    t.allocations = 3;
    t.deallocations = 2;
    t.threads = 2;
    t.codes = 1;
    t.nodes = 2;
    encode_trailer(s, t);
    b.flush_block();
}

struct Collected {
    std::vector<Event> events;
    std::vector<MemorySample> samples;
};

Collected read_everything(Reader& r) {
    Collected c;
    for (;;) {
        auto item = r.next();
        if (item == Reader::Item::End) break;
        if (item == Reader::Item::Event) c.events.push_back(r.event());
        else c.samples.push_back(r.sample());
    }
    return c;
}

}  // namespace

TEST_CASE("round trip of every record type, compressed and raw") {
    for (Codec codec : {Codec::Lz4, Codec::Raw}) {
        CaptureBuilder b(codec);
        build_full(b);
        std::string path = b.write(codec == Codec::Lz4 ? "full-lz4" : "full-raw");
        Reader r(path);
        CHECK(r.header().pid == 4242);
        CHECK(r.header().start_time_unix_ms == 1700000000123);
        CHECK(r.header().command_line == "python3 demo.py --x");
        CHECK(r.header().python_version == "3.11.7");
        CHECK(r.header().executable == "/usr/bin/python3.11");
        CHECK(r.header().python_allocator == "pymalloc_debug");
        CHECK((r.header().flags & k_flag_native) != 0);
        auto c = read_everything(r);
        REQUIRE(c.events.size() == 5);
        CHECK(c.events[0].allocator == Allocator::Malloc);
        CHECK(c.events[0].address == 0x1000);
        CHECK(c.events[0].size == 1048577);
        CHECK(c.events[0].node == 2);
        CHECK(c.events[0].thread == 1);
        CHECK(c.events[0].time_us == 5000);
        CHECK(c.events[1].allocator == Allocator::Calloc);
        CHECK(c.events[1].address == 0x800);
        CHECK(c.events[1].node == 1);
        CHECK(c.events[2].allocator == Allocator::Free);
        CHECK(c.events[2].address == 0x1000);
        CHECK(c.events[2].thread == 2);
        CHECK(c.events[2].time_us == 7500);
        CHECK(c.events[3].allocator == Allocator::Mmap);
        CHECK(c.events[3].address == 0x7f0000000000);
        CHECK(c.events[4].allocator == Allocator::Munmap);
        CHECK(c.events[4].size == 4096);
        REQUIRE(c.samples.size() == 1);
        CHECK(c.samples[0].rss == 123456789);
        CHECK(c.samples[0].time_us == 5100);
        REQUIRE(r.threads().size() == 3);
        CHECK(r.threads()[1].name == "MainThread");
        CHECK(r.threads()[2].tid == 1002);
        REQUIRE(r.codes().size() == 2);
        CHECK(r.codes()[1].function == "make_report");
        CHECK(r.codes()[1].file == "/tmp/demo.py");
        CHECK(r.codes()[1].first_line == 10);
        CHECK(r.codes()[1].line_format == 0x030b);
        CHECK(r.codes()[1].line_table == std::string("\x80\x01\x02", 3));
        REQUIRE(r.nodes().size() == 3);
        CHECK(r.nodes()[1].kind == FrameKind::Python);
        CHECK(r.nodes()[1].code == 1);
        CHECK(r.nodes()[1].offset == 46);
        CHECK(r.nodes()[2].kind == FrameKind::Native);
        CHECK(r.nodes()[2].parent == 1);
        CHECK(r.nodes()[2].ip == 0x7f0000123456);
        REQUIRE(r.objects().size() == 1);
        CHECK(r.objects()[0].path == "/usr/bin/prog");
        CHECK(r.objects()[0].build_id == "\xde\xad\xbe\xef");
        CHECK(r.objects()[0].segments.size() == 2);
        CHECK(r.objects()[0].segments[1].first == 0x2000);
        REQUIRE(r.trailer().has_value());
        CHECK(r.trailer()->end_time_us == 8000);
        CHECK(r.trailer()->allocations == 3);
        CHECK(!r.truncated());
        std::remove(path.c_str());
    }
}

TEST_CASE("listener sees every record in order") {
    CaptureBuilder b;
    build_full(b);
    std::string path = b.write("listener");
    struct Log : RecordListener {
        std::string s;
        void on_block(uint64_t, Codec, uint32_t, uint32_t) override { s += "B"; }
        void on_time(uint64_t) override { s += "t"; }
        void on_thread_switch(uint32_t) override { s += "s"; }
        void on_thread_info(uint32_t, const ThreadInfo&) override { s += "T"; }
        void on_code(uint32_t, const CodeInfo&) override { s += "C"; }
        void on_node(uint32_t, const StackNode&) override { s += "N"; }
        void on_objects_reset(uint64_t) override { s += "R"; }
        void on_object(const ObjectInfo&) override { s += "O"; }
        void on_sample(const MemorySample&) override { s += "M"; }
        void on_event(const Event&) override { s += "e"; }
        void on_trailer(const Trailer&) override { s += "X"; }
    } log;
    Reader r(path);
    r.read_all(log);
    CHECK(log.s == "BTTCNNROtseeMBtseeeX");
    std::remove(path.c_str());
}

TEST_CASE("a capture cut anywhere reads up to its last complete block") {
    CaptureBuilder b;
    build_full(b);
    std::vector<uint8_t> full = b.bytes();
    // Find where the second block starts: the first block's events are complete there.
    Reader whole(b.write("whole"));
    read_everything(whole);
    size_t header_end = 0;
    {
        // header: 8 magic + 4 version + 4 len + body
        uint32_t body = full[12] | full[13] << 8 | full[14] << 16 | uint32_t(full[15]) << 24;
        header_end = 16 + body;
    }
    for (size_t cut = header_end; cut < full.size(); ++cut) {
        std::vector<uint8_t> part(full.begin(), full.begin() + long(cut));
        std::string path = write_bytes(part, "cut");
        Reader r(path);
        auto c = read_everything(r);
        CHECK(r.truncated());
        CHECK(!r.truncation_reason().empty());
        CHECK((c.events.size() == 0 || c.events.size() == 2));
        std::remove(path.c_str());
    }
}

TEST_CASE("headers that are not captures give clear errors") {
    std::string p1 = write_bytes({'h', 'e', 'l', 'l', 'o', '\n'}, "notcap");
    CHECK_THROWS_WITH_AS(Reader{p1}, doctest::Contains("is not a memray capture file"), FormatError);
    std::remove(p1.c_str());
    CHECK_THROWS_AS(Reader{"/nonexistent/memray.bin"}, FileError);

    CaptureBuilder b;
    build_full(b);
    auto bytes = b.bytes();
    // Older and newer versions: named as such, before the (still valid) rest is looked at.
    for (uint8_t version : {uint8_t(k_format_version - 1), uint8_t(99)}) {
        bytes[8] = version;
        std::string p2 = write_bytes(bytes, "badversion");
        std::string expected = p2 + ": unsupported capture version " + std::to_string(version) +
                               " (this memray reads " + std::to_string(k_format_version) + ")";
        CHECK_THROWS_WITH_AS(Reader{p2}, expected.c_str(), UnsupportedVersionError);
        try {
            Reader r{p2};
        } catch (const UnsupportedVersionError& e) {
            CHECK(e.version() == version);
        }
        // A file cut inside its header still names the version when it has one.
        bytes.resize(12);
        std::string p3 = write_bytes(bytes, "shortversion");
        CHECK_THROWS_AS(Reader{p3}, UnsupportedVersionError);
        bytes = b.bytes();
        std::remove(p2.c_str());
        std::remove(p3.c_str());
    }
}

TEST_CASE("any single corrupted byte gives a clean error or a clean read, never a crash") {
    for (Codec codec : {Codec::Lz4, Codec::Raw}) {
        CaptureBuilder b(codec);
        build_full(b);
        const std::vector<uint8_t> full = b.bytes();
        int errors = 0;
        for (size_t i = 0; i < full.size(); ++i) {
            for (uint8_t flip : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xff)}) {
                auto bytes = full;
                bytes[i] ^= flip;
                std::string path = write_bytes(bytes, "flip");
                try {
                    Reader r(path);
                    read_everything(r);
                } catch (const FormatError&) {
                    ++errors;
                }
                std::remove(path.c_str());
            }
        }
        // Block bytes are checksummed: flipping any of them must be noticed.
        CHECK(errors > 0);
    }
}

TEST_CASE("recent frees and allocations are short and read back the same through every path") {
    // Random allocations and frees over three blocks, as allocators make them: most frees of an
    // address allocated shortly before (RecentFree), many allocations at an address freed shortly
    // before (RecentMalloc), others long after (evicted from the tables), some of addresses from
    // an earlier block (the tables restart with the block), with every kind that has a short
    // form, the kinds that do not, munmaps, and thread switches of both forms.
    CaptureBuilder b(Codec::Raw);
    auto& s = b.sink();
    auto& st = b.state();
    encode_thread_info(s, 1, 1001, "MainThread");
    encode_native_node(s, st, 1, 0, 0x401000);
    encode_native_node(s, st, 2, 1, 0x401100);
    encode_thread_switch(s, st, 1);
    std::mt19937_64 rng(42);
    std::vector<Event> expected;
    std::vector<uint64_t> live, freed;
    size_t short_frees = 0, frees = 0, short_mallocs = 0, mallocs = 0;
    const Allocator alloc_kinds[] = {Allocator::Malloc, Allocator::PymallocMalloc,
                                     Allocator::Calloc, Allocator::Realloc, Allocator::Mmap};
    for (int i = 0; i < 30000; ++i) {
        if (i == 10000 || i == 20000) {
            b.flush_block();
            encode_thread_switch(s, st, 1);
        }
        Event e{};
        e.thread = rng() % 5 ? 1 : 63 + uint32_t(rng() % 3);  // short and long thread switches
        encode_thread_switch(s, st, e.thread);
        bool pymalloc = rng() % 3 == 0;
        if (live.empty() || rng() % 2 == 0) {
            if (!freed.empty() && rng() % 2 == 0) {
                e.address = freed[freed.size() - 1 - rng() % std::min<size_t>(freed.size(), 4)];
            } else {
                e.address = 0x10000 + (rng() % 4096) * 16;
            }
            e.size = 1 + rng() % 300;
            e.node = 1 + uint32_t(rng() % 2);
            e.allocator = rng() % 4 ? (pymalloc ? Allocator::PymallocMalloc : Allocator::Malloc)
                                    : alloc_kinds[rng() % std::size(alloc_kinds)];
            uint8_t* at = s.pos;
            encode_allocation(s, st, e.allocator, e.address, e.size, e.node);
            bool short_form = *at >= k_recent_malloc_tag && *at < 0xc0;
            CHECK((!short_form || e.allocator == Allocator::Malloc ||
                   e.allocator == Allocator::PymallocMalloc));
            if (e.allocator == Allocator::Malloc || e.allocator == Allocator::PymallocMalloc) {
                ++mallocs;
                short_mallocs += short_form;
            }
            live.push_back(e.address);
        } else {
            // Mostly one of the last few allocations, sometimes any live one.
            size_t recent = std::min<size_t>(live.size(), 8);
            size_t back = rng() % 4 ? rng() % recent : rng() % live.size();
            size_t at = live.size() - 1 - back;
            e.address = live[at];
            live.erase(live.begin() + long(at));
            e.allocator = rng() % 50 == 0 ? Allocator::Munmap
                                          : pymalloc ? Allocator::PymallocFree : Allocator::Free;
            if (e.allocator == Allocator::Munmap) e.size = 4096;
            size_t before = s.size();
            encode_deallocation(s, st, e.allocator, e.address, e.size);
            if (e.allocator != Allocator::Munmap) {
                ++frees;
                short_frees += s.size() - before == 1;
                freed.push_back(e.address);
            } else {
                CHECK(s.size() - before > 1);  // an munmap always carries its address and size
            }
        }
        expected.push_back(e);
    }
    b.flush_block();
    CHECK(short_frees > frees / 3);
    CHECK(short_frees < frees);
    CHECK(short_mallocs > mallocs / 5);
    CHECK(short_mallocs < mallocs);
    std::string path = b.write("recent");
    auto same = [&](const std::vector<Event>& got, const char* how) {
        INFO(how);
        REQUIRE(got.size() == expected.size());
        size_t wrong = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            const Event &g = got[i], &x = expected[i];
            wrong += g.allocator != x.allocator || g.address != x.address || g.size != x.size ||
                     g.node != x.node || g.thread != x.thread;
        }
        CHECK(wrong == 0);
    };
    {
        Reader r(path);
        same(read_everything(r).events, "next()");
    }
    {
        struct Events : RecordListener {
            std::vector<Event> events;
            void on_event(const Event& e) override { events.push_back(e); }
        } listener;
        Reader r(path);
        r.read_all(listener);
        same(listener.events, "a listener (the checked decoder)");
    }
    {
        Reader r(path);
        std::vector<Event> got;
        Event buf[64];
        for (;;) {
            size_t n = r.next_events(buf, 64);
            got.insert(got.end(), buf, buf + n);
            if (n) continue;
            auto item = r.next();
            if (item == Reader::Item::End) break;
            if (item == Reader::Item::Event) got.push_back(r.event());
        }
        same(got, "next_events()");
    }
    std::remove(path.c_str());
}

TEST_CASE("the writer's unchecked sink writes the same bytes as the checked one") {
    std::vector<uint8_t> a(1 << 16), u(1 << 16);
    ByteSink checked(a.data(), a.size());
    UncheckedSink unchecked{u.data()};
    EncoderState sa, su;
    std::mt19937_64 rng(7);
    const uint64_t edges[] = {0, 1, 127, 128, (uint64_t(1) << 56) - 1, uint64_t(1) << 56,
                              ~uint64_t(0)};
    for (int i = 0; i < 2000; ++i) {
        // Both forms of ThreadSwitch: one byte below k_short_thread_limit, a varint above.
        uint32_t thread = rng() % 4 ? 1 + uint32_t(rng() % 3) : 60 + uint32_t(rng() % 300);
        uint64_t time = uint64_t(i) * 700;
        uint64_t address =
            i % 50 == 0 ? edges[rng() % std::size(edges)] : 0x10000 + rng() % 64 * 16;
        uint64_t size = i % 40 == 0 ? edges[rng() % std::size(edges)] : rng() % 600;
        auto kind = Allocator(1 + rng() % k_allocator_max);
        encode_thread_switch(checked, sa, thread);
        encode_thread_switch(unchecked, su, thread);
        encode_time(checked, sa, time);
        encode_time(unchecked, su, time);
        if (is_deallocator(kind)) {
            encode_deallocation(checked, sa, kind, address, size);
            encode_deallocation(unchecked, su, kind, address, size);
        } else {
            uint32_t node = uint32_t(rng() % 5);
            encode_allocation(checked, sa, kind, address, size, node);
            encode_allocation(unchecked, su, kind, address, size, node);
        }
        REQUIRE(!checked.overflow);
    }
    size_t n = size_t(unchecked.pos - u.data());
    REQUIRE(n == checked.size());
    CHECK(std::memcmp(a.data(), u.data(), n) == 0);
}

TEST_CASE("varints round trip at their edges") {
    // Every bit length: 2^k - 1 and 2^k, so each size of the encoding meets its neighbours.
    std::vector<uint64_t> values{0, ~uint64_t(0)};
    for (unsigned k = 1; k < 64; ++k) {
        values.push_back((uint64_t(1) << k) - 1);
        values.push_back(uint64_t(1) << k);
    }
    for (uint64_t v : values) {
        unsigned bits = 64 - unsigned(__builtin_clzll(v | 1));
        CHECK(varint_size(v) == (bits > 56 ? 9u : (bits + 6) / 7));
        CaptureBuilder b(Codec::Raw);
        auto& s = b.sink();
        auto& st = b.state();
        encode_thread_switch(s, st, 1);
        encode_allocation(s, st, Allocator::Malloc, v, v, 1);
        encode_allocation(s, st, Allocator::Malloc, 0, 1, 1);
        b.flush_block();
        Reader r(b.write("varint"));
        auto c = read_everything(r);
        REQUIRE(c.events.size() == 2);
        CHECK(c.events[0].address == v);
        CHECK(c.events[0].size == v);
        CHECK(c.events[1].address == 0);
    }
}

namespace {

// An aggregated capture: checkpoint 1 (one location), then checkpoint 2 (two locations) across
// two blocks, then, when `complete`, the trailer.
void build_aggregated(CaptureBuilder& b, bool complete) {
    auto& s = b.sink();
    auto& st = b.state();
    encode_thread_info(s, 1, 1001, "MainThread");
    encode_native_node(s, st, 1, 0, 0x401000);
    encode_native_node(s, st, 2, 1, 0x401100);
    encode_heap_sample(s, 10000, 5000000, 4096);
    encode_aggregate_location(s, st, 2, 1, Allocator::Malloc, {1, 4096, 1, 4096});
    CheckpointFields c1;
    c1.time_us = 1000000;
    c1.allocations = 1;
    c1.total_bytes = c1.heap = c1.peak_bytes = 4096;
    c1.peak_time_us = 10000;
    c1.locations = 1;
    encode_checkpoint(s, c1);
    b.flush_block();
    encode_thread_info(s, 2, 1002, "worker");
    encode_heap_sample(s, 1500000, 6000000, 100);
    encode_aggregate_location(s, st, 2, 1, Allocator::Malloc, {1, 4096, 0, 0});
    b.flush_block();  // a checkpoint may span blocks
    encode_aggregate_location(s, st, 1, 2, Allocator::Mmap, {0, 0, 1, 100});
    CheckpointFields c2 = c1;
    c2.time_us = 2000000;
    c2.allocations = 2;
    c2.deallocations = 1;
    c2.total_bytes = 4196;
    c2.heap = 100;
    c2.locations = 2;
    encode_checkpoint(s, c2);
    if (complete) {
        TrailerFields t;
        t.end_time_us = 2000001;
        t.allocations = 2;
        t.deallocations = 1;
        encode_trailer(s, t);
    }
    b.flush_block();
}

}  // namespace

struct CountingListener : RecordListener {
    int locations = 0, checkpoints = 0, heap_samples = 0;
    void on_aggregate_location(const AggregateLocation&) override { ++locations; }
    void on_checkpoint(const CheckpointFields&) override { ++checkpoints; }
    void on_heap_sample(const HeapSample&) override { ++heap_samples; }
};

TEST_CASE("aggregated capture: the last complete checkpoint wins") {
    CaptureBuilder b;
    build_aggregated(b, true);
    Reader r(b.write("agg"));
    CHECK(r.aggregated() == false);  // the builder's header has no k_flag_aggregated
    CountingListener l;
    r.read_all(l);
    const Aggregate& a = r.aggregate();
    CHECK(a.checkpoints == 2);
    CHECK(a.totals.time_us == 2000000);
    CHECK(a.totals.heap == 100);
    REQUIRE(a.locations.size() == 2);
    CHECK(a.locations[0].node == 2);
    CHECK(a.locations[0].thread == 1);
    CHECK(a.locations[0].amounts.peak_bytes == 4096);
    CHECK(a.locations[0].amounts.end_count == 0);
    CHECK(a.locations[1].node == 1);
    CHECK(a.locations[1].allocator == Allocator::Mmap);
    CHECK(a.locations[1].amounts.end_bytes == 100);
    REQUIRE(a.samples.size() == 2);
    CHECK(a.samples[1].heap == 100);
    CHECK(l.locations == 3);
    CHECK(l.checkpoints == 2);
    CHECK(l.heap_samples == 2);
    CHECK_FALSE(r.truncated());
}

TEST_CASE("aggregated capture cut inside its second checkpoint reads as its first") {
    CaptureBuilder b;
    build_aggregated(b, false);
    std::vector<uint8_t> bytes = b.bytes();
    // Drop the last block (the rest of checkpoint 2): the first block of it stays, unfinished.
    for (size_t cut = bytes.size() - 1; cut > bytes.size() - 8; --cut) {
        std::vector<uint8_t> part(bytes.begin(), bytes.begin() + long(cut));
        Reader r(write_bytes(part, "aggcut"));
        while (r.next() != Reader::Item::End) {
        }
        CHECK(r.truncated());
        const Aggregate& a = r.aggregate();
        CHECK(a.checkpoints == 1);
        REQUIRE(a.locations.size() == 1);
        CHECK(a.locations[0].amounts.end_bytes == 4096);
        CHECK(a.totals.time_us == 1000000);
        CHECK(a.samples.size() == 1);
    }
}

TEST_CASE("a checkpoint that miscounts its locations is corrupt") {
    CaptureBuilder b;
    auto& s = b.sink();
    encode_aggregate_location(s, b.state(), 1, 1, Allocator::Malloc, {1, 1, 1, 1});
    CheckpointFields c;
    c.locations = 2;
    encode_checkpoint(s, c);
    b.flush_block();
    Reader r(b.write("aggbad"));
    CHECK_THROWS_AS(
        [&] {
            while (r.next() != Reader::Item::End) {
            }
        }(),
        FormatError);
}
