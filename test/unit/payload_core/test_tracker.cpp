// The payload core end to end, without hooks: record_* calls made by this test's threads go
// through the per-thread rings, the stack tree and the writer into a capture file, which is read
// back with format::Reader and compared with what the test really did.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "format/reader.hpp"
#include "payload/api.hpp"
#include "payload/sink.hpp"
#include "payload/thread_state.hpp"
#include "payload/tracker.hpp"
#include "payload/writer.hpp"
#include "stubs.hpp"

using namespace memray;
using format::Allocator;

namespace {

std::string temp_path(const char* tag) {
    static int counter = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "/tmp/memray-core-test-%d-%d-%s.bin", int(getpid()), counter++, tag);
    unlink(buf);
    return buf;
}

std::string settings_for(const std::string& path, const char* extra = "") {
    return "output=" + path + "\n" + extra;
}

struct Capture : format::RecordListener {
    format::Header header;
    std::vector<format::Event> events;
    std::vector<format::MemorySample> samples;
    std::map<uint32_t, format::ThreadInfo> threads;
    std::map<uint32_t, format::CodeInfo> codes;
    std::map<uint32_t, format::StackNode> nodes;
    std::vector<uint64_t> object_generations;
    std::vector<std::string> objects;
    std::vector<format::Codec> codecs;
    std::optional<format::Trailer> trailer;
    bool truncated = false;

    void on_block(uint64_t, format::Codec c, uint32_t, uint32_t) override { codecs.push_back(c); }
    void on_thread_info(uint32_t t, const format::ThreadInfo& i) override { threads[t] = i; }
    void on_code(uint32_t id, const format::CodeInfo& c) override { codes[id] = c; }
    void on_node(uint32_t id, const format::StackNode& n) override {
        CHECK(nodes.count(id) == 0);  // every node is written once
        CHECK((n.parent == 0 || nodes.count(n.parent) == 1));  // parents come first
        if (n.kind == format::FrameKind::Python) CHECK(codes.count(n.code) == 1);
        nodes[id] = n;
    }
    void on_objects_reset(uint64_t g) override { object_generations.push_back(g); }
    void on_object(const format::ObjectInfo& o) override { objects.push_back(o.path); }
    void on_sample(const format::MemorySample& s) override { samples.push_back(s); }
    void on_event(const format::Event& e) override {
        if (e.node) CHECK(nodes.count(e.node) == 1);  // nodes precede the events naming them
        events.push_back(e);
    }
    void on_trailer(const format::Trailer& t) override { trailer = t; }

    std::string thread_name(uint32_t index) const {
        auto it = threads.find(index);
        return it == threads.end() ? "" : it->second.name;
    }
    // Frames of a node, root first.
    std::vector<format::StackNode> path(uint32_t node) const {
        std::vector<format::StackNode> out;
        while (node) {
            const format::StackNode& n = nodes.at(node);
            out.insert(out.begin(), n);
            node = n.parent;
        }
        return out;
    }
};

Capture read_capture(const std::string& path) {
    Capture c;
    format::Reader r(path);
    c.header = r.header();
    r.read_all(c);
    c.truncated = r.truncated();
    return c;
}

bool writer_thread_exists() {
    DIR* d = opendir("/proc/self/task");
    bool found = false;
    while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::string p = std::string("/proc/self/task/") + e->d_name + "/comm";
        FILE* f = fopen(p.c_str(), "r");
        if (!f) continue;
        char name[64] = {};
        if (fgets(name, sizeof name, f) && std::strncmp(name, "memray-writer", 13) == 0)
            found = true;
        fclose(f);
    }
    closedir(d);
    return found;
}

size_t thread_state_count() {
    size_t n = 0;
    for (auto* s = payload::thread_list(); s; s = s->next) ++n;
    return n;
}

