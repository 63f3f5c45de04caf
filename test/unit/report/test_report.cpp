#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "capture_builder.hpp"
#include "format/reader.hpp"
#include "report/allocation_tracker.hpp"
#include "report/flat_map.hpp"
#include "report/size_format.hpp"
#include "report/stack_resolver.hpp"
#include "report/stats.hpp"
#include "report/summary.hpp"
#include "report/snapshot.hpp"
#include "report/tree_report.hpp"

using namespace memray;
using format::Allocator;
using memray::testing::CaptureBuilder;

namespace {

std::string temp_path(const char* name) {
    return std::string(P_tmpdir) + "/memray-report-test-" + std::to_string(getpid()) + "-" + name;
}

format::HeaderFields python_header() {
    format::HeaderFields h;
    h.pid = 321;
    h.start_time_unix_ms = 1672534800000ull;  // 2023-01-01 01:00:00 UTC
    h.command_line = "python3 app.py";
    h.python_version = "3.11.7";
    h.executable = "/usr/bin/python3";
    return h;
}

// Reads a whole capture into a tracker.
struct Loaded {
    format::Reader reader;
    report::AllocationTracker tracker;
    explicit Loaded(const std::string& path) : reader(path) {
        report::track_capture(reader, tracker);
    }
};

// A small Python capture:
//   <memray> bootstrap -> main (app.py:1) -> outer (app.py:10) -> inner (app.py:20)
// inner keeps 7 x 1 MiB, frees 3; outer allocates 4 kB once directly; a worker thread mallocs
// 100 bytes from main and calloc's 300 bytes from inner, both freed.
void write_python_capture(const std::string& path, bool trailer = true) {
    CaptureBuilder b(path, python_header());
    b.thread_info(1, 1000, "MainThread");
    b.thread_info(2, 1001, "worker");
    b.code(1, "<module>", "<memray>", 1);
    b.code(2, "main", "/src/app.py", 1);
    b.code(3, "outer", "/src/app.py", 10);
    b.code(4, "inner", "/src/app.py", 20);
    b.python_node(1, 0, 1);
    b.python_node(2, 1, 2);
    b.python_node(3, 2, 3);
    b.python_node(4, 3, 4);
    b.time(1000);
    b.thread(1);
    const uint64_t mib = 1 << 20;
    for (uint64_t i = 0; i < 7; ++i) b.alloc(Allocator::Malloc, 0x100000 * (i + 1), mib, 4);
    b.alloc(Allocator::Malloc, 0x9000000, 4096, 3);
    b.flush_block();  // the rest is in a second block: delta state restarts
    b.time(2000);
    for (uint64_t i = 0; i < 3; ++i) b.dealloc(Allocator::Free, 0x100000 * (i + 1));
    b.thread(2);
    b.alloc(Allocator::Malloc, 0xa000000, 100, 2);
    b.alloc(Allocator::Calloc, 0xb000000, 300, 4);
    b.dealloc(Allocator::Free, 0xa000000);
    b.dealloc(Allocator::Free, 0xb000000);
    b.sample(2500, 50 << 20);
    if (trailer) b.finish(3000);
    else {
        b.flush_block();
        b.close();
    }
}

void use_utc() {
    setenv("TZ", "UTC", 1);
    tzset();
}

}  // namespace

TEST_CASE("size_fmt prints like memray") {
    CHECK(report::size_fmt(0) == "0.000B");
    CHECK(report::size_fmt(4) == "4.000B");
    CHECK(report::size_fmt(999) == "999.000B");
    CHECK(report::size_fmt(1000) == "1.000kB");
    CHECK(report::size_fmt(2047) == "2.047kB");
    CHECK(report::size_fmt(3072) == "3.072kB");
    CHECK(report::size_fmt(1500000) == "1.500MB");
    CHECK(report::size_fmt(3341500) == "3.341MB");
    CHECK(report::size_fmt(5242880) == "5.243MB");
    CHECK(report::size_fmt(uint64_t(7) << 30) == "7.516GB");
}

TEST_CASE("FlatMap survives insert/erase churn") {
    report::FlatMap<uint64_t> m;
    std::vector<uint64_t> keys;
    for (uint64_t i = 1; i <= 20000; ++i) {
        keys.push_back(i * 16);
        m[i * 16] = i;
    }
    for (uint64_t i = 1; i <= 20000; i += 2) CHECK(m.erase(i * 16));
    CHECK(m.size() == 10000);
    for (uint64_t i = 1; i <= 20000; ++i) {
        uint64_t* v = m.find(i * 16);
        if (i % 2) CHECK(v == nullptr);
        else {
            REQUIRE(v != nullptr);
            CHECK(*v == i);
        }
    }
    m[0] = 5;  // the zero key is kept aside
    CHECK(m.size() == 10001);
    CHECK(*m.find(0) == 5);
}

