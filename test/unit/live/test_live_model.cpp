// The live stream's reading side: format::Reader's stream mode (a pipe), the LiveModel's rows
// (own/total, once per stack, one row per (function, file), threads, stacks lost in a gap, a
// table kept up by the fold against one counted at once, the duration), and StreamSource's header
// over a loopback socket from a fake target.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <tuple>
#include <thread>
#include <vector>

#include "capture_builder.hpp"
#include "format/live_protocol.hpp"
#include "format/reader.hpp"
#include "live/live_model.hpp"
#include "live/stream_source.hpp"

using memray::format::Allocator;
using memray::live::LiveModel;
using memray::live::Row;

namespace {

struct Scratch {
    std::string path;
    Scratch() {
        char tmpl[] = "/tmp/live-model-XXXXXX";
        int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        close(fd);
        path = tmpl;
    }
    ~Scratch() { std::remove(path.c_str()); }
};

// f (a.py:10) -> g (a.py:20) -> f again (a.py:11): a recursion; h (b.py:5) on thread 2.
void write_capture(const std::string& path, bool trailer = true) {
    memray::format::HeaderFields h;
    h.pid = 99;
    h.command_line = "python3 a.py";
    memray::testing::CaptureBuilder b(path, h);
    b.thread_info(1, 1001, "main");
    b.thread_info(2, 1002, "worker");
    b.code(1, "f", "a.py", 10);
    b.code(2, "g", "a.py", 20);
    b.code(3, "h", "b.py", 5);
    b.python_node(1, 0, 1);
    b.python_node(2, 1, 2);
    b.python_node(3, 2, 1);  // f again, inside g
    b.python_node(4, 0, 3);
    b.time(0);
    b.thread(1);
    b.alloc(Allocator::Malloc, 0x1000, 100, 1);  // f own
    b.alloc(Allocator::Malloc, 0x2000, 200, 2);  // g own, f total
    b.alloc(Allocator::Malloc, 0x3000, 400, 3);  // f own (inner), g total, f total once
    b.alloc(Allocator::Malloc, 0x4000, 800, 2);
    b.dealloc(Allocator::Free, 0x4000);          // freed: gone from every row
    b.thread(2);
    b.alloc(Allocator::Malloc, 0x5000, 1600, 4);
    b.dealloc(Allocator::Free, 0x1000);          // freed on another thread than its own
    b.alloc(Allocator::Malloc, 0x6000, 50, 77);  // a node lost in a dropped block
    b.sample(1000, 12345678);
    if (trailer) {
        b.finish(2000);
    } else {
        b.flush_block();  // a killed target: whole blocks, no trailer
        b.close();
    }
}

const Row* find(const std::vector<Row>& rows, const std::string& function) {
    for (const Row& r : rows)
        if (r.function == function) return &r;
    return nullptr;
}

void fold(memray::format::Reader& reader, LiveModel& model) {
    for (;;) {
        auto item = reader.next();
        if (item == memray::format::Reader::Item::End) return;
        if (item == memray::format::Reader::Item::Event) model.on_event(reader.event());
        else model.on_sample(reader.sample());
    }
}

}  // namespace

TEST_CASE("live model: own and total per location, once per stack, per thread") {
    Scratch s;
    write_capture(s.path);
    memray::format::Reader reader(s.path);
    LiveModel model;
    fold(reader, model);
    CHECK(model.heap() == 200 + 400 + 1600 + 50);
    CHECK(model.last_rss() == 12345678);
    REQUIRE(model.history().size() == 1);
    CHECK(model.history()[0].heap_bytes == model.heap());

    std::vector<Row> all = model.rows(reader, 0, false);
    const Row* f = find(all, "f");
    const Row* g = find(all, "g");
    const Row* h = find(all, "h");
    REQUIRE(f);
    REQUIRE(g);
    REQUIRE(h);
    // 0x1000 was freed; f's own is the inner f of node 3; its total counts node 2's and node 3's
    // allocations once each although f appears twice in node 3's stack.
    CHECK(f->own_bytes == 400);
    CHECK(f->own_allocations == 1);
    CHECK(f->total_bytes == 600);
    CHECK(f->total_allocations == 2);
    CHECK(g->own_bytes == 200);
    CHECK(g->total_bytes == 600);
    CHECK(h->own_bytes == 1600);
    CHECK(h->file == "b.py");
    // The gap: named, not guessed, not an error.
    const Row* unknown = find(all, "<stack unknown: blocks dropped>");
    REQUIRE(unknown);
    CHECK(unknown->own_bytes == 50);

    std::vector<Row> main_thread = model.rows(reader, 1, false);
    CHECK(find(main_thread, "h") == nullptr);
    REQUIRE(find(main_thread, "f"));
    CHECK(find(main_thread, "f")->total_bytes == 600);
    std::vector<Row> worker = model.rows(reader, 2, false);
    REQUIRE(find(worker, "h"));
    CHECK(find(worker, "f") == nullptr);

    // What the flame graph of "now" gets: the live locations with known stacks.
    memray::report::Snapshot snap = model.snapshot(reader);
    uint64_t bytes = 0;
    for (const auto& l : snap.locations) bytes += l.bytes;
    CHECK(bytes == 200 + 400 + 1600);
}

