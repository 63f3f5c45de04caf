#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
// The interactive tree's model (src/tui/tree_model.hpp) without a terminal: the first screen,
// the keys, the filters and the detail pane, on call stacks with a known shape.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "report/frame_rule.hpp"
#include "report/tree_report.hpp"
#include "tui/tree_model.hpp"

using namespace memray;
using report::Frame;
using tui::TreeModel;

namespace {

std::string temp_source() {
    std::string path =
        std::string(P_tmpdir) + "/memray-tree-model-" + std::to_string(getpid()) + "-a.py";
    std::ofstream out(path);
    for (int i = 1; i <= 20; ++i) out << "line_" << i << " = " << i << "   \n";
    return path;
}

report::TreeStack stack(std::vector<Frame> frames, uint64_t bytes, uint64_t count,
                        uint32_t thread = 0) {
    report::TreeStack t;
    for (const Frame& f : frames) t.flags.push_back(report::frame_flags(f));
    t.frames = std::move(frames);
    t.bytes = bytes;
    t.count = count;
    t.thread = thread;
    return t;
}

// <module> a.py:10 calls main:5 -> work -> alloc (1000 B), imports b.py whose load allocates
// (500 B), and main:7 calls a C extension through CPython's allocator (300 B, on a worker thread).
// Everything runs under runpy. Two smaller locations (200 B, 4 allocations) are left out.
report::TreeStacks sample(const std::string& a) {
    Frame runpy{"_run_module_as_main", "<frozen runpy>", 198};
    Frame module{"<module>", a, 10};
    Frame import{"_find_and_load", "<frozen importlib._bootstrap>", 1007};
    Frame py_malloc{"_PyObject_Malloc", "Objects/obmalloc.c", 100, true,
                    "/usr/lib/libpython3.11.so.1.0"};
    Frame ext{"my_alloc", "/src/ext.c", 20, true, "/src/ext.so"};
    report::TreeStacks s;
    s.stacks.push_back(
        stack({runpy, module, {"main", a, 5}, {"work", a, 2}, {"alloc", a, 1}}, 1000, 2));
    s.stacks.push_back(
        stack({runpy, module, import, {"<module>", "/b.py", 1}, {"load", "/b.py", 4}}, 500, 1));
    s.stacks.push_back(stack({runpy, module, {"main", a, 7}, py_malloc, ext}, 300, 3, 1));
    s.total_bytes = 2000;
    s.total_count = 10;
    s.locations = 5;
    s.threads = {{101, "MainThread"}, {102, "worker"}};
    s.title = "test";
    return s;
}

std::vector<std::string> functions(const TreeModel& m) {
    std::vector<std::string> out;
    for (const TreeModel::Row& r : m.rows()) {
        if (r.node == TreeModel::k_elided)
            out.push_back("<elided>");
        else if (r.node == 0)
            out.push_back("<root>");
        else
            out.push_back(m.nodes()[r.node].frame.function + ":" +
                          std::to_string(m.nodes()[r.node].frame.line));
    }
    return out;
}

size_t row_of(const TreeModel& m, const std::string& what) {
    std::vector<std::string> f = functions(m);
    for (size_t i = 0; i < f.size(); ++i)
        if (f[i] == what) return i;
    FAIL("no row " << what);
    return 0;
}

using Rows = std::vector<std::string>;

}  // namespace