TEST_CASE("histogram bins match memray's") {
    std::vector<uint64_t> sizes = {2500,   11000,  11000,  12000,  60000,  65000,  120000,
                                   125000, 125000, 160000, 170000, 180000, 800000, 1500000};
    std::vector<std::pair<uint64_t, uint64_t>> data;
    for (uint64_t s : sizes) {
        if (!data.empty() && data.back().first == s) ++data.back().second;
        else data.emplace_back(s, 1);
    }
    using Bins = std::vector<std::pair<uint64_t, uint64_t>>;
    CHECK(report::histogram_bins(data, 5) ==
          Bins{{8986, 1}, {32299, 3}, {116099, 2}, {417312, 6}, {1500000, 2}});
    // Values chosen by memray's tests to provoke floating point rounding at the edges.
    CHECK(report::histogram_bins({{32, 1}, {1050856, 1}}, 10) ==
          Bins{{90, 1}, {256, 0}, {724, 0}, {2049, 0}, {5798, 0}, {16405, 0}, {46411, 0},
               {131299, 0}, {371453, 0}, {1050856, 1}});
    CHECK(report::histogram_bins({{536, 2}, {576, 1}, {592, 1}, {4486, 1}, {10000000000, 1}},
                                 10) ==
          Bins{{2859, 4}, {15252, 1}, {81360, 0}, {434009, 0}, {2315167, 0}, {12349970, 0},
               {65879369, 0}, {351425246, 0}, {1874633954, 0}, {10000000000, 1}});
    CHECK(report::histogram_bins({{10000000000, 3}}, 10) ==
          Bins{{316227, 0}, {999999, 0}, {3162277, 0}, {10000000, 0}, {31622776, 0},
               {100000000, 0}, {316227766, 0}, {999999999, 0}, {3162277660, 0},
               {10000000000, 3}});
    CHECK(report::draw_histogram(data, 5) ==
          "min: 2.500kB\n"
          "\t----------------------------------------\n"
          "\t< 8.986kB  : 1 ▇▇▇▇▇\n"
          "\t< 32.299kB : 3 ▇▇▇▇▇▇▇▇▇▇▇▇▇\n"
          "\t< 116.099kB: 2 ▇▇▇▇▇▇▇▇▇\n"
          "\t< 417.312kB: 6 ▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇\n"
          "\t<=1.500MB  : 2 ▇▇▇▇▇▇▇▇▇\n"
          "\t----------------------------------------\n"
          "\tmax: 1.500MB");
}

TEST_CASE("high-water mark: the latest peak, and what was alive there") {
    std::string path = temp_path("peak.bin");
    {
        CaptureBuilder b(path, python_header());
        b.code(1, "f", "/a.py", 1);
        b.python_node(1, 0, 1);
        b.python_node(2, 0, 1);
        b.python_node(3, 0, 1);
        b.time(1000);
        b.alloc(Allocator::Malloc, 0x1000, 100, 1);  // heap 100
        b.alloc(Allocator::Malloc, 0x2000, 200, 2);  // heap 300: peak
        b.time(5000);
        b.dealloc(Allocator::Free, 0x1000);          // 200
        b.alloc(Allocator::Malloc, 0x3000, 100, 3);  // 300 again: the latest peak wins
        b.dealloc(Allocator::Free, 0x2000);          // 100
        b.dealloc(Allocator::Free, 0xdead0);         // unknown address: ignored
        b.finish(6000);
    }
    Loaded l(path);
    CHECK(l.tracker.peak() == 300);
    CHECK(l.tracker.peak_time_us() == 5000);
    CHECK(l.tracker.heap() == 100);
    CHECK(l.tracker.at_peak(1).bytes == 0);
    CHECK(l.tracker.at_peak(2).bytes == 200);
    CHECK(l.tracker.at_peak(3).bytes == 100);
    CHECK(l.tracker.at_end(2).bytes == 0);
    CHECK(l.tracker.at_end(3).bytes == 100);
    CHECK(l.tracker.at_end(3).count == 1);
    CHECK(l.tracker.allocations() == 3);
    CHECK(l.tracker.deallocations() == 3);
    std::remove(path.c_str());
}

