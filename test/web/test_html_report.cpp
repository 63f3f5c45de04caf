// The HTML reports' data builder (src/report/html_report.cpp) on hand-made snapshots over a
// small synthetic capture: escaping, the frame rule, merging of small nodes, temporal data.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <numeric>
#include <string>

#include "capture_builder.hpp"
#include "report/html_report.hpp"

using namespace memray;
using format::Allocator;
using report::FlameTree;
using report::Frame;

namespace {

constexpr const char* k_hostile = "<img src=x onerror=alert(1)>";

// Nodes: 1 <memray> bootstrap, 2 main, 3 big (under main), 4 hostile (under main),
// 5 many (under main), 100.. 100+k_tiny-1 tiny_i (under many), 99 importlib (under main).
constexpr uint32_t k_tiny = 1000;

struct Capture {
    std::string path;
    std::unique_ptr<format::Reader> reader;
    std::unique_ptr<report::StackResolver> resolver;
    Capture() {
        path = std::string(P_tmpdir) + "/memray-html-test-" + std::to_string(getpid()) + ".bin";
        format::HeaderFields h;
        h.pid = 7;
        h.command_line = "python3 <img src=x onerror=alert(1)>";
        h.python_version = "3.11.7";
        h.executable = "/usr/bin/python3";
        {
            testing::CaptureBuilder b(path, h);
            b.thread_info(1, 100, "MainThread");
            b.thread_info(2, 101, "w\xe2\x80\xa8</script>");
            b.code(1, "<module>", "<memray>", 1);
            b.code(2, "main", "/app/main.py", 1);
            b.code(3, "big", "/app/main.py", 10);
            b.code(4, k_hostile, k_hostile, 1);
            b.code(5, "many", "/app/main.py", 20);
            b.code(6, "_find_and_load", "<frozen importlib._bootstrap>", 1);
            for (uint32_t i = 0; i < k_tiny; ++i)  // invalid UTF-8 in the file name
                b.code(100 + i, ("tiny_" + std::to_string(i)).c_str(), "/app/t\xff.py", i + 1);
            b.python_node(1, 0, 1);
            b.python_node(2, 1, 2);
            b.python_node(3, 2, 3);
            b.python_node(4, 2, 4);
            b.python_node(5, 2, 5);
            b.python_node(99, 2, 6);
            for (uint32_t i = 0; i < k_tiny; ++i) b.python_node(100 + i, 5, 100 + i);
            b.time(1000);
            b.sample(1000, 1 << 20);
            b.finish(2000);
        }
        reader = std::make_unique<format::Reader>(path);
        while (reader->next() != format::Reader::Item::End) {
        }
        resolver = std::make_unique<report::StackResolver>(*reader);
    }
    ~Capture() { std::remove(path.c_str()); }
};

report::LocationAmount loc(uint32_t node, uint32_t thread, uint64_t bytes, uint64_t count = 1) {
    report::LocationAmount l;
    l.node = node;
    l.thread = thread;
    l.allocator = Allocator::Malloc;
    l.bytes = bytes;
    l.count = count;
    return l;
}

report::Snapshot snapshot() {
    report::Snapshot s;
    s.threads = {{100, "MainThread"}, {101, "w"}};
    s.locations.push_back(loc(3, 0, 1'000'000));
    s.locations.push_back(loc(3, 1, 500'000));
    s.locations.push_back(loc(4, 0, 200'000));
    s.locations.push_back(loc(99, 0, 100'000));
    for (uint32_t i = 0; i < k_tiny; ++i) s.locations.push_back(loc(100 + i, 0, 10));
    return s;
}

// Frames of a tree node, outermost first.
std::vector<std::string> path_of(const FlameTree& t, uint32_t node) {
    std::vector<std::string> out;
    for (uint32_t x = node; x != 0; x = t.parent[x]) out.insert(out.begin(), t.frames[t.frame[x]].function);
    return out;
}

uint64_t bytes_of(const FlameTree& t) {
    uint64_t sum = 0;
    for (const auto& l : t.locs) sum += l.bytes;
    return sum;
}

std::string data_of(const std::string& html) {
    auto start = html.find("id=\"memray-data\">");
    REQUIRE(start != std::string::npos);
    start += 17;
    auto end = html.find("</script>", start);
    REQUIRE(end != std::string::npos);
    return html.substr(start, end - start);
}

}  // namespace

TEST_CASE("JSON strings are safe inside a script element") {
    std::string out;
    report::append_json_string(out, std::string(k_hostile) + "</script>&\xe2\x80\xa8\xe2\x80\xa9\x01\"\\\xff");
    CHECK(out == "\"\\u003cimg src=x onerror=alert(1)\\u003e\\u003c/script\\u003e\\u0026"
                 "\\u2028\\u2029\\u0001\\\"\\\\\\ufffd\"");
    out.clear();
    report::append_json_string(out, "caf\xc3\xa9 \xf0\x9f\x94\xa5");  // valid UTF-8 passes through
    CHECK(out == "\"caf\xc3\xa9 \xf0\x9f\x94\xa5\"");
    CHECK(report::html_escape("<a href='x'>&\"") == "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
}

TEST_CASE("frame rule: irrelevant and import system frames") {
    CHECK(report::frame_flags({"_find_and_load", "<frozen importlib._bootstrap>", 1, false}) ==
          report::k_frame_import);
    CHECK(report::frame_flags({"exec_module", "/usr/lib/python3.11/importlib/_bootstrap_external.py",
                               1, false}) == report::k_frame_import);
    CHECK(report::frame_flags({"_run_module_as_main", "<frozen runpy>", 1, false}) ==
          report::k_frame_irrelevant);
    CHECK(report::frame_flags({"main", "/app/main.py", 1, false}) == 0);
    CHECK(report::frame_flags({"_PyEval_EvalFrameDefault", "/usr/lib/libpython3.11.so", 0, true}) ==
          (report::k_frame_native | report::k_frame_irrelevant));
    CHECK(report::frame_flags({"libpython3.11.so.1.0+0x1234", "/usr/lib/libpython3.11.so.1.0", 0,
                               true}) == (report::k_frame_native | report::k_frame_irrelevant));
    CHECK(report::frame_flags({"python3.11+0x99", "/usr/bin/python3.11", 0, true}) ==
          (report::k_frame_native | report::k_frame_irrelevant));
    CHECK(report::frame_flags({"libfoo.so+0x10", "/usr/lib/libfoo.so", 0, true}) ==
          report::k_frame_native);
    CHECK(report::frame_flags({"Pyramid", "/usr/lib/libfoo.so", 0, true}) == report::k_frame_native);
    // Symbolised frames: the source file is shown, the object decides.
    CHECK(report::frame_flags({"cfunction_call", "Objects/methodobject.c", 548, true,
                               "/usr/lib/libpython3.12.so.1.0"}) ==
          (report::k_frame_native | report::k_frame_irrelevant));
    CHECK(report::frame_flags({"main", "./Programs/python.c", 15, true, "/usr/bin/python3.11"}) ==
          (report::k_frame_native | report::k_frame_irrelevant));
    CHECK(report::frame_flags({"hybrid_alloc", "/src/hybrid_ext.c", 26, true,
                               "/tmp/build/hybrid_ext.cpython-312-x86_64-linux-gnu.so"}) ==
          report::k_frame_native);
}

TEST_CASE("call tree: stacks as the resolver gives them, small nodes merged into <other>") {
    Capture c;
    report::Snapshot s = snapshot();
    report::HtmlOptions o;
    o.merge_share = 0.001;  // 1.8 kB of 1.81 MB: each 10-byte tiny stack is below it
    FlameTree t = report::build_flame_tree(s, *c.resolver, *c.reader, o);

    // Totals are kept exactly: merging moves bytes, never drops them.
    CHECK(bytes_of(t) == 1'000'000 + 500'000 + 200'000 + 100'000 + 10 * k_tiny);
    CHECK(t.merged_nodes == k_tiny);
    CHECK(t.full_nodes == 6 + k_tiny);  // root, main, big, hostile, many, importlib, tiny_i
    // The bootstrap frame is dropped, as StackResolver::stack() does.
    std::map<std::vector<std::string>, uint64_t> by_path;
    for (const auto& l : t.locs) by_path[path_of(t, l.node)] += l.bytes;
    CHECK(by_path[{"main", "big"}] == 1'500'000);
    CHECK(by_path[{"main", k_hostile}] == 200'000);
    CHECK(by_path[{"main", "_find_and_load"}] == 100'000);
    CHECK(by_path[{"main", "many", "<other>"}] == 10 * k_tiny);
    CHECK(t.parent.size() == 7);  // root main big hostile many importlib <other>
    // Threads stay apart.
    size_t big_locs = 0;
    for (const auto& l : t.locs) big_locs += path_of(t, l.node) == std::vector<std::string>{"main", "big"};
    CHECK(big_locs == 2);
    // Flags travel with the frames.
    for (size_t f = 0; f < t.frames.size(); ++f)
        CHECK(t.flags[f] == report::frame_flags(t.frames[f]));

    SUBCASE("without merging every tiny stack is its own node") {
        o.merge_share = 0;
        FlameTree full = report::build_flame_tree(s, *c.resolver, *c.reader, o);
        CHECK(full.merged_nodes == 0);
        CHECK(full.parent.size() == 6 + k_tiny);
        CHECK(bytes_of(full) == bytes_of(t));
    }
    SUBCASE("the node budget caps the tree whatever the share") {
        o.merge_share = 0;
        o.max_nodes = 4;
        FlameTree capped = report::build_flame_tree(s, *c.resolver, *c.reader, o);
        CHECK(capped.parent.size() <= 4 + 1 + 3);  // kept + root + "<other>" nodes
        CHECK(bytes_of(capped) == bytes_of(t));
    }
}

TEST_CASE("temporal: intervals follow merged locations, coarsened when too many") {
    Capture c;
    report::Snapshot s = snapshot();
    s.kind = report::SnapshotKind::Leaks;
    for (uint32_t i = 0; i < 64; ++i) s.memory.push_back({i * 10'000ull, 1u << 20, 0});
    // big: allocated in interval 3, freed in 5; hostile: in 3, never freed; every tiny stack:
    // in interval i % 64, freed in 63.
    s.intervals.push_back({0, 3, 5, 2, 1'000'000});
    s.intervals.push_back({2, 3, report::IntervalAmount::k_never, 1, 200'000});
    for (uint32_t i = 0; i < k_tiny; ++i) s.intervals.push_back({4 + i, i % 64, 63, 1, 10});
    report::HtmlOptions o;
    o.merge_share = 0.001;
    FlameTree t = report::build_flame_tree(s, *c.resolver, *c.reader, o);
    CHECK(t.interval_group == 1);
    // The tiny stacks share one "<other>" location: their intervals merge by (allocated, freed).
    CHECK(t.intervals.size() == 2 + 64);
    uint64_t sum = 0;
    for (const auto& iv : t.intervals) sum += iv.bytes;
    CHECK(sum == 1'000'000 + 200'000 + 10 * k_tiny);
    for (const auto& iv : t.intervals) {
        auto p = path_of(t, t.locs[iv.loc].node);
        if (p == std::vector<std::string>{"main", "big"}) {
            CHECK((iv.allocated_in == 3 && iv.freed_in == 5 && iv.bytes == 1'000'000));
        } else if (p.back() == "<other>") {
            CHECK(iv.freed_in == 63);
        }
    }

    SUBCASE("coarsening keeps every byte and groups intervals by a power of two") {
        o.max_interval_entries = 20;
        FlameTree small = report::build_flame_tree(s, *c.resolver, *c.reader, o);
        CHECK(small.interval_group == 4);  // 2 + 64/4 = 18 entries
        CHECK(small.intervals.size() <= 20);
        uint64_t sum2 = 0;
        for (const auto& iv : small.intervals) sum2 += iv.bytes;
        CHECK(sum2 == sum);
    }
}

TEST_CASE("temporal high-water mark: a coarsened interval shows its highest part's shares") {
    Capture c;
    report::Snapshot s = snapshot();  // the high-water-mark view
    for (uint32_t i = 0; i < 8; ++i) s.memory.push_back({i * 10'000ull, 1u << 20, 0});
    s.interval_peaks = {1, 5, 3, 3, 2, 9, 9, 4};
    const uint32_t never = report::IntervalAmount::k_never;
    s.intervals.push_back({0, 0, never, 1, 100});  // big: in every interval's peak
    s.intervals.push_back({2, 1, 2, 1, 50});       // hostile: interval 1's peak only
    s.intervals.push_back({3, 5, 6, 1, 70});       // importlib: interval 5's only
    s.intervals.push_back({4, 6, 7, 1, 80});       // tiny_0: interval 6's only
    report::HtmlOptions o;
    FlameTree t = report::build_flame_tree(s, *c.resolver, *c.reader, o);
    CHECK(t.interval_group == 1);
    CHECK(t.interval_peaks == s.interval_peaks);
    CHECK(t.intervals.size() == 4);

    // Pairs: peaks 5, 3 (the latest of 3, 3), 9 (5 of 5, 6), 9 (6). Then fours: 5, 9 from
    // interval 6, the latest of the two 9s: importlib's share (interval 5 only) is not shown.
    o.max_interval_entries = 3;
    FlameTree small = report::build_flame_tree(s, *c.resolver, *c.reader, o);
    CHECK(small.interval_group == 4);
    CHECK(small.interval_peaks == std::vector<uint64_t>{5, 9});
    std::map<std::string, std::pair<uint32_t, uint32_t>> runs;
    for (const auto& iv : small.intervals)
        runs[path_of(small, small.locs[iv.loc].node).back()] = {iv.allocated_in, iv.freed_in};
    std::map<std::string, std::pair<uint32_t, uint32_t>> expected = {
        {"big", {0, never}}, {k_hostile, {0, 1}}, {"tiny_0", {1, 2}}};
    CHECK(runs == expected);
}

TEST_CASE("the page: capture strings only as escaped JSON, assets inline") {
    Capture c;
    report::Snapshot s = snapshot();
    report::HtmlOptions o;
    o.capture_path = std::string("/tmp/") + k_hostile + ".bin";
    std::string html = report::render_flamegraph_html(s, *c.resolver, *c.reader, o);
    std::string data = data_of(html);
    CHECK(data.find('<') == std::string::npos);
    CHECK(data.find('>') == std::string::npos);
    CHECK(data.find("\xe2\x80\xa8") == std::string::npos);
    CHECK(html.find(k_hostile) == std::string::npos);
    CHECK(html.find("&lt;img src=x onerror=alert(1)&gt;") != std::string::npos);  // the <title>
    CHECK(data.find("\"nodes\":[") != std::string::npos);
    CHECK(html.find("<script src") == std::string::npos);
    CHECK(html.find("d3-flame-graph") != std::string::npos);  // the bundle is inline

    std::string table = report::render_table_html(s, *c.resolver, *c.reader, o);
    std::string tdata = data_of(table);
    CHECK(tdata.find('<') == std::string::npos);
    CHECK(table.find(k_hostile) == std::string::npos);
}