__attribute__((noinline)) void record_here(const void* address, size_t size) {
    payload::record_allocation(Allocator::Malloc, address, size);
    asm volatile("" ::: "memory");  // keep the call a real call (not a tail call)
}

}  // namespace

TEST_CASE("an exclusive start starts like the plain one when nothing runs") {
    std::string out = temp_path("exclusive");
    REQUIRE(memray_payload_start_exclusive(settings_for(out).c_str()) == 0);
    CHECK(memray_payload_active() == 1);
    CHECK(memray_payload_start_exclusive(settings_for(out).c_str()) == -EBUSY);
    REQUIRE(memray_payload_stop() == 0);
    CHECK(memray_payload_active() == 0);
    Capture c = read_capture(out);
    CHECK(c.trailer);
    unlink(out.c_str());
}

TEST_CASE("events of several threads arrive complete, in order, with thread names") {
    std::string out = temp_path("threads");
    REQUIRE(memray_payload_start(settings_for(out).c_str()) == 0);
    CHECK(memray_payload_active() == 1);
    CHECK(memray_payload_start(settings_for(out).c_str()) == 0);  // idempotent
    // ... unless the caller asks to own the session: busy, and the running one is untouched.
    const std::string second = temp_path("second");
    CHECK(memray_payload_start_exclusive(settings_for(second).c_str()) == -EBUSY);
    CHECK(std::string(memray_payload_last_error()).find("already active") != std::string::npos);
    CHECK(access(second.c_str(), F_OK) != 0);  // nothing created for the refused session
    CHECK(memray_payload_active() == 1);
    CHECK(writer_thread_exists());

    // More events per thread than a ring holds: producers must wait, never drop.
    const int k_threads = 4;
    const uint64_t k_per_thread = 3 * payload::k_ring_capacity + 123;
    std::vector<std::thread> threads;
    for (int t = 0; t < k_threads; ++t) {
        threads.emplace_back([t, k_per_thread] {
            char name[16];
            snprintf(name, sizeof name, "worker-%d", t);
            payload::record_thread_name(0, name);
            for (uint64_t i = 0; i < k_per_thread; ++i) {
                auto* addr = reinterpret_cast<void*>((uint64_t(t + 1) << 40) + i * 16);
                payload::record_allocation(Allocator::Malloc, addr, i % 1000 + 1);
                if (i % 2) payload::record_deallocation(Allocator::Free, addr, 0);
            }
        });
    }
    for (auto& th : threads) th.join();
    REQUIRE(memray_payload_stop() == 0);
    CHECK(memray_payload_active() == 0);
    CHECK(memray_payload_stop() != 0);  // nothing to stop
    CHECK(!writer_thread_exists());

    Capture c = read_capture(out);
    CHECK(!c.truncated);
    REQUIRE(c.trailer);
    CHECK(c.header.pid == uint64_t(getpid()));
    CHECK(c.header.python_version == "");
    CHECK(c.header.python_allocator == "");
    CHECK((c.header.flags & format::k_flag_native) != 0);  // not Python: native stacks
    CHECK((c.header.flags & format::k_flag_compressed) != 0);
    CHECK(c.header.command_line.find("test-payload-core") != std::string::npos);
    CHECK(c.header.executable.find("test-payload-core") != std::string::npos);
    for (auto codec : c.codecs) CHECK((codec == format::Codec::Lz4 || codec == format::Codec::Raw));

    std::map<std::string, std::vector<format::Event>> by_name;
    for (auto& e : c.events) by_name[c.thread_name(e.thread)].push_back(e);
    uint64_t expected_allocs = k_threads * k_per_thread;
    uint64_t expected_frees = k_threads * (k_per_thread / 2);
    CHECK(c.trailer->allocations == expected_allocs);
    CHECK(c.trailer->deallocations == expected_frees);
    CHECK(c.events.size() == expected_allocs + expected_frees);
    for (int t = 0; t < k_threads; ++t) {
        std::string name = "worker-" + std::to_string(t);
        REQUIRE(by_name.count(name) == 1);
        const auto& ev = by_name[name];
        REQUIRE(ev.size() == k_per_thread + k_per_thread / 2);
        // Exactly the sequence this thread produced.
        size_t k = 0;
        bool ok = true;
        for (uint64_t i = 0; i < k_per_thread && ok; ++i) {
            uint64_t addr = (uint64_t(t + 1) << 40) + i * 16;
            ok = ev[k].allocator == Allocator::Malloc && ev[k].address == addr &&
                 ev[k].size == i % 1000 + 1 && ev[k].node != 0;
            ++k;
            if (ok && i % 2) {
                ok = ev[k].allocator == Allocator::Free && ev[k].address == addr;
                ++k;
            }
        }
        CHECK(ok);
    }
    uint64_t last = 0;
    for (auto& e : c.events) {
        CHECK(e.time_us >= last);
        last = e.time_us;
    }
    CHECK(c.trailer->threads == uint64_t(k_threads));
    CHECK(c.trailer->nodes == c.nodes.size());
    // Objects are announced at start.
    REQUIRE(!c.object_generations.empty());
    CHECK(c.objects.front() == "/fake/object");
    unlink(out.c_str());
}