TEST_CASE("mmap ranges are trimmed and split by munmap; reused addresses replace blocks") {
    std::string path = temp_path("mmap.bin");
    {
        CaptureBuilder b(path, python_header());
        b.code(1, "f", "/a.py", 1);
        b.python_node(1, 0, 1);
        b.python_node(2, 0, 1);
        b.time(1000);
        b.alloc(Allocator::Mmap, 0x10000, 0x4000, 1);      // 16 KiB
        b.dealloc(Allocator::Munmap, 0x11000, 0x1000);     // hole in the middle: 2 pieces
        b.dealloc(Allocator::Munmap, 0x13800, 0x800);      // trims the right piece
        b.alloc(Allocator::Malloc, 0x50000, 64, 2);
        b.alloc(Allocator::Malloc, 0x50000, 32, 2);        // same address, free not seen
        b.finish(2000);
    }
    Loaded l(path);
    CHECK(l.tracker.peak() == 0x4000);
    CHECK(l.tracker.at_end(1).bytes == 0x4000 - 0x1000 - 0x800);
    CHECK(l.tracker.at_end(1).count == 2);
    CHECK(l.tracker.at_end(2).bytes == 32);
    CHECK(l.tracker.at_end(2).count == 1);
    CHECK(l.tracker.heap() == 0x4000 - 0x1800 + 32);
    std::remove(path.c_str());
}

TEST_CASE("stacks: python frames with lines, bootstrap dropped, native as module+offset") {
    std::string path = temp_path("stacks.bin");
    {
        format::HeaderFields h = python_header();
        h.flags = format::k_flag_native;
        CaptureBuilder b(path, h);
        b.objects_reset(1);
        b.object(0x7f0000000000, "/usr/lib/libfoo.so", {{0x1000, 0x2000}});
        b.object(0x400000, "", {{0x0, 0x1000}});  // the executable has an empty path
        b.code(1, "<module>", "<memray>", 1);
        b.code(2, "work", "/src/w.py", 42);
        b.python_node(1, 0, 1);
        b.python_node(2, 1, 2);
        b.native_node(3, 2, 0x7f0000001234);
        b.native_node(4, 0, 0x400010);
        b.native_node(5, 0, 0x1234);  // in no object
        b.finish(1);
    }
    format::Reader r(path);
    while (r.next() != format::Reader::Item::End) {
    }
    report::StackResolver res(r);
    auto s = res.stack(2);
    REQUIRE(s.size() == 1);
    CHECK(s[0] == report::Frame{"work", "/src/w.py", 42, false, ""});
    // Without a symbolizer no eval-loop frame is known: the Python frames go outside the
    // native ones, the bootstrap still dropped.
    auto hybrid = res.stack(3);
    REQUIRE(hybrid.size() == 2);
    CHECK(hybrid[0].function == "libfoo.so+0x1234");
    CHECK(hybrid[0].native);
    CHECK(hybrid[0].object == "/usr/lib/libfoo.so");
    CHECK(hybrid[1].function == "work");
    CHECK(res.frame(3).function == "libfoo.so+0x1234");
    CHECK(res.frame(3).file == "/usr/lib/libfoo.so");
    auto native = res.stack(4);
    REQUIRE(native.size() == 1);
    CHECK(native[0].function == "python3+0x10");
    CHECK(res.frame(5).function == "0x1234");
    CHECK(res.stack(0).empty());
    report::Frame top;
    CHECK(res.top_frame(3, top));
    CHECK(top.function == "libfoo.so+0x1234");
    CHECK(res.top_frame(2, top));
    CHECK(top.function == "work");
    CHECK_FALSE(res.top_frame(1, top));  // bootstrap only
    std::remove(path.c_str());
}

namespace {

// Names native addresses from a table, as a real symbolizer would from debug info.
class TableSymbolizer : public report::Symbolizer {
  public:
    std::map<uint64_t, std::vector<report::SourceFrame>> names;
    const std::vector<report::SourceFrame>& symbolize(const format::ObjectInfo&, uint32_t,
                                                      uint64_t ip) override {
        auto it = names.find(ip);
        return it == names.end() ? m_none : it->second;
    }

  private:
    std::vector<report::SourceFrame> m_none;
};

std::vector<std::string> functions(const std::vector<report::Frame>& frames) {
    std::vector<std::string> out;
    for (const auto& f : frames) out.push_back(f.function);
    return out;
}

}  // namespace

