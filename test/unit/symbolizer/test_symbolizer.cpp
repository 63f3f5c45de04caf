// Symbolizer against real binaries: the fixture (built with -g -O2 by meson) runs, prints its
// objects (path, load bias, build-id, as a capture holds them) and the return addresses recorded
// at its allocations; expected lines come from markers in the fixture's source.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "report/symbolizer.hpp"

using memray::format::ObjectInfo;
using memray::report::SourceFrame;
using memray::report::Symbolizer;
using memray::report::SymbolizerOptions;
namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    REQUIRE_MESSAGE(v != nullptr, name << " is not set (run through meson test)");
    return v;
}

std::string run(const std::string& command) {
    std::string out;
    FILE* p = popen(command.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    int status = pclose(p);
    REQUIRE_MESSAGE(status == 0, command << " failed: " << status);
    return out;
}

uint32_t marker_line(const std::string& file, const std::string& marker) {
    std::ifstream in(file);
    REQUIRE(in.good());
    std::string line;
    for (uint32_t n = 1; std::getline(in, line); ++n)
        if (line.find(marker) != std::string::npos) return n;
    FAIL("marker " << marker << " not in " << file);
    return 0;
}

std::string from_hex(const std::string& hex) {
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(char(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

std::string basename_of(const std::string& path) {
    return fs::path(path).filename().string();
}

struct Fixture {
    ObjectInfo exe;
    ObjectInfo lib;
    std::string exe_hex_id;
    uint64_t exe_return = 0;
    uint64_t lib_return = 0;
};

// Runs the fixture once per process and parses what it printed.
const Fixture& fixture() {
    static Fixture f = [] {
        Fixture out;
        std::istringstream in(run(env("SYMFIX_EXE")));
        std::string word;
        while (in >> word) {
            if (word == "object") {
                std::string path, bias, id;
                in >> path >> bias >> id;
                ObjectInfo o;
                o.path = path;
                o.load_bias = std::stoull(bias, nullptr, 16);
                o.build_id = id == "-" ? "" : from_hex(id);
                if (basename_of(path).find("libsymfix") == 0) {
                    out.lib = o;
                } else {
                    out.exe = o;
                    out.exe_hex_id = id;
                }
            } else if (word == "exe_return") {
                in >> word;
                out.exe_return = std::stoull(word, nullptr, 16);
            } else if (word == "lib_return") {
                in >> word;
                out.lib_return = std::stoull(word, nullptr, 16);
            }
        }
        REQUIRE(!out.exe.path.empty());
        REQUIRE(!out.lib.path.empty());
        REQUIRE(out.exe.build_id.size() >= 8);
        REQUIRE(out.exe_return > out.exe.load_bias);
        REQUIRE(out.lib_return > out.lib.load_bias);
        return out;
    }();
    return f;
}

struct TempDir {
    fs::path path;
    TempDir() {
        std::string templ = (fs::temp_directory_path() / "memray-sym-XXXXXX").string();
        REQUIRE(mkdtemp(templ.data()) != nullptr);
        path = templ;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string put(const std::string& from, const std::string& relative) const {
        fs::path to = path / relative;
        fs::create_directories(to.parent_path());
        fs::copy_file(from, to, fs::copy_options::overwrite_existing);
        return to.string();
    }
};

std::string joined(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
}

// The fixture's inlined allocation: make_buffer at ALLOC_HERE, inlined into outer_alloc at
// CALL_HERE.
void check_exe_frames(const std::vector<SourceFrame>& frames) {
    const std::string source = env("SYMFIX_SOURCE");
    REQUIRE(frames.size() >= 2);
    CHECK(frames[0].function == "make_buffer");
    CHECK(basename_of(frames[0].file) == "sym_fixture.c");
    CHECK(frames[0].line == marker_line(source, "/* ALLOC_HERE */"));
    CHECK(frames[1].function == "outer_alloc");
    CHECK(basename_of(frames[1].file) == "sym_fixture.c");
    CHECK(frames[1].line == marker_line(source, "/* CALL_HERE */"));
}

// The object as the capture holds it, but at a path that no longer exists.
ObjectInfo moved_away(const ObjectInfo& o) {
    ObjectInfo moved = o;
    moved.path = "/nonexistent-memray-test/bin/" + basename_of(o.path);
    return moved;
}

}  // namespace

TEST_CASE("inlined frame then its caller, with exact file and line") {
    const Fixture& f = fixture();
    Symbolizer s;
    const auto& frames = s.symbolize(f.exe, 1, f.exe_return);
    check_exe_frames(frames);
    CHECK(s.file_for(f.exe, 1) == f.exe.path);
    CHECK(s.take_warnings().empty());
    // Cached: the same vector comes back.
    CHECK(&s.symbolize(f.exe, 1, f.exe_return) == &frames);
}

TEST_CASE("shared library loaded at a bias, with its own inlined helper") {
    const Fixture& f = fixture();
    CHECK(f.lib.load_bias != 0);
    const std::string source = env("SYMFIX_LIB_SOURCE");
    Symbolizer s;
    const auto& frames = s.symbolize(f.lib, 2, f.lib_return);
    REQUIRE(frames.size() >= 2);
    CHECK(frames[0].function == "lib_helper");
    CHECK(basename_of(frames[0].file) == "symfix_lib.c");
    CHECK(frames[0].line == marker_line(source, "/* LIB_RECORD */"));
    CHECK(frames[1].function == "symfix_lib_alloc");
    CHECK(frames[1].line == marker_line(source, "/* LIB_CALL */"));
    CHECK(s.take_warnings().empty());
}

TEST_CASE("binary moved away: found in --debug-dir by file name and by full path") {
    const Fixture& f = fixture();
    const ObjectInfo moved = moved_away(f.exe);
    {
        TempDir dir;
        std::string copy = dir.put(f.exe.path, basename_of(f.exe.path));
        Symbolizer s(SymbolizerOptions{{dir.path.string()}, ""});
        check_exe_frames(s.symbolize(moved, 1, f.exe_return));
        CHECK(s.file_for(moved, 1) == copy);
        CHECK(s.take_warnings().empty());
    }
    {
        TempDir dir;
        std::string copy = dir.put(f.exe.path, moved.path.substr(1));
        TempDir empty;
        Symbolizer s(SymbolizerOptions{{empty.path.string(), dir.path.string()}, ""});
        check_exe_frames(s.symbolize(moved, 1, f.exe_return));
        CHECK(s.file_for(moved, 1) == copy);
    }
}

TEST_CASE("stripped copy with its debug file in a .build-id tree, or via .gnu_debuglink") {
    const Fixture& f = fixture();
    const ObjectInfo moved = moved_away(f.exe);
    const std::string id_path =
        ".build-id/" + f.exe_hex_id.substr(0, 2) + "/" + f.exe_hex_id.substr(2) + ".debug";
    TempDir bin, dbg;
    const std::string stripped = (bin.path / basename_of(f.exe.path)).string();
    const std::string debug = (dbg.path / id_path).string();
    fs::create_directories(fs::path(debug).parent_path());
    run("objcopy --strip-all '" + f.exe.path + "' '" + stripped + "'");
    run("objcopy --only-keep-debug '" + f.exe.path + "' '" + debug + "'");
    {
        // Without the debug file: no line information in the stripped copy.
        Symbolizer s(SymbolizerOptions{{bin.path.string()}, ""});
        const auto& frames = s.symbolize(moved, 1, f.exe_return);
        for (const auto& frame : frames) CHECK(frame.line == 0);
    }
    {
        Symbolizer s(SymbolizerOptions{{bin.path.string(), dbg.path.string()}, ""});
        check_exe_frames(s.symbolize(moved, 1, f.exe_return));
        CHECK(s.file_for(moved, 1) == stripped);
        CHECK(s.take_warnings().empty());
    }
    {
        // Only the debug file: it has the symbols and the lines.
        Symbolizer s(SymbolizerOptions{{dbg.path.string()}, ""});
        check_exe_frames(s.symbolize(moved, 1, f.exe_return));
        CHECK(s.file_for(moved, 1) == debug);
    }
    {
        // .gnu_debuglink next to the stripped binary, no build-id tree.
        TempDir linked;
        const std::string debug_copy = linked.put(debug, "fixture.debug");
        const std::string binary = (linked.path / basename_of(f.exe.path)).string();
        run("cd '" + linked.path.string() + "' && objcopy --add-gnu-debuglink=fixture.debug '" +
            stripped + "' '" + binary + "'");
        Symbolizer s(SymbolizerOptions{{linked.path.string()}, ""});
        check_exe_frames(s.symbolize(moved, 1, f.exe_return));
        CHECK(s.file_for(moved, 1) == binary);
        (void)debug_copy;
    }
}

TEST_CASE("a different build in --debug-dir: mismatch warning, never used") {
    const Fixture& f = fixture();
    const ObjectInfo moved = moved_away(f.exe);
    TempDir dir;
    const std::string other = dir.put(env("SYMFIX_OTHER"), basename_of(f.exe.path));
    Symbolizer s(SymbolizerOptions{{dir.path.string()}, ""});
    CHECK(s.symbolize(moved, 1, f.exe_return).empty());
    CHECK(s.file_for(moved, 1).empty());
    std::vector<std::string> warnings = s.take_warnings();
    INFO(joined(warnings));
    int mismatches = 0;
    for (const auto& w : warnings) {
        if (w.find("does not match") == std::string::npos) continue;
        ++mismatches;
        CHECK(w.find(other) != std::string::npos);
        CHECK(w.find(f.exe_hex_id) != std::string::npos);
    }
    CHECK(mismatches == 1);
    CHECK(warnings.size() == 1);  // no "not found" on top: a file was found, just not this build
    // Each problem is told once.
    CHECK(s.symbolize(moved, 1, f.exe_return + 1).empty());
    CHECK(s.take_warnings().empty());

    // A capture without build-id cannot check: the first existing file is used.
    ObjectInfo no_id = moved;
    no_id.build_id.clear();
    Symbolizer t(SymbolizerOptions{{dir.path.string()}, ""});
    t.symbolize(no_id, 1, f.exe_return);
    CHECK(t.file_for(no_id, 1) == other);
}

TEST_CASE("a stale build first in the search order, the right one later: used, no warning") {
    const Fixture& f = fixture();
    const ObjectInfo moved = moved_away(f.exe);
    TempDir stale, good;
    stale.put(env("SYMFIX_OTHER"), basename_of(f.exe.path));
    const std::string copy = good.put(f.exe.path, basename_of(f.exe.path));
    Symbolizer s(SymbolizerOptions{{stale.path.string(), good.path.string()}, ""});
    check_exe_frames(s.symbolize(moved, 1, f.exe_return));
    CHECK(s.file_for(moved, 1) == copy);
    CHECK(s.take_warnings().empty());
}

TEST_CASE("not found: one warning per object; vdso: nothing") {
    const Fixture& f = fixture();
    Symbolizer s;
    ObjectInfo gone = moved_away(f.lib);
    CHECK(s.symbolize(gone, 7, f.lib_return).empty());
    CHECK(s.symbolize(gone, 7, f.lib_return + 4).empty());
    std::vector<std::string> warnings = s.take_warnings();
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find(gone.path) != std::string::npos);
    CHECK(warnings[0].find("not found") != std::string::npos);

    for (const char* path : {"linux-vdso.so.1", "[vdso]", ""}) {
        ObjectInfo vdso;
        vdso.path = path;
        vdso.load_bias = 0x7fff00000000;
        CHECK(s.symbolize(vdso, 8, 0x7fff00000123).empty());
    }
    CHECK(s.take_warnings().empty());
}

TEST_CASE("--sysroot: the capture's absolute paths below it") {
    const Fixture& f = fixture();
    ObjectInfo remote = f.exe;
    remote.path = "/opt/memray-test-app/" + basename_of(f.exe.path);
    TempDir root;
    const std::string copy = root.put(f.exe.path, remote.path.substr(1));
    Symbolizer s(SymbolizerOptions{{}, root.path.string()});
    check_exe_frames(s.symbolize(remote, 1, f.exe_return));
    CHECK(s.file_for(remote, 1) == copy);
}

TEST_CASE("stripped shared library: function names from its dynamic symbol table") {
    const Fixture& f = fixture();
    TempDir dir;
    ObjectInfo lib = moved_away(f.lib);
    run("objcopy --strip-all '" + f.lib.path + "' '" +
        (dir.path / basename_of(f.lib.path)).string() + "'");
    Symbolizer s(SymbolizerOptions{{dir.path.string()}, ""});
    const auto& frames = s.symbolize(lib, 3, f.lib_return);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].function == "symfix_lib_alloc");
    CHECK(frames[0].line == 0);
}

TEST_CASE("Debian's python3 (only .dynsym): _PyEval_EvalFrameDefault by name") {
    std::error_code ec;
    fs::path python = fs::canonical("/usr/bin/python3", ec);
    if (ec) {
        MESSAGE("skipped: /usr/bin/python3 is missing");
        return;
    }
    std::istringstream nm(run("nm -D --defined-only '" + python.string() + "'"));
    uint64_t address = 0;
    std::string value, type, name;
    while (nm >> value >> type >> name)
        if (name == "_PyEval_EvalFrameDefault") address = std::stoull(value, nullptr, 16);
    if (address == 0) {
        MESSAGE("skipped: " << python << " does not export _PyEval_EvalFrameDefault");
        return;
    }
    std::string notes = run("readelf -n '" + python.string() + "'");
    ObjectInfo o;
    o.path = python.string();
    auto at = notes.find("Build ID: ");
    if (at != std::string::npos) {
        std::istringstream id(notes.substr(at + 10));
        std::string hex;
        id >> hex;
        o.build_id = from_hex(hex);
    }
    o.load_bias = 0;  // non-PIE
    Symbolizer s;
    const auto& frames = s.symbolize(o, 1, address + 16 + 1);
    REQUIRE(!frames.empty());
    CHECK(frames.back().function == "_PyEval_EvalFrameDefault");
    CHECK(s.file_for(o, 1) == o.path);
    INFO(joined(s.take_warnings()));
}