TEST_CASE("live model: one row per (function, file), whatever lines it allocates at") {
    // memray's live table groups by the innermost frame's function and file: f allocating at
    // two lines, and f:30 called from f:10, is one row "f" (the recursion counted once).
    Scratch s;
    {
        memray::format::HeaderFields h;
        h.pid = 7;
        memray::testing::CaptureBuilder b(s.path, h);
        b.thread_info(1, 1001, "main");
        b.code(1, "f", "a.py", 10);
        b.code(2, "f", "a.py", 30);
        b.code(3, "f", "other.py", 10);  // same name, another file: a row of its own
        b.python_node(1, 0, 1);          // f (a.py:10)
        b.python_node(2, 0, 2);          // f (a.py:30)
        b.python_node(3, 1, 2);          // f (a.py:10) -> f (a.py:30)
        b.python_node(4, 0, 3);
        b.time(0);
        b.thread(1);
        b.alloc(Allocator::Malloc, 0x1000, 100, 1);
        b.alloc(Allocator::Malloc, 0x2000, 200, 2);
        b.alloc(Allocator::Malloc, 0x3000, 400, 3);
        b.alloc(Allocator::Malloc, 0x4000, 800, 4);
        b.finish(1000);
    }
    memray::format::Reader reader(s.path);
    LiveModel model;
    fold(reader, model);
    for (bool hide : {false, true}) {
        std::vector<Row> rows = model.rows(reader, 0, hide);
        REQUIRE(rows.size() == 2);
        size_t fs = 0;
        for (const Row& r : rows) fs += r.function == "f" && r.file == "a.py";
        CHECK(fs == 1);
        const Row* f = nullptr;
        for (const Row& r : rows)
            if (r.file == "a.py") f = &r;
        REQUIRE(f);
        CHECK(f->own_bytes == 700);
        CHECK(f->own_allocations == 3);
        CHECK(f->total_bytes == 700);  // node 3 holds f twice: counted once
        CHECK(f->total_allocations == 3);
        CHECK(f->line == 10);  // the line of the first frame seen for the location
        const Row* other = nullptr;
        for (const Row& r : rows)
            if (r.file == "other.py") other = &r;
        REQUIRE(other);
        CHECK(other->own_bytes == 800);
    }
}