TEST_CASE("hybrid stacks: Python frames replace the eval-loop frames they ran in") {
    std::string path = temp_path("hybrid.bin");
    {
        format::HeaderFields h = python_header();
        h.flags = format::k_flag_native;
        CaptureBuilder b(path, h);
        b.objects_reset(1);
        b.object(0x400000, "", {{0x0, 0x1000}});
        b.object(0x7f0000000000, "/ext/ext.so", {{0x1000, 0x1000}});
        b.code(1, "outer_fn", "/app/a.py", 10);
        b.code(2, "mid_fn", "/app/a.py", 20);
        b.code(3, "inner_fn", "/app/a.py", 30);
        b.code(4, "<module>", "<memray>", 1);
        b.code(5, "<module>", "/app/main.py", 1);
        // 3.11 style: outer_fn called mid_fn inside one eval-loop call; inner_fn was entered
        // from C (PyObject_Call) in a second one.
        b.python_node(1, 0, 1, 0, true);
        b.python_node(2, 1, 2, 0, false);
        b.python_node(3, 2, 3, 0, true);
        b.native_node(4, 3, 0x400100);         // main
        b.native_node(5, 4, 0x400200);         // eval loop
        b.native_node(6, 5, 0x400300);         // PyObject_Call
        b.native_node(7, 6, 0x400210);         // eval loop (.cold part)
        b.native_node(8, 7, 0x7f0000001100);   // ext_alloc with an inlined helper
        // `memray run`: the bootstrap's frame, then the user's, one eval call each.
        b.python_node(10, 0, 4, 0, true);
        b.python_node(11, 10, 5, 0, true);
        b.python_node(12, 11, 3, 0, true);
        b.native_node(13, 12, 0x400100);       // main
        b.native_node(14, 13, 0x400200);       // eval: bootstrap
        b.native_node(15, 14, 0x400400);       // builtin_exec
        b.native_node(16, 15, 0x400200);       // eval: <module>
        b.native_node(17, 16, 0x400210);       // eval: inner_fn
        b.native_node(18, 17, 0x7f0000001100);
        // No entry marks: one frame per eval-loop call.
        b.python_node(20, 0, 1);
        b.python_node(21, 20, 2);
        b.native_node(22, 21, 0x400200);
        b.native_node(23, 22, 0x400200);
        b.native_node(24, 23, 0x7f0000001100);
        b.finish(1);
    }
    format::Reader r(path);
    while (r.next() != format::Reader::Item::End) {
    }
    TableSymbolizer sym;
    sym.names[0x400100] = {{"main", "main.c", 5}};
    sym.names[0x400200] = {{"_PyEval_EvalFrameDefault", "ceval.c", 100}};
    sym.names[0x400210] = {{"_PyEval_EvalFrameDefault.cold", "", 0}};
    sym.names[0x400300] = {{"PyObject_Call", "call.c", 7}};
    sym.names[0x400400] = {{"builtin_exec", "bltin.c", 9}};
    sym.names[0x7f0000001100] = {{"helper", "ext.c", 3}, {"ext_alloc", "ext.c", 12}};
    report::StackResolver res(r, &sym);
    CHECK(res.has_native());

    auto s = res.stack(8);
    CHECK(functions(s) == std::vector<std::string>{"helper", "ext_alloc", "inner_fn",
                                                   "PyObject_Call", "mid_fn", "outer_fn", "main"});
    CHECK(s[0] == report::Frame{"helper", "ext.c", 3, true, "/ext/ext.so"});
    CHECK(s[1].line == 12);
    CHECK(s[6].object == "/usr/bin/python3");  // the executable's empty path named from the header
    CHECK_FALSE(s[2].native);
    report::Frame top;
    CHECK(res.top_frame(8, top));
    CHECK(top.function == "helper");

    // Under `memray run` the stack starts at the user's outermost frame.
    CHECK(functions(res.stack(18)) ==
          std::vector<std::string>{"helper", "ext_alloc", "inner_fn", "<module>"});
    CHECK(functions(res.stack(24)) ==
          std::vector<std::string>{"helper", "ext_alloc", "mid_fn", "outer_fn"});

    // The same capture without a symbolizer: Python frames outside the native ones.
    report::StackResolver plain(r);
    CHECK(functions(plain.stack(8)) ==
          std::vector<std::string>{"ext.so+0x1100", "python3+0x210", "python3+0x300",
                                   "python3+0x200", "python3+0x100", "inner_fn", "mid_fn",
                                   "outer_fn"});
    std::remove(path.c_str());
}