TEST_CASE("tree model: the first screen is memray's: root selected, biggest chain open") {
    std::string a = temp_source();
    TreeModel m(sample(a), 3);
    CHECK(functions(m) == Rows{"<root>", "<module>:10", "main:5", "work:2", "alloc:1", "<module>:1",
                               "main:7", "<elided>"});
    CHECK(m.cursor() == 0);
    CHECK(!m.uninteresting_shown());
    CHECK(!m.import_system_hidden());
    // The root counts every location; the elided row the ones left out.
    CHECK(m.label(m.rows()[0]).text() == "2.000kB (100.00 %) 10 allocations");
    CHECK(m.details() == Rows{"Allocations: 10", "Size: 2.000kB"});
    CHECK(m.label(m.rows()[2]).text() == "1.000kB (50.00 %) 2  main  " + a + ":5");
    CHECK(m.label(m.rows().back()).text() ==
          "200.000B (10.00 %) 4 allocations from 2 locations below the threshold");
    // Guides: <module>:1 is not the last child of <module>:10, main:7 is; the elided row is the
    // root's last child.
    CHECK(m.rows()[5].guides == "│   ");
    CHECK(!m.rows()[5].last);
    CHECK(m.rows()[6].last);
    CHECK(!m.rows()[1].last);
    CHECK(m.rows()[7].last);
    CHECK(m.rows()[4].guides == "│   │       ");  // work:2 is the only child
    // The C extension's frame stays; CPython's allocator is hidden and its caller takes over.
    size_t main7 = m.rows()[6].node;
    REQUIRE(m.nodes()[main7].children.size() == 1);
    CHECK(m.nodes()[m.nodes()[main7].children[0]].frame.function == "my_alloc");
    std::remove(a.c_str());
}

TEST_CASE("tree model: moving, expanding and collapsing") {
    TreeModel m(sample("/nonexistent/a.py"), 3);
    m.move(-5);
    CHECK(m.cursor() == 0);
    m.move(100);
    CHECK(m.cursor() == m.rows().size() - 1);
    m.move_to(0);
    m.move(3);  // work:2, expanded
    CHECK(functions(m)[m.cursor()] == "work:2");
    m.left();  // collapses
    CHECK(functions(m) ==
          Rows{"<root>", "<module>:10", "main:5", "work:2", "<module>:1", "main:7", "<elided>"});
    CHECK(m.cursor() == 3);
    m.left();  // collapsed: to the parent
    CHECK(functions(m)[m.cursor()] == "main:5");
    m.move(1);
    m.right();  // expands
    CHECK(functions(m)[4] == "alloc:1");
    CHECK(m.cursor() == 3);
    m.right();  // expanded: to the first child
    CHECK(functions(m)[m.cursor()] == "alloc:1");
    m.right();  // a leaf: nothing
    m.toggle();
    CHECK(functions(m)[m.cursor()] == "alloc:1");
    m.move_to(0);
    m.toggle();  // the root closes
    CHECK(functions(m) == Rows{"<root>"});
    m.toggle();
    CHECK(functions(m).size() == 8);
    // Left on the elided row selects the root.
    m.move_to(7);
    m.left();
    CHECK(m.cursor() == 0);
}

TEST_CASE("tree model: e expands a chain of single children") {
    TreeModel m(sample("/a.py"), 3);
    m.move_to(row_of(m, "<module>:1"));
    CHECK(!m.expanded(m.rows()[m.cursor()].node));
    m.expand_linear_group();
    CHECK(functions(m) == Rows{"<root>", "<module>:10", "main:5", "work:2", "alloc:1", "<module>:1",
                               "load:4", "main:7", "<elided>"});
    // Stops at a node with several children, which it opens but not below.
    m.move_to(0);
    m.toggle();
    m.toggle();
    m.move_to(1);
    m.toggle();  // close <module>:10
    CHECK(functions(m) == Rows{"<root>", "<module>:10", "<elided>"});
    m.expand_linear_group();
    CHECK(functions(m) == Rows{"<root>", "<module>:10", "main:5", "work:2", "alloc:1", "<module>:1",
                               "load:4", "main:7", "<elided>"});
}