TEST_CASE("native stacks name the call site and skip nothing of the program") {
    std::string out = temp_path("native");
    REQUIRE(memray_payload_start(settings_for(out, "compress=0\n").c_str()) == 0);
    static char buffer[64];
    record_here(buffer, 64);
    REQUIRE(memray_payload_stop() == 0);
    Capture c = read_capture(out);
    for (auto codec : c.codecs) CHECK(codec == format::Codec::Raw);
    CHECK((c.header.flags & format::k_flag_compressed) == 0);
    REQUIRE(c.events.size() == 1);
    auto frames = c.path(c.events[0].node);
    REQUIRE(frames.size() >= 3);
    for (auto& f : frames) CHECK(f.kind == format::FrameKind::Native);
    // Innermost frame: the return address inside record_here (the tracker's frames are skipped).
    uint64_t site = reinterpret_cast<uint64_t>(&record_here);
    CHECK(frames.back().ip > site);
    CHECK(frames.back().ip < site + 64);
    unlink(out.c_str());
}

TEST_CASE("native frames come first, then python frames, on one path") {
    static stubs::FakeCode outer{"main", "/app/main.py", 1, 1};
    static stubs::FakeCode inner{"Loader.load", "/app/loader.py", 20, 2};
    stubs::python_present = true;
    for (const char* extra : {"native=0\n", "native=1\n"}) {
        std::string out = temp_path("python");
        REQUIRE(memray_payload_start(settings_for(out, extra).c_str()) == 0);
        stubs::fake_frames[0] = payload::PyFrameRef{&inner, 42, false};  // innermost first
        stubs::fake_frames[1] = payload::PyFrameRef{&outer, 6, false};
        stubs::fake_depth = 2;
        static char buffer[32];
        record_here(buffer, 32);
        stubs::fake_depth = 1;
        stubs::fake_frames[0] = payload::PyFrameRef{&outer, 8, false};
        record_here(buffer + 1, 16);
        stubs::fake_depth = 0;
        REQUIRE(memray_payload_stop() == 0);

        bool native = extra[7] == '1';
        Capture c = read_capture(out);
        CHECK(c.header.python_version == "3.99.0");
        CHECK(c.header.python_allocator == "pymalloc_debug");  // recorded at start
        CHECK(bool(c.header.flags & format::k_flag_native) == native);
        REQUIRE(c.events.size() == 2);
        auto path = c.path(c.events[0].node);
        REQUIRE(path.size() >= 2);
        // Outermost first: the native frames (with --native), then the Python frames.
        size_t native_count = 0;
        while (native_count < path.size() && path[native_count].kind == format::FrameKind::Native)
            ++native_count;
        std::vector<format::StackNode> p(path.begin() + long(native_count), path.end());
        REQUIRE(p.size() == 2);
        CHECK(p[0].kind == format::FrameKind::Python);
        CHECK(c.codes.at(p[0].code).function == "main");
        CHECK(c.codes.at(p[0].code).file == "/app/main.py");
        CHECK(p[0].offset == 6);
        CHECK(p[1].kind == format::FrameKind::Python);
        CHECK(c.codes.at(p[1].code).function == "Loader.load");
        CHECK(c.codes.at(p[1].code).first_line == 20);
        CHECK(c.codes.at(p[1].code).line_format == 0x0363);
        CHECK(p[1].offset == 42);
        if (native) CHECK(native_count > 1);
        else CHECK(native_count == 0);
        auto q = c.path(c.events[1].node);
        CHECK(q.size() == native_count + 1);
        CHECK(q.back().offset == 8);
        CHECK(c.codes.at(q.back().code).function == "main");
        CHECK(c.codes.size() == 2);  // each code object once
        unlink(out.c_str());
    }
    stubs::python_present = false;
}