TEST_CASE("stats of a python capture: totals, allocators, locations, text and JSON") {
    use_utc();
    std::string path = temp_path("stats.bin");
    write_python_capture(path);
    Loaded l(path);
    report::StackResolver res(l.reader);
    report::Stats s = report::compute_stats(l.reader, l.tracker, res, 5);
    const uint64_t mib = 1 << 20;
    CHECK(s.total_num_allocations == 10);
    CHECK(s.total_bytes_allocated == 7 * mib + 4096 + 100 + 300);
    CHECK(s.peak_memory == 7 * mib + 4096);
    using Dist = std::vector<std::pair<std::string, uint64_t>>;
    CHECK(s.allocator_distribution == Dist{{"MALLOC", 9}, {"CALLOC", 1}});
    CHECK(s.top_by_size == Dist{{"inner:/src/app.py:20", 7 * mib + 300},
                                {"outer:/src/app.py:10", 4096},
                                {"main:/src/app.py:1", 100}});
    // Ties keep the order of the stacks (first seen first).
    CHECK(s.top_by_count == Dist{{"inner:/src/app.py:20", 8},
                                 {"main:/src/app.py:1", 1},
                                 {"outer:/src/app.py:10", 1}});
    REQUIRE(s.top_modules_by_size.size() == 1);
    CHECK(s.top_modules_by_size[0].module == "app");
    CHECK(s.top_modules_by_size[0].num_allocations == 10);

    std::string text = report::render_stats_text(s, 5, false);
    CHECK(text ==
          "📏 Total allocations:\n\t10\n\n"
          "📦 Total memory allocated:\n\t7.345MB\n\n"
          "📈 Peak memory usage:\n\t7.344MB\n\n"
          "📊 Histogram of allocation size:\n"
          "\tmin: 100.000B\n"
          "\t----------------------------------------\n"
          "\t< 252.000B : 1 ▇▇▇▇\n"
          "\t< 636.000B : 1 ▇▇▇▇\n"
          "\t< 1.607kB  : 0 \n"
          "\t< 4.057kB  : 0 \n"
          "\t< 10.240kB : 1 ▇▇▇▇\n"
          "\t< 25.844kB : 0 \n"
          "\t< 65.225kB : 0 \n"
          "\t< 164.618kB: 0 \n"
          "\t< 415.470kB: 0 \n"
          "\t<=1.049MB  : 7 ▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇\n"
          "\t----------------------------------------\n"
          "\tmax: 1.049MB\n\n"
          "📂 Allocator type distribution:\n\t MALLOC: 9\n\t CALLOC: 1\n\n"
          "🥇 Top 5 largest allocating locations (by size):\n"
          "\t- inner:/src/app.py:20 -> 7.340MB\n"
          "\t- outer:/src/app.py:10 -> 4.096kB\n"
          "\t- main:/src/app.py:1 -> 100.000B\n\n"
          "🥇 Top 5 largest allocating locations (by number of allocations):\n"
          "\t- inner:/src/app.py:20 -> 8\n"
          "\t- main:/src/app.py:1 -> 1\n"
          "\t- outer:/src/app.py:10 -> 1\n\n"
          "🥇 Top 5 allocating modules (by size):\n"
          "\t- app: 7.345MB total | 10 allocations\n\n"
          "🥇 Top 5 allocating modules (by number of allocations):\n"
          "\t- app: 7.345MB total | 10 allocations\n");

    std::string json = report::render_stats_json(s);
    CHECK(json.rfind("{\n  \"total_num_allocations\": 10,\n  \"total_bytes_allocated\": 7344528,\n"
                     "  \"allocation_size_histogram\": [\n    {\n      \"min_bytes\": 0,\n"
                     "      \"max_bytes\": 251,\n      \"count\": 1\n    },\n",
                     0) == 0);
    CHECK(json.find("\"allocator_type_distribution\": {\n    \"MALLOC\": 9,\n    \"CALLOC\": 1\n  }") !=
          std::string::npos);
    CHECK(json.find("\"metadata\": {\n    \"start_time\": \"2023-01-01 01:00:00+00:00\",\n"
                    "    \"end_time\": \"2023-01-01 01:00:00.003000+00:00\",\n"
                    "    \"total_allocations\": 15,\n") != std::string::npos);
    // The main thread (OS thread id = pid 321) never allocated: it has no number in the capture.
    CHECK(json.find("\"main_thread_id\": 0,") != std::string::npos);
    CHECK(json.back() == '}');
    std::remove(path.c_str());
}

TEST_CASE("stats metadata: python_allocator comes from the capture header, with memray's labels") {
    const std::pair<const char*, const char*> cases[] = {
        {"pymalloc", "pymalloc"},         {"pymalloc_debug", "pymalloc debug"},
        {"malloc", "malloc"},             {"malloc_debug", "unknown"},
        {"mimalloc", "mimalloc"},         {"mimalloc_debug", "mimalloc debug"},
        {"", "unknown"},                  {"something_else", "unknown"}};
    for (const auto& [recorded, label] : cases) {
        CAPTURE(recorded);
        std::string path = temp_path("allocator.bin");
        {
            format::HeaderFields h = python_header();
            h.python_allocator = recorded;
            CaptureBuilder b(path, h);
            b.finish(1000);
        }
        Loaded l(path);
        CHECK(l.reader.header().python_allocator == recorded);
        report::StackResolver res(l.reader);
        report::Stats st = report::compute_stats(l.reader, l.tracker, res, 5);
        CHECK(st.metadata.python_allocator == label);
        CHECK(report::render_stats_json(st).find(std::string("\"python_allocator\": \"") + label +
                                                 "\"") != std::string::npos);
        std::remove(path.c_str());
    }
}

