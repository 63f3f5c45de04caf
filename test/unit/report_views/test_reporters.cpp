// The tree and transform reporters, default output names and the progress bar.
#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "capture_builder.hpp"
#include "format/reader.hpp"
#include "report/output_path.hpp"
#include "report/progress.hpp"
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"
#include "report/transform.hpp"
#include "report/tree_report.hpp"

using namespace memray;
using format::Allocator;
using memray::testing::CaptureBuilder;

namespace {

std::string temp_file(const char* name) {
    return std::string(P_tmpdir) + "/memray-reporters-test-" + std::to_string(getpid()) + "-" +
           name;
}

format::HeaderFields header() {
    format::HeaderFields h;
    h.pid = 5;
    h.start_time_unix_ms = 1700000000000ull;
    h.command_line = "python3 a,b.py";
    h.python_version = "3.11.7";
    h.executable = "/usr/bin/python3";
    return h;
}

size_t count_of(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE("default output names as memray's") {
    using report::default_output_path;
    CHECK(default_output_path("dir/memray-app.123.bin", "csv", ".csv") ==
          "dir/memray-csv-app.123.csv");
    CHECK(default_output_path("cap.bin", "speedscope", ".speedscope.json") ==
          "memray-speedscope-cap.speedscope.json");
    CHECK(default_output_path("/x/capture", "flamegraph", ".html") ==
          "/x/memray-flamegraph-capture.html");
    CHECK(default_output_path("/x/.hidden", "pprof", ".pb.gz") == "/x/memray-pprof-.hidden.pb.gz");
    std::string path = temp_file("exists");
    report::write_output_file(path, "x");
    CHECK_THROWS_AS(report::check_output_path(path, false), report::OutputExists);
    CHECK_NOTHROW(report::check_output_path(path, true));
    std::remove(path.c_str());
    CHECK_NOTHROW(report::check_output_path(path, false));
}

TEST_CASE("tree: biggest paths, merged siblings, elided chains; csv quoting and frames") {
    std::string path = temp_file("tree.bin");
    {
        CaptureBuilder b(path, header());
        b.thread_info(1, 10, "Main, Thread");
        // A 20-frame chain deep0 -> deep1 -> ... -> deep19 with one allocation at its end, and
        // two leaves under "top".
        char name[32];
        for (uint32_t i = 0; i < 20; ++i) {
            std::snprintf(name, sizeof name, "deep%u", i);
            b.code(i + 1, name, "/d.py", 100 + i);
            b.python_node(i + 1, i, i + 1);
        }
        b.code(30, "top", "/t.py", 1);
        b.code(31, "left", "/t.py", 10);
        b.code(32, "right \"q\"", "/t.py", 20);
        b.python_node(30, 0, 30);
        b.python_node(31, 30, 31);
        b.python_node(32, 30, 32);
        b.time(1);
        b.thread(1);
        b.alloc(Allocator::Malloc, 0x10, 5000, 20);
        b.alloc(Allocator::Malloc, 0x20, 3000, 31);
        b.alloc(Allocator::Calloc, 0x30, 1000, 31);
        b.alloc(Allocator::Malloc, 0x40, 10, 32);
        b.finish(2);
    }
    format::Reader reader(path);
    report::Snapshot s = report::build_snapshot(reader, {});
    report::StackResolver resolver(reader);

    std::string tree = report::render_tree(s, resolver, {});
    INFO(tree);
    CHECK(tree.find("📂 9.010kB (100.00 %) 4 allocations\n") != std::string::npos);
    // Chain: 3 first frames, an elision line, 3 last frames.
    CHECK(tree.find("⋮   14 more frames") != std::string::npos);
    CHECK(count_of(tree, "deep") == 6);
    CHECK(tree.find("📄 5.000kB (55.49 %) 1  deep19  /d.py:119") != std::string::npos);
    // left's two allocators merge into one node; children of "top" are sorted by size.
    CHECK(tree.find("📂 4.010kB (44.51 %) 3  top  /t.py:1") != std::string::npos);
    CHECK(tree.find("4.000kB (44.40 %) 2  left") < tree.find("10.000B (0.11 %) 1  right \"q\""));
    CHECK(tree.find("4.000kB (44.40 %) 2  left") != std::string::npos);
    CHECK(tree.find("\x1b[") == std::string::npos);  // no colours unless asked

    report::TreeOptions two;
    two.biggest = 1;
    std::string small = report::render_tree(s, resolver, two);
    CHECK(small.find("(the 1 biggest of 3 locations)") != std::string::npos);
    CHECK(small.find("2 smaller locations not shown: 4.010kB in 3 allocations") !=
          std::string::npos);
    CHECK(small.find("top") == std::string::npos);
    report::TreeOptions color;
    color.color = true;
    CHECK(report::render_tree(s, resolver, color).find("\x1b[") != std::string::npos);

    std::string csv = report::render_transform(report::TransformFormat::Csv, s, resolver,
                                               reader.header());
    CHECK(csv.rfind("allocator,num_allocations,size,tid,thread_name,stack_trace\r\n", 0) == 0);
    CHECK(csv.find("MALLOC,1,3000,-1,merged thread,left;/t.py;10|top;/t.py;1\r\n") !=
          std::string::npos);
    CHECK(csv.find("CALLOC,1,1000,-1,merged thread,left;/t.py;10|top;/t.py;1\r\n") !=
          std::string::npos);
    CHECK(csv.find("MALLOC,1,10,-1,merged thread,\"right \"\"q\"\";/t.py;20|top;/t.py;1\"\r\n") !=
          std::string::npos);
    report::TransformOptions split;
    split.split_threads = true;
    std::string csv_split = report::render_transform(report::TransformFormat::Csv, s, resolver,
                                                     reader.header(), split);
    CHECK(csv_split.find("MALLOC,1,3000,1,\"0x1 (Main, Thread)\",left;") != std::string::npos);

    std::string speedscope = report::render_transform(report::TransformFormat::Speedscope, s,
                                                      resolver, reader.header());
    CHECK(speedscope.find("\"name\": \"python3 a,b.py\"") != std::string::npos);
    CHECK(speedscope.find("{\"name\": \"right \\\"q\\\"\", \"file\": \"/t.py\", \"line\": 20}") !=
          std::string::npos);
    CHECK(speedscope.find("\"unit\": \"bytes\", \"startValue\": 0, \"endValue\": 9010") !=
          std::string::npos);
    CHECK(speedscope.find("\"unit\": \"none\", \"startValue\": 0, \"endValue\": 4") !=
          std::string::npos);
    std::string gprof = report::render_transform(report::TransformFormat::Gprof2dot, s, resolver,
                                                 reader.header());
    CHECK(gprof.find("\"costs\": [{\"description\": \"Memory\", \"unit\": \"bytes\"}]") !=
          std::string::npos);
    CHECK(gprof.find("{\"callchain\": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, "
                     "17, 18, 19], \"cost\": [5000]}") != std::string::npos);
    std::string pprof = report::render_transform(report::TransformFormat::Pprof, s, resolver,
                                                 reader.header());
    CHECK(pprof.substr(0, 2) == "\x1f\x8b");
    std::remove(path.c_str());
}

TEST_CASE("progress bar: quiet for quick work, drawn then erased for slow work") {
    char* buf = nullptr;
    size_t len = 0;
    std::FILE* out = open_memstream(&buf, &len);
    {
        report::ProgressBar quick("Reading q", out, true, std::chrono::milliseconds(10000));
        quick.update(50, 100);
    }
    std::fflush(out);
    CHECK(len == 0);
    {
        report::ProgressBar slow("Reading s", out, true, std::chrono::milliseconds(0));
        slow.update(50, 100);
        slow.update(100, 100);
        slow.finish();
    }
    std::fflush(out);
    std::string text(buf, len);
    CHECK(text.find("Reading s") != std::string::npos);
    CHECK(text.find("100%") != std::string::npos);
    CHECK(text.substr(text.size() - 5) == "\r\x1b[2K");  // erased at the end
    {
        report::ProgressBar off("Reading o", out, false, std::chrono::milliseconds(0));
        off.update(1, 2);
    }
    std::fflush(out);
    CHECK(std::string(buf, len) == text);
    std::fclose(out);
    std::free(buf);
}