namespace {

// Rounds of malloc then free of one address, played by two threads in turn after round
// `alone_until` (before it, one thread alone): the events that break that order.
int out_of_order(const Capture& c, size_t alone_until) {
    int bad = 0;
    for (size_t i = 0; i < c.events.size(); ++i) {
        Allocator want = i % 2 ? Allocator::Free : Allocator::Malloc;
        if (c.events[i].allocator != want) ++bad;
        if (i % 2 == 1 && c.events[i].thread != c.events[i - 1].thread) ++bad;
        // From there on the thread changes with every round.
        if (i % 2 == 0 && i / 2 > alone_until && c.events[i].thread == c.events[i - 2].thread)
            ++bad;
    }
    return bad;
}

}  // namespace

TEST_CASE("a free and the malloc that reuses its address on another thread stay in order") {
    // Every event clock: the TSC (where this machine's kernel trusts it), clock_gettime, and
    // the coarse clock of a lone recording thread (until the second thread's first event).
    for (int mode : {0, 1, 2}) {
        CAPTURE(mode);
        payload::tracker_set_event_clock(mode == 0, mode == 2);
        std::string out = temp_path("order");
        REQUIRE(memray_payload_start(settings_for(out).c_str()) == 0);
        // Two threads pass one address back and forth: each frees it (recorded before the "real"
        // free) and hands it over; the other allocates it (recorded after the "real" malloc).
        const int k_rounds = 20000;
        std::atomic<int> turn{0};
        void* const addr = reinterpret_cast<void*>(0x5000);
        auto player = [&](int me) {
            for (int r = me; r < k_rounds; r += 2) {
                while (turn.load(std::memory_order_acquire) != r) {
                }
                payload::record_allocation(Allocator::Malloc, addr, 8);
                payload::record_deallocation(Allocator::Free, addr, 0);
                turn.store(r + 1, std::memory_order_release);
            }
        };
        std::thread a(player, 0), b(player, 1);
        a.join();
        b.join();
        REQUIRE(memray_payload_stop() == 0);
        Capture c = read_capture(out);
        REQUIRE(c.events.size() == size_t(2 * k_rounds));
        CHECK(out_of_order(c, 0) == 0);
        unlink(out.c_str());
    }
    payload::tracker_set_event_clock(true);
}