TEST_CASE("native capture: stats names the innermost Python frame, tree hides CPython's frames") {
    std::string path = temp_path("native-python.bin");
    {
        format::HeaderFields h = python_header();
        h.flags = format::k_flag_native;
        h.pid = 4242;
        CaptureBuilder b(path, h);
        b.thread_info(1, 4243, "worker");
        b.thread_info(2, 4242, "MainThread");
        b.objects_reset(1);
        b.object(0x7f0000000000, "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0", {{0x1000, 0x2000}});
        b.object(0x7e0000000000, "/site/ext.cpython-311-x86_64-linux-gnu.so", {{0x1000, 0x2000}});
        b.code(1, "<module>", "<memray>", 1);
        b.code(2, "main", "/src/app.py", 1);
        b.code(3, "work", "/src/app.py", 10);
        b.python_node(1, 0, 1);
        b.python_node(2, 1, 2);
        b.python_node(3, 2, 3);
        // Without a symbolizer the Python frames sit outside the native ones:
        // main -> work -> libpython (eval) -> ext -> libpython (the allocator).
        b.native_node(4, 3, 0x7f0000001100);
        b.native_node(5, 4, 0x7e0000001200);
        b.native_node(6, 5, 0x7f0000001300);
        b.time(1000);
        b.thread(2);
        b.alloc(Allocator::PymallocMalloc, 0x1000, 1000, 6);
        b.alloc(Allocator::Malloc, 0x2000, 500, 3);
        b.finish(2000);
    }
    Loaded l(path);
    report::StackResolver res(l.reader);
    report::Stats st = report::compute_stats(l.reader, l.tracker, res, 5);
    REQUIRE(st.top_by_size.size() == 1);
    CHECK(st.top_by_size[0].first == "work:/src/app.py:10");
    CHECK(st.top_by_size[0].second == 1500);
    CHECK(st.metadata.main_thread_id == 2);  // the capture's number of the thread whose id is the pid

    format::Reader r(path);
    report::Snapshot snap = report::build_snapshot(r, {});
    report::StackResolver res2(r);
    std::string tree = report::render_tree(snap, res2, {});
    CAPTURE(tree);
    CHECK(tree.find("libpython") == std::string::npos);
    CHECK(tree.find("ext.cpython-311-x86_64-linux-gnu.so+0x1200") != std::string::npos);
    // Hidden frames do not hide memory: the ext frame under work holds the 1000 bytes.
    CHECK(tree.find("1.000kB (66.67 %) 1  ext.cpython") != std::string::npos);
    std::remove(path.c_str());
}

TEST_CASE("summary of a python capture: own and total memory at the peak") {
    std::string path = temp_path("summary.bin");
    write_python_capture(path);
    Loaded l(path);
    report::StackResolver res(l.reader);
    report::Summary s = report::compute_summary(l.tracker, res);
    const uint64_t mib = 1 << 20;
    CHECK(s.snapshot_bytes == 7 * mib + 4096);
    CHECK(s.snapshot_count == 8);
    REQUIRE(s.rows.size() == 3);
    std::string table = report::render_summary(s, 1, 10, {});
    CHECK(table ==
          "┏━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━┓\n"
          "┃ Location             ┃ <Total Memory> ┃ Total Memory % ┃ Own Memory ┃ Own Memory % ┃ Allocation Count ┃\n"
          "┡━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━┩\n"
          "│ outer at /src/app.py │        7.344MB │        100.00% │    4.096kB │        0.06% │                8 │\n"
          "│ main at /src/app.py  │        7.344MB │        100.00% │     0.000B │        0.00% │                8 │\n"
          "│ inner at /src/app.py │        7.340MB │         99.94% │    7.340MB │       99.94% │                7 │\n"
          "└──────────────────────┴────────────────┴────────────────┴────────────┴──────────────┴──────────────────┘\n");
    // Sorted by own memory, two rows.
    std::string by_own = report::render_summary(s, 3, 2, {});
    CHECK(by_own.find("<Own Memory>") != std::string::npos);
    CHECK(by_own.find("inner at") < by_own.find("outer at"));
    CHECK(by_own.find("main at") == std::string::npos);
    // A narrow terminal wraps headers and locations, never numbers.
    report::TableStyle narrow;
    narrow.width = 80;
    std::string wrapped = report::render_summary(s, 1, 10, narrow);
    CHECK(wrapped.find("7.344MB") != std::string::npos);
    CHECK(wrapped.find("100.00%") != std::string::npos);
    std::remove(path.c_str());
}