TEST_CASE("live model: a table kept up by the fold equals one counted at once") {
    // Random allocations, frees (from any thread), address reuse and mmap/munmap pieces, with
    // rows() asked for every 500 events: the slots it resolved are then kept by the fold alone.
    // Compared with a model that sees the same prefix and is asked once.
    Scratch s;
    const uint64_t events = 6000;
    {
        memray::format::HeaderFields h;
        memray::testing::CaptureBuilder b(s.path, h);
        for (uint32_t t = 1; t <= 3; ++t) b.thread_info(t, 1000 + t, "t");
        const char* files[] = {"a.py", "b.py"};
        for (uint32_t c = 1; c <= 12; ++c)
            b.code(c, ("fn" + std::to_string(c % 5)).c_str(), files[c % 2], c);
        for (uint32_t n = 1; n <= 40; ++n) b.python_node(n, n <= 4 ? 0 : (n * 7) % (n - 1) + 1, n % 12 + 1);
        std::mt19937_64 rng(11);
        std::vector<uint64_t> live, maps;
        b.time(0);
        for (uint64_t i = 0; i < events; ++i) {
            if (i % 50 == 0) b.thread(uint32_t(rng() % 3) + 1);
            uint64_t r = rng();
            if (r % 100 < 4) {
                uint64_t a = 0x7f0000000000 + (r % 64) * 0x10000;
                b.alloc(Allocator::Mmap, a, 0x8000 + (r >> 40) % 0x8000, uint32_t(r >> 8) % 40 + 1);
                maps.push_back(a);
            } else if (r % 100 < 7 && !maps.empty()) {
                uint64_t a = maps[(r >> 8) % maps.size()] + 0x1000 * ((r >> 20) % 4);
                b.dealloc(Allocator::Munmap, a, 0x2000);
            } else if (live.empty() || r % 100 < 55) {
                uint64_t a = 0x1000 + (r >> 16) % 4000 * 16;  // some addresses come back unfreed
                b.alloc(Allocator::Malloc, a, 1 + (r >> 32) % 500, uint32_t(r >> 8) % 41);
                live.push_back(a);
            } else {
                size_t k = size_t((r >> 8) % live.size());
                b.dealloc(Allocator::Free, live[k]);
                live[k] = live.back();
                live.pop_back();
            }
        }
        b.finish(events);
    }
    auto sorted = [](std::vector<Row> rows) {
        std::sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) {
            return std::tie(x.function, x.file) < std::tie(y.function, y.file);
        });
        return rows;
    };
    auto same = [](const std::vector<Row>& x, const std::vector<Row>& y) {
        REQUIRE(x.size() == y.size());
        for (size_t i = 0; i < x.size(); ++i) {
            CHECK(x[i].function == y[i].function);
            CHECK(x[i].file == y[i].file);
            CHECK(x[i].own_bytes == y[i].own_bytes);
            CHECK(x[i].own_allocations == y[i].own_allocations);
            CHECK(x[i].total_bytes == y[i].total_bytes);
            CHECK(x[i].total_allocations == y[i].total_allocations);
        }
    };
    memray::format::Reader reader(s.path);
    LiveModel model;
    uint64_t seen = 0, checks = 0;
    for (;;) {
        auto item = reader.next();
        if (item == memray::format::Reader::Item::End) break;
        if (item != memray::format::Reader::Item::Event) continue;
        model.on_event(reader.event());
        if (++seen % 500 != 0) continue;
        bool hide = seen % 1500 == 0;  // now and then the other rule: all recounted
        memray::format::Reader again(s.path);
        LiveModel fresh;
        for (uint64_t n = 0; n < seen;) {
            auto it = again.next();
            REQUIRE(it != memray::format::Reader::Item::End);
            if (it == memray::format::Reader::Item::Event) {
                fresh.on_event(again.event());
                ++n;
            }
        }
        CHECK(model.heap() == fresh.heap());
        for (uint32_t t = 0; t <= 3; ++t) {
            std::vector<Row> kept = sorted(model.rows(reader, t, hide));
            same(kept, sorted(fresh.rows(again, t, hide)));
            uint64_t own = 0;
            for (const Row& r : kept) own += r.own_bytes;
            if (t == 0) CHECK(own <= model.heap());  // node 0 is in the heap, in no row
        }
        ++checks;
    }
    CHECK(checks == events / 500);
}