TEST_CASE("a lone recording thread's coarse stamps stay in order once a second thread joins") {
    // The coarse clock while one thread records (tracker.cpp, event_stamp()): thread A passes an
    // address to itself for a while, then B joins and the two pass it back and forth. A's last
    // coarse-stamped free must come before B's first malloc, and B's free before A's next malloc
    // although A may not have seen the switch to precise stamps until then. Many sessions, so the
    // switch falls at many points of A's loop.
    payload::tracker_set_event_clock(false, true);
    for (int session = 0; session < 30; ++session) {
        CAPTURE(session);
        std::string out = temp_path("solo");
        REQUIRE(memray_payload_start(settings_for(out).c_str()) == 0);
        const int k_solo = 500 + 37 * session, k_rounds = k_solo + 2000;
        std::atomic<int> turn{0};
        void* const addr = reinterpret_cast<void*>(0x6000);
        auto play = [&](int r) {
            while (turn.load(std::memory_order_acquire) != r) {
            }
            payload::record_allocation(Allocator::Malloc, addr, 8);
            payload::record_deallocation(Allocator::Free, addr, 0);
            turn.store(r + 1, std::memory_order_release);
        };
        std::thread a([&] {
            for (int r = 0; r < k_solo; ++r) play(r);
            for (int r = k_solo; r < k_rounds; r += 2) play(r);
        });
        std::thread b([&] {
            for (int r = k_solo + 1; r < k_rounds; r += 2) play(r);
        });
        a.join();
        b.join();
        REQUIRE(memray_payload_stop() == 0);
        Capture c = read_capture(out);
        REQUIRE(c.events.size() == size_t(2 * k_rounds));
        CHECK(out_of_order(c, size_t(k_solo)) == 0);
        unlink(out.c_str());
    }
    payload::tracker_set_event_clock(true);
}

TEST_CASE("event times follow the real clock with either event clock") {
    using Clock = std::chrono::steady_clock;
    auto ms_since = [](Clock::time_point a, Clock::time_point b) {
        return std::chrono::duration<double, std::milli>(b - a).count();
    };
    // TSC, clock_gettime on every event, and the coarse clock of a lone recording thread, whose
    // stamps may be up to one kernel tick early.
    timespec res{};
    clock_getres(CLOCK_MONOTONIC_COARSE, &res);
    const double tick_ms = double(res.tv_sec) * 1e3 + double(res.tv_nsec) / 1e6;
    for (int mode : {0, 1, 2}) {
        CAPTURE(mode);
        const bool tsc = mode == 0, coarse = mode == 2;
        const double early_ms = coarse ? tick_ms : 0.0;
        payload::tracker_set_event_clock(tsc, coarse);
        std::string out = temp_path("clock");
        // Capture times count from a moment inside start, between these two.
        auto before = Clock::now();
        REQUIRE(memray_payload_start(settings_for(out).c_str()) == 0);
        auto after = Clock::now();
        static char buffer[8];
        std::vector<Clock::time_point> stamps;  // just before each event
        std::vector<Clock::time_point> done;    // just after each event
        for (int i = 0; i < 4; ++i) {
            if (i) std::this_thread::sleep_for(std::chrono::milliseconds(60 + 20 * i));
            stamps.push_back(Clock::now());
            record_here(buffer + i, 1);
            done.push_back(Clock::now());
        }
        REQUIRE(memray_payload_stop() == 0);
        Capture c = read_capture(out);
        REQUIRE(c.events.size() == 4);
        // Times are stored at 1 ms resolution (rounded down), relative to the start call.
        for (int i = 0; i < 4; ++i) {
            double got = double(c.events[i].time_us) / 1000.0;
            CHECK(got <= ms_since(before, done[i]) + 0.1);
            CHECK(got >= ms_since(after, stamps[i]) - 1.1 - early_ms);
            if (i) {
                double gap = got - double(c.events[i - 1].time_us) / 1000.0;
                CHECK(gap >= ms_since(done[i - 1], stamps[i]) - 1.1 - early_ms);
                CHECK(gap <= ms_since(stamps[i - 1], done[i]) + 1.1 + early_ms);
            }
        }
        REQUIRE(c.trailer);
        CHECK(c.trailer->end_time_us >= c.events[3].time_us);
        unlink(out.c_str());
    }
    payload::tracker_set_event_clock(true);
}