TEST_CASE("summary: a function twice in one stack counts once (a -> b -> a)") {
    // Before the fix the per-stack "seen" list held pointers into the rows, which moved when a
    // new row was added, and `a` came out at 200 %.
    std::string path = temp_path("recursive.bin");
    {
        CaptureBuilder b(path, python_header());
        b.thread_info(1, 1000, "MainThread");
        b.code(1, "a", "/src/rec.py", 1);
        b.code(2, "b", "/src/rec.py", 10);
        b.python_node(1, 0, 1);
        b.python_node(2, 1, 2);
        b.python_node(3, 2, 1);  // a -> b -> a
        b.time(1000);
        b.thread(1);
        b.alloc(Allocator::Malloc, 0x1000, 1000, 3);
        b.finish(2000);
    }
    Loaded l(path);
    report::StackResolver res(l.reader);
    report::Summary s = report::compute_summary(l.tracker, res);
    REQUIRE(s.rows.size() == 2);
    CHECK(s.snapshot_bytes == 1000);
    for (const report::SummaryRow& r : s.rows) {
        CAPTURE(r.function);
        CHECK(r.total_memory == 1000);
        CHECK(r.n_allocations == 1);
        CHECK(r.own_memory == (r.function == "a" ? 1000 : 0));
    }
    std::string table = report::render_summary(s, 1, 10, {});
    CHECK(table.find("200.00%") == std::string::npos);
    CHECK(table.find("100.00%") != std::string::npos);
    std::remove(path.c_str());
}

TEST_CASE("a capture cut short (no trailer) still reports what it holds") {
    std::string path = temp_path("cut.bin");
    write_python_capture(path, false);
    Loaded l(path);
    CHECK(l.reader.truncated());
    CHECK(l.tracker.allocations() == 10);
    CHECK(l.tracker.peak() == 7 * (1 << 20) + 4096);
    std::remove(path.c_str());
}

TEST_CASE("FlatMap keeps its entries through many growths, erases and lookups") {
    // 300k entries: the table grows 15 times and ends at 8 MiB.
    report::FlatMap<uint64_t> m;
    const uint64_t n = 300000;
    for (uint64_t i = 1; i <= n; ++i) CHECK(m.insert(0x7f0000000000ull + i * 48, i));
    CHECK(m.capacity() * 16 >= (size_t(2) << 20));
    CHECK(m.size() == n);
    uint64_t bad = 0;
    for (uint64_t i = 1; i <= n; ++i) {
        uint64_t* v = m.find(0x7f0000000000ull + i * 48);
        if (v == nullptr || *v != i) ++bad;
    }
    CHECK(bad == 0);
    for (uint64_t i = 1; i <= n; i += 3) CHECK(m.erase(0x7f0000000000ull + i * 48));
    CHECK(m.find(0x7f0000000000ull + 48) == nullptr);
    CHECK(*m.find(0x7f0000000000ull + 96) == 2);
}

TEST_CASE("blocks of 4 GiB and more keep their exact size") {
    std::string path = temp_path("big.bin");
    const uint64_t big = (uint64_t(5) << 30) + 3;
    {
        CaptureBuilder b(path, python_header());
        b.code(1, "f", "/a.py", 1);
        b.python_node(1, 0, 1);
        b.python_node(2, 0, 1);
        b.time(1000);
        b.alloc(Allocator::Malloc, 0x1000, big, 1);
        b.alloc(Allocator::Malloc, 0x2000, 0xffffffffull, 2);  // exactly the marker value
        b.alloc(Allocator::Malloc, 0x3000, 10, 2);
        b.dealloc(Allocator::Free, 0x2000);
        b.alloc(Allocator::Malloc, 0x3000, big, 2);  // reused address: the 10 bytes are gone
        b.alloc(Allocator::Malloc, 0x3000, 20, 1);   // and again: the big block is gone
        b.dealloc(Allocator::Free, 0x1000);
        b.finish(2000);
    }
    Loaded l(path);
    CHECK(l.tracker.peak() == 2 * big);
    CHECK(l.tracker.heap() == 20);
    CHECK(l.tracker.total(1).bytes == big + 20);
    CHECK(l.tracker.total(2).bytes == big + 0xffffffffull + 10);
    CHECK(l.tracker.at_end(1).bytes == 20);
    CHECK(l.tracker.at_end(2).bytes == 0);
    CHECK(l.tracker.at_peak(1).bytes == big);
    CHECK(l.tracker.at_peak(2).bytes == big);
    std::remove(path.c_str());
}