TEST_CASE("format::Reader reads a stream that cannot seek, block by block, to its end") {
    Scratch s;
    write_capture(s.path, false);  // no trailer: the process was killed
    std::ifstream in(s.path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    std::thread writer([&] {
        // In small pieces, so that reads of the reader end in the middle of records and blocks.
        for (size_t at = 0; at < bytes.size(); at += 7) {
            size_t n = std::min<size_t>(7, bytes.size() - at);
            REQUIRE(write(fds[1], bytes.data() + at, n) == ssize_t(n));
        }
        close(fds[1]);
    });
    std::FILE* stream = fdopen(fds[0], "rb");
    REQUIRE(stream);
    memray::format::Reader reader(stream, "127.0.0.1:1");
    CHECK(reader.header().pid == 99);
    LiveModel model;
    fold(reader, model);
    writer.join();
    CHECK(model.heap() == 200 + 400 + 1600 + 50);
    CHECK(reader.truncated());
    CHECK_FALSE(reader.trailer().has_value());
}

TEST_CASE("format::Reader stream mode: garbage is one FormatError naming the stream") {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    REQUIRE(write(fds[1], junk, sizeof junk - 1) == ssize_t(sizeof junk - 1));
    close(fds[1]);
    std::FILE* stream = fdopen(fds[0], "rb");
    REQUIRE(stream);
    CHECK_THROWS_WITH_AS(memray::format::Reader(stream, "127.0.0.1:9"),
                         "127.0.0.1:9 is not a memray capture file", memray::format::FormatError);
}

TEST_CASE("live model: the duration follows the memory samples when no event arrives") {
    Scratch s;
    {
        memray::format::HeaderFields h;
        memray::testing::CaptureBuilder b(s.path, h);
        b.code(1, "f", "a.py", 1);
        b.python_node(1, 0, 1);
        b.time(5000);
        b.thread(1);
        b.alloc(Allocator::Malloc, 0x1000, 100, 1);
        for (uint64_t t = 10000; t <= 2000000; t += 10000) b.sample(t, 4096);  // an idle program
        b.flush_block();
        b.close();
    }
    memray::format::Reader reader(s.path);
    LiveModel model;
    fold(reader, model);
    CHECK(model.last_time_us() == 2000000);
}

TEST_CASE("StreamSource: the header's duration advances with the samples of an idle target") {
    // A fake target on loopback: greets, sends a capture whose only event is at 5 ms and whose
    // memory samples go on to 3 s, and keeps the connection open (the target still runs).
    Scratch s;
    const uint64_t samples = 300;
    {
        memray::format::HeaderFields h;
        h.pid = 0;  // no process to look for
        h.command_line = "idle";
        memray::testing::CaptureBuilder b(s.path, h);
        b.thread_info(1, 1001, "main");
        b.code(1, "f", "a.py", 1);
        b.code(2, "f", "a.py", 2);
        b.python_node(1, 0, 1);
        b.python_node(2, 0, 2);
        b.time(5000);
        b.thread(1);
        b.alloc(Allocator::Malloc, 0x1000, 100, 1);
        b.alloc(Allocator::Malloc, 0x2000, 100, 2);
        for (uint64_t i = 1; i <= samples; ++i) b.sample(i * 10000, 4096);
        b.flush_block();
        b.close();
    }
    std::ifstream in(s.path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listener >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(listener, 1) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    int peer = -1;
    std::thread target([&] {
        peer = accept(listener, nullptr, nullptr);
        if (peer < 0) return;
        char hello[memray::format::k_live_hello_len];
        size_t got = 0;
        while (got < sizeof hello) {
            ssize_t r = recv(peer, hello + got, sizeof hello - got, 0);
            if (r <= 0) return;
            got += size_t(r);
        }
        std::string out(memray::format::k_live_hello, memray::format::k_live_hello_len);
        uint32_t n = uint32_t(bytes.size());
        out.push_back(char(memray::format::k_live_chunk_capture));
        for (int i = 0; i < 4; ++i) out.push_back(char(n >> (8 * i)));
        out += bytes;
        (void)!send(peer, out.data(), out.size(), MSG_NOSIGNAL);
    });

    memray::live::StreamOptions o;
    o.port = ntohs(addr.sin_port);
    o.connect_timeout_ms = 10000;
    memray::live::StreamSource source(o);
    struct Join {  // also when a REQUIRE fails: a joinable thread would abort the test
        memray::live::StreamSource& source;
        std::thread& target;
        int listener;
        ~Join() {
            source.close();
            shutdown(listener, SHUT_RDWR);  // an accept() still waiting returns
            if (target.joinable()) target.join();
        }
    } join{source, target, listener};
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (source.header().samples < samples && std::chrono::steady_clock::now() < deadline)
        source.poll(100);
    REQUIRE(source.header().samples == samples);
    CHECK(source.header().status == memray::live::Status::Running);
    CHECK(source.header().duration_ms == samples * 10);
    std::vector<Row> rows = source.rows(0, false);
    REQUIRE(rows.size() == 1);  // f at two lines: one location
    CHECK(rows[0].own_bytes == 200);
    source.close();
    if (peer >= 0) close(peer);
    close(listener);
}