TEST_CASE("a second capture after stop starts a new tree; samples and objects are written") {
    std::string first = temp_path("first");
    std::string second = temp_path("second");
    REQUIRE(memray_payload_start(settings_for(first).c_str()) == 0);
    static char buffer[8];
    record_here(buffer, 8);
    REQUIRE(memray_payload_stop() == 0);
    REQUIRE(memray_payload_start(settings_for(second, "force=1\n").c_str()) == 0);
    payload::notify_objects_changed();
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    record_here(buffer, 8);
    REQUIRE(memray_payload_stop() == 0);
    Capture a = read_capture(first);
    Capture b = read_capture(second);
    REQUIRE(a.events.size() == 1);
    REQUIRE(b.events.size() == 1);
    CHECK(a.nodes.begin()->first == 1);
    CHECK(b.nodes.begin()->first == 1);  // ids restart with the new file
    CHECK(a.path(a.events[0].node).back().ip == b.path(b.events[0].node).back().ip);
    CHECK(b.samples.size() >= 4);  // every 10 ms
    for (auto& s : b.samples) CHECK(s.rss > 1000000);
    CHECK(b.object_generations.size() >= 2);  // at start and after notify_objects_changed
    unlink(first.c_str());
    unlink(second.c_str());
}

TEST_CASE("start errors leave nothing running") {
    std::string out = temp_path("exists");
    int fd = open(out.c_str(), O_CREAT | O_WRONLY, 0644);
    close(fd);
    int installs = stubs::install_calls.load();
    CHECK(memray_payload_start(settings_for(out).c_str()) == -EEXIST);
    CHECK(std::string(memray_payload_last_error()).find("exists") != std::string::npos);
    CHECK(memray_payload_active() == 0);
    CHECK(stubs::install_calls.load() == installs);
    CHECK(memray_payload_start("native=1\n") == -EINVAL);
    CHECK(std::string(memray_payload_last_error()).find("output") != std::string::npos);
    CHECK(memray_payload_start(settings_for(out, "native=yes\n").c_str()) == -EINVAL);
    CHECK(memray_payload_start("output=/nonexistent-dir/x.bin") == -ENOENT);

    // Hooks that cannot be installed: error, no writer thread, no file left behind.
    std::string out2 = temp_path("nohooks");
    stubs::install_result = -EPERM;
    CHECK(memray_payload_start(settings_for(out2).c_str()) == -EPERM);
    stubs::install_result = 0;
    CHECK(std::string(memray_payload_last_error()).find("hooks") != std::string::npos);
    CHECK(memray_payload_active() == 0);
    CHECK(!writer_thread_exists());
    CHECK(access(out2.c_str(), F_OK) != 0);
    CHECK(!payload::tracking_enabled());
    unlink(out.c_str());
}