namespace {

// Compares everything a tracker exposes.
void check_same_tracker(const report::AllocationTracker& a, const report::AllocationTracker& b) {
    CHECK(a.allocations() == b.allocations());
    CHECK(a.deallocations() == b.deallocations());
    CHECK(a.total_bytes() == b.total_bytes());
    CHECK(a.heap() == b.heap());
    CHECK(a.peak() == b.peak());
    CHECK(a.peak_time_us() == b.peak_time_us());
    CHECK(a.live_allocations() == b.live_allocations());
    CHECK(a.count_by_allocator() == b.count_by_allocator());
    CHECK(a.count_by_size() == b.count_by_size());
    REQUIRE(a.node_count() == b.node_count());
    size_t differ = 0;
    for (uint32_t id = 0; id < a.node_count(); ++id) {
        auto same = [](report::Amount x, report::Amount y) {
            return x.count == y.count && x.bytes == y.bytes;
        };
        if (!same(a.total(id), b.total(id)) || !same(a.at_peak(id), b.at_peak(id)) ||
            !same(a.at_end(id), b.at_end(id)))
            ++differ;
    }
    CHECK(differ == 0);
}

}  // namespace

TEST_CASE("batched, prefetched and two-thread reading give the event-by-event results") {
    // Several blocks; every record kind between events (time, thread switches, samples, new
    // nodes) breaks the batches up. (Two threads are forced: Auto keeps small files on one.)
    std::string path = temp_path("batches.bin");
    {
        CaptureBuilder b(path, python_header());
        b.code(1, "f", "/a.py", 1);
        for (uint32_t n = 1; n <= 64; ++n) b.python_node(n, n > 1 ? n - 1 : 0, 1, n);
        uint64_t x = 88172645463325252ull;
        std::vector<uint64_t> live;
        uint32_t next_node = 65;
        for (uint64_t i = 0; i < 400000; ++i) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            if (i % 1000 == 0) b.time(i * 3);
            if (i % 97 == 0) b.thread(uint32_t(x % 4) + 1);
            if (i % 5003 == 0) b.sample(i * 3, i);
            if (i % 20011 == 0 && next_node < 100) {
                b.python_node(next_node, 1, 1, next_node);
                ++next_node;
            }
            if (i % 131071 == 0) b.flush_block();
            if (!live.empty() && x % 100 < 48) {
                size_t k = size_t(x >> 20) % live.size();
                b.dealloc((x >> 8) % 5 ? Allocator::Free : Allocator::PymallocFree, live[k]);
                live[k] = live.back();
                live.pop_back();
            } else if (x % 100 < 50) {
                uint64_t addr = 0x10000000 + (x >> 24) % 65536 * 4096;
                b.alloc(Allocator::Mmap, addr, 4096 * (1 + x % 3), uint32_t(x >> 40) % 64 + 1);
                b.dealloc(Allocator::Munmap, addr + 4096, 4096);
            } else {
                uint64_t addr = 0x7f0000000000ull + (x >> 16) % 1000000 * 32;
                Allocator kinds[] = {Allocator::Malloc, Allocator::Calloc, Allocator::Realloc,
                                     Allocator::PymallocMalloc};
                b.alloc(kinds[(x >> 4) % 4], addr, (x >> 30) % 9000 + ((x >> 50) % 50 == 0 ? 5000000 : 0),
                        uint32_t(x >> 40) % (next_node - 1) + 1);
                live.push_back(addr);
            }
        }
        b.finish(1300000);
    }
    format::Reader r1(path);
    report::AllocationTracker one_by_one;
    uint64_t events = 0;
    for (auto item = r1.next(); item != format::Reader::Item::End; item = r1.next()) {
        if (item == format::Reader::Item::Event) {
            one_by_one.on_event(r1.event());
            ++events;
        }
    }
    for (auto mode : {report::TrackThreads::One, report::TrackThreads::Two,
                      report::TrackThreads::Auto}) {
        format::Reader r2(path);
        report::AllocationTracker batched;
        CHECK(report::track_capture(r2, batched, mode) == events);
        check_same_tracker(one_by_one, batched);
        CHECK(r2.nodes().size() == r1.nodes().size());
        CHECK(r2.trailer().has_value());
    }
    std::remove(path.c_str());
}
