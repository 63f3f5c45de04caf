// Unit tests: the line-table decoders on hand-encoded tables (formats from CPython's
// Objects/lnotab_notes.txt and locations.md), and the walker in a process that is not Python.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <string>

#include "payload/python_stack.hpp"
#include "report/python_lines.hpp"

using memray::report::python_line;

namespace {
std::string bytes(std::initializer_list<int> values) {
    std::string out;
    for (int v : values) out.push_back(char(uint8_t(v)));
    return out;
}
}  // namespace

TEST_CASE("3.8 co_lnotab: unsigned offset increments, signed line increments") {
    // (4,+1) (10,-2) (255,0) (5,+127): offsets 0-3 -> 10, 4-13 -> 11, 14-273 -> 9, 274+ -> 136
    std::string table = bytes({4, 1, 10, 0xfe, 255, 0, 5, 127});
    for (uint32_t format : {0x0308u, 0x0309u}) {
        CHECK(python_line(format, table, 10, 0) == 10);
        CHECK(python_line(format, table, 10, 3) == 10);
        CHECK(python_line(format, table, 10, 4) == 11);
        CHECK(python_line(format, table, 10, 13) == 11);
        CHECK(python_line(format, table, 10, 14) == 9);
        CHECK(python_line(format, table, 10, 273) == 9);
        CHECK(python_line(format, table, 10, 274) == 136);
        CHECK(python_line(format, table, 10, 100000) == 136);
    }
    CHECK(python_line(0x0308, "", 7, 0) == 7);
}

TEST_CASE("3.10 co_linetable: ranges with signed deltas, -128 means no line") {
    // [0,4) 6; [4,10) none; [10,12) 9; empty range +127; [12,16) 137; beyond: none
    std::string table = bytes({4, 1, 6, 0x80, 2, 3, 0, 127, 4, 1});
    CHECK(python_line(0x030a, table, 5, 0) == 6);
    CHECK(python_line(0x030a, table, 5, 2) == 6);
    CHECK(python_line(0x030a, table, 5, 4) == 5);   // no line -> first line
    CHECK(python_line(0x030a, table, 5, 10) == 9);
    CHECK(python_line(0x030a, table, 5, 12) == 137);
    CHECK(python_line(0x030a, table, 5, 14) == 137);
    CHECK(python_line(0x030a, table, 5, 16) == 5);  // not covered -> first line
}

TEST_CASE("3.11+ location table: every entry kind") {
    std::string table = bytes({
        0xe8, 0x02,                    // no columns, +1, 1 unit:   [0,2)   301
        0xd2, 0x04, 0x08,              // one line +0, 3 units:     [2,8)   301
        0xf1, 0x51, 0x06, 0, 5, 9,     // long form, -200, 2 units: [8,12)  101
        0xf8,                          // no location, 1 unit:      [12,14) none
        0xd8, 0x01, 0x02,              // one line +1, 1 unit:      [14,16) 102
        0x9f, 0x05,                    // short form, 8 units:      [16,32) 102
        0xe8, 0x50, 0x1f,              // no columns, +1000:        [32,34) 1102
    });
    for (uint32_t format : {0x030bu, 0x030cu, 0x030du}) {
        CHECK(python_line(format, table, 300, 0) == 301);
        CHECK(python_line(format, table, 300, 2) == 301);
        CHECK(python_line(format, table, 300, 6) == 301);
        CHECK(python_line(format, table, 300, 8) == 101);
        CHECK(python_line(format, table, 300, 10) == 101);
        CHECK(python_line(format, table, 300, 12) == 300);
        CHECK(python_line(format, table, 300, 14) == 102);
        CHECK(python_line(format, table, 300, 16) == 102);
        CHECK(python_line(format, table, 300, 30) == 102);
        CHECK(python_line(format, table, 300, 32) == 1102);
        CHECK(python_line(format, table, 300, 34) == 300);
    }
}

TEST_CASE("malformed tables never read past the end") {
    CHECK(python_line(0x030b, bytes({0x05}), 4, 0) == 4);        // no entry-start byte
    CHECK(python_line(0x030b, bytes({0xe8}), 4, 0) == 4);        // truncated varint
    CHECK(python_line(0x030b, bytes({0xe8, 0x7f}), 4, 100) == 4);
    CHECK(python_line(0x030a, bytes({4}), 4, 0) == 4);           // odd length
    CHECK(python_line(0x0308, bytes({4}), 4, 8) == 4);
}

TEST_CASE("the walker reports nothing in a process that is not Python") {
    CHECK_FALSE(memray::payload::python_init());
    CHECK(std::string(memray::payload::python_version_string()).empty());
    CHECK(memray::payload::python_line_format() == 0);
    memray::payload::PyFrameRef frames[8];
    CHECK(memray::payload::python_walk(frames, 8, true) == 0);
    memray::payload::PyCodeDetails details;
    int dummy[64] = {};
    CHECK_FALSE(memray::payload::python_code_details(dummy, details));
    CHECK(memray::payload::python_code_fingerprint(dummy) == 0);
}