TEST_CASE("a write error stops tracking with one message; the program carries on") {
    std::string fifo = temp_path("fifo");
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
    REQUIRE(reader >= 0);
    int uninstalls = stubs::uninstall_calls.load();
    REQUIRE(memray_payload_start(settings_for(fifo, "force=1\n").c_str()) == 0);
    close(reader);  // the next block write fails with EPIPE
    static char buffer[8];
    for (int i = 0; i < 200 && memray_payload_active(); ++i) {
        for (int j = 0; j < 1000; ++j) record_here(buffer, 8);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(memray_payload_active() == 0);
    CHECK(!payload::tracking_enabled());
    CHECK(stubs::uninstall_calls.load() > uninstalls);  // hooks restored by the writer
    for (int j = 0; j < 1000; ++j) record_here(buffer, 8);  // ignored, no hang
    CHECK(memray_payload_stop() == 0);
    CHECK(!writer_thread_exists());
    unlink(fifo.c_str());
}

TEST_CASE("a forked child records nothing and leaves the parent's capture alone") {
    std::string out = temp_path("fork");
    REQUIRE(memray_payload_start(settings_for(out).c_str()) == 0);
    static char buffer[8];
    record_here(buffer, 1);
    fflush(nullptr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int code = payload::tracking_enabled() ? 10 : 0;
        for (int i = 0; i < 100000; ++i)
            payload::record_allocation(Allocator::Malloc, reinterpret_cast<void*>(0xdead0), 7);
        if (memray_payload_stop() == 0) code += 20;  // the child has nothing to stop
        exit(code);  // runs the payload's destructor in the child
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    record_here(buffer, 2);
    REQUIRE(memray_payload_stop() == 0);
    Capture c = read_capture(out);
    REQUIRE(c.trailer);
    REQUIRE(c.events.size() == 2);
    CHECK(c.events[0].size == 1);
    CHECK(c.events[1].size == 2);
    unlink(out.c_str());
}

TEST_CASE("follow_fork: the child records exactly its own events into <output>.<child pid>") {
    std::string out = temp_path("follow");
    REQUIRE(memray_payload_start(settings_for(out, "follow_fork=1\n").c_str()) == 0);
    static char buffer[8];
    record_here(buffer, 1);
    // Another thread records all the time: forks land while it is inside the tracker (its ring,
    // the intern tables, the writer draining it); the child must neither hang nor see its events.
    std::atomic<bool> stop{false};
    std::thread busy([&stop] {
        for (uint64_t i = 0; !stop.load(); ++i) {
            stubs::fake_depth = 0;
            payload::record_allocation(Allocator::Malloc, reinterpret_cast<void*>(0x5000 + i), 9);
            payload::record_deallocation(Allocator::Free, reinterpret_cast<void*>(0x5000 + i), 0);
        }
    });
    std::vector<pid_t> children;
    for (int k = 0; k < 20; ++k) {
        fflush(nullptr);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            int code = payload::tracking_enabled() ? 0 : 10;
            for (int i = 0; i < 3; ++i) record_here(buffer, 5);
            exit(code);  // the payload's destructor finalizes the child's capture
        }
        children.push_back(pid);
    }
    for (pid_t pid : children) {
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    stop = true;
    busy.join();
    record_here(buffer, 2);
    REQUIRE(memray_payload_stop() == 0);
    for (pid_t pid : children) {
        std::string child_out = out + "." + std::to_string(pid);
        Capture c = read_capture(child_out);
        CHECK(c.trailer);
        CHECK(c.header.pid == uint64_t(pid));
        REQUIRE(c.events.size() == 3);
        for (auto& e : c.events) CHECK(e.size == 5);
        unlink(child_out.c_str());
    }
    Capture c = read_capture(out);
    REQUIRE(c.trailer);
    size_t small = 0;
    for (auto& e : c.events) {
        CHECK(e.size != 5);
        if (e.size == 1 || e.size == 2) ++small;
    }
    CHECK(small == 2);
    unlink(out.c_str());
}

TEST_CASE("states of exited threads are recycled") {
    std::string out = temp_path("recycle");
    REQUIRE(memray_payload_start(settings_for(out).c_str()) == 0);
    size_t before = thread_state_count();
    const int k_threads = 40;
    for (int t = 0; t < k_threads; ++t) {
        std::thread th([t] {
            payload::record_allocation(Allocator::Malloc, reinterpret_cast<void*>(0x1000 + t), 3);
        });
        th.join();
        std::this_thread::sleep_for(std::chrono::milliseconds(15));
    }
    size_t after = thread_state_count();
    REQUIRE(memray_payload_stop() == 0);
    CHECK(after - before < 10);
    Capture c = read_capture(out);
    REQUIRE(c.events.size() == size_t(k_threads));
    std::map<uint32_t, int> per_thread;
    for (auto& e : c.events) per_thread[e.thread]++;
    CHECK(per_thread.size() == size_t(k_threads));  // a recycled state is a new thread
    unlink(out.c_str());
}

namespace {

// A sink that keeps the capture in memory and can be told to refuse writes: the writer must
// depend on nothing but the Sink interface.
class MemorySink final : public payload::Sink {
  public:
    std::string bytes;
    int writes_before_failure = -1;  // -1: never fail
    int writes = 0;
    int finishes = 0;

    int write(const uint8_t* data, size_t len) noexcept override {
        if (writes_before_failure >= 0 && writes >= writes_before_failure) return -ENOSPC;
        ++writes;
        bytes.append(reinterpret_cast<const char*>(data), len);
        return 0;
    }
    void finish() noexcept override { ++finishes; }
    const char* describe() const noexcept override { return "the test's memory sink"; }
};

// What memray_payload_start does around the writer, with `sink` as the output.
void start_writer_with(payload::Sink& sink) {
    REQUIRE(payload::tracker_init());
    payload::tracker_begin_session(false, false);
    payload::WriterOptions w;
    w.sink = &sink;
    w.command_line = "sink test";
    w.pid = uint64_t(getpid());
    w.start_ns = payload::now_ns();
    char err[256] = {};
    REQUIRE(payload::writer_start(w, err, sizeof err) == 0);
    payload::tracker_set_enabled(true);
}

void stop_writer() {
    payload::tracker_set_enabled(false);
    payload::tracker_wait_quiescent();
    payload::writer_finish();
}

// stderr into a file while `fn` runs; returns what was written.
template <class F>
std::string capture_stderr(F&& fn) {
    std::string path = temp_path("stderr");
    int file = open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0600);
    REQUIRE(file >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(file, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    std::string text;
    char buf[4096];
    ssize_t n;
    lseek(file, 0, SEEK_SET);
    while ((n = read(file, buf, sizeof buf)) > 0) text.append(buf, size_t(n));
    close(file);
    unlink(path.c_str());
    return text;
}

}  // namespace

TEST_CASE("the writer hands the whole capture to its sink, and finishes it once") {
    MemorySink sink;
    start_writer_with(sink);
    static char buffer[8];
    for (int i = 0; i < 100; ++i) record_here(buffer, size_t(i + 1));
    stop_writer();
    CHECK(sink.finishes == 1);
    REQUIRE(sink.writes >= 2);  // the header, then at least the final block

    std::string path = temp_path("memory-sink");
    FILE* f = fopen(path.c_str(), "wb");
    REQUIRE(f);
    REQUIRE(fwrite(sink.bytes.data(), 1, sink.bytes.size(), f) == sink.bytes.size());
    fclose(f);
    Capture c = read_capture(path);
    CHECK(!c.truncated);
    REQUIRE(c.trailer);
    CHECK(c.header.command_line == "sink test");
    REQUIRE(c.events.size() == 100);
    for (int i = 0; i < 100; ++i) CHECK(c.events[size_t(i)].size == uint64_t(i + 1));
    unlink(path.c_str());
}

TEST_CASE("a sink that fails stops tracking with one message naming it") {
    MemorySink sink;
    sink.writes_before_failure = 1;  // the header goes through, the first block does not
    int uninstalls = stubs::uninstall_calls.load();
    std::string err = capture_stderr([&] {
        start_writer_with(sink);
        static char buffer[8];
        // A block is written at 64 KiB of records or after a second: wait for that write.
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (!payload::writer_failed() && std::chrono::steady_clock::now() < deadline) {
            for (int j = 0; j < 1000; ++j) record_here(buffer, 8);
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        stop_writer();
    });
    CHECK(payload::writer_failed());
    CHECK(!payload::tracking_enabled());
    CHECK(stubs::uninstall_calls.load() > uninstalls);
    CHECK(sink.finishes == 1);
    CHECK(sink.writes == 1);
    const std::string expected =
        "memray: error: cannot write the test's memory sink: No space left on device; "
        "tracking stopped\n";
    CHECK(err == expected);
}