TEST_CASE("tree model: u shows uninteresting frames, i hides the import system with its callees") {
    TreeModel m(sample("/a.py"), 3);
    m.move(2);
    m.toggle_uninteresting();
    CHECK(m.uninteresting_shown());
    CHECK(m.cursor() == 0);  // starts over as on opening
    CHECK(functions(m) == Rows{"<root>", "_run_module_as_main:198", "<module>:10", "main:5",
                               "work:2", "alloc:1", "_find_and_load:1007", "main:7", "<elided>"});
    m.move_to(row_of(m, "main:7"));
    m.expand_linear_group();
    CHECK(functions(m) == Rows{"<root>", "_run_module_as_main:198", "<module>:10", "main:5",
                               "work:2", "alloc:1", "_find_and_load:1007", "main:7",
                               "_PyObject_Malloc:100", "my_alloc:20", "<elided>"});

    m.toggle_import_system();  // with uninteresting frames shown
    CHECK(m.import_system_hidden());
    CHECK(functions(m) == Rows{"<root>", "_run_module_as_main:198", "<module>:10", "main:5",
                               "work:2", "alloc:1", "main:7", "<elided>"});
    m.toggle_uninteresting();  // and hidden
    CHECK(functions(m) ==
          Rows{"<root>", "<module>:10", "main:5", "work:2", "alloc:1", "main:7", "<elided>"});
    // The callers still count what the hidden import allocated.
    CHECK(m.nodes()[m.rows()[1].node].bytes == 1800);
    m.toggle_import_system();
    CHECK(functions(m) == Rows{"<root>", "<module>:10", "main:5", "work:2", "alloc:1", "<module>:1",
                               "main:7", "<elided>"});
}

TEST_CASE("tree model: the detail pane") {
    std::string a = temp_source();
    TreeModel m(sample(a), 3);
    m.move_to(row_of(m, "main:5"));
    CHECK(m.details() == Rows{"Function: main", "Location: " + a + ":5", "Allocations: 2",
                              "Size: 1.000kB (50.00 %)", "Thread: MainThread (tid 101)"});
    // The source around the line, the line selected, trailing blanks gone.
    std::vector<TreeModel::SourceLine> src = m.source(4);
    REQUIRE(src.size() == 4);
    CHECK(src[0].line == 3);
    CHECK(src[2].line == 5);
    CHECK(src[2].text == "line_5 = 5");
    CHECK(src[2].selected);
    CHECK(!src[1].selected);
    m.move_to(row_of(m, "alloc:1"));
    src = m.source(6);
    REQUIRE(src.size() == 6);
    CHECK(src[0].line == 1);
    CHECK(src[0].selected);

    m.move_to(row_of(m, "main:7"));
    CHECK(m.details().back() == "Thread: worker (tid 102)");
    m.move_to(row_of(m, "<module>:10"));
    CHECK(m.details().back() == "Thread: several threads");
    m.move_to(row_of(m, "<module>:1"));
    CHECK(m.source(5).empty());  // /b.py does not exist

    m.move_to(row_of(m, "<elided>"));
    std::vector<std::string> d = m.details();
    REQUIRE(d.size() == 4);
    CHECK(d[0] == "Allocations: 4");
    CHECK(d[1] == "Size: 200.000B");
    CHECK(d[3].find("Only the 3 biggest allocation locations") == 0);
    CHECK(d[3].find("--biggest-allocs") != std::string::npos);
    CHECK(m.source(5).empty());
    m.move_to(0);
    CHECK(m.source(5).empty());
    std::remove(a.c_str());
}

TEST_CASE("tree model: an empty view and a view without left-out locations") {
    report::TreeStacks none;
    TreeModel empty(none, 200);
    CHECK(functions(empty) == Rows{"<root>"});
    empty.move(1);
    empty.left();
    empty.right();
    empty.expand_linear_group();
    CHECK(empty.cursor() == 0);
    CHECK(empty.details() == Rows{"Allocations: 0", "Size: 0.000B"});

    report::TreeStacks s = sample("/a.py");
    s.total_bytes = 1800;
    s.total_count = 6;
    s.locations = 3;
    TreeModel all(s, 200);
    CHECK(functions(all).back() == "main:7");
    CHECK(all.rows().back().last);
}
