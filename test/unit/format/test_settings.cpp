// The payload settings contract (src/format/settings.hpp): what the tools write, the payload reads.
#include <doctest/doctest.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "format/settings.hpp"

using memray::format::parse_settings;
using memray::format::PayloadSettings;
using memray::format::set_setting;
using memray::format::settings_text;

TEST_CASE("settings round trip: every field, escapes included") {
    PayloadSettings s;
    set_setting(s.output, "/tmp/a dir/with\\backslash\nand newline.bin");
    set_setting(s.command, "python3 -c 'import x\nx.run()' \\n literal");
    s.native = true;
    s.compress = false;
    s.force = true;
    s.output_fd_handoff = true;
    s.handoff_timeout_ms = 1234;
    s.log_level = 0;
    s.follow_fork = true;
    s.trace_python_allocators = true;
    s.aggregate = true;
    std::string text = settings_text(s);
    CHECK(std::count(text.begin(), text.end(), '\n') == 11);  // one line per key, none inside a value

    PayloadSettings back;
    char err[256] = "";
    int unknown = 0;
    REQUIRE(parse_settings(text.c_str(), back, err, sizeof err, &unknown) == 0);
    CHECK(unknown == 0);
    CHECK(std::string(back.output) == s.output);
    CHECK(std::string(back.command) == s.command);
    CHECK(back.native);
    CHECK_FALSE(back.compress);
    CHECK(back.force);
    CHECK(back.output_fd_handoff);
    CHECK(back.handoff_timeout_ms == 1234);
    CHECK(back.log_level == 0);
    CHECK(back.follow_fork);
    CHECK(back.trace_python_allocators);
    CHECK(back.aggregate);
}

TEST_CASE("settings defaults survive the round trip") {
    PayloadSettings s;
    set_setting(s.output, "out.bin");
    PayloadSettings back;
    char err[256] = "";
    REQUIRE(parse_settings(settings_text(s).c_str(), back, err, sizeof err) == 0);
    CHECK(std::string(back.command).empty());
    CHECK_FALSE(back.native);
    CHECK(back.compress);
    CHECK_FALSE(back.force);
    CHECK(back.handoff_timeout_ms == PayloadSettings::k_default_handoff_ms);
    CHECK(back.log_level == PayloadSettings::k_default_log_level);
    CHECK_FALSE(back.follow_fork);
    CHECK_FALSE(back.trace_python_allocators);
    CHECK_FALSE(back.aggregate);
}

TEST_CASE("settings parser: unknown keys skipped and counted, mistakes refused with a reason") {
    PayloadSettings s;
    char err[256] = "";
    int unknown = 0;
    CHECK(parse_settings("output=x\nfuture_key=1\n\n", s, err, sizeof err, &unknown) == 0);
    CHECK(unknown == 1);

    auto refused = [](const char* text) {
        PayloadSettings t;
        char e[256] = "";
        int rc = parse_settings(text, t, e, sizeof e);
        return rc == -EINVAL ? std::string(e) : std::string("accepted");
    };
    CHECK(refused("native=1\n") == "no output file given (setting 'output')");
    CHECK(refused("output=x\nnative=yes\n") == "invalid value for setting 'native': 'yes'");
    CHECK(refused("output=x\nlog_level=4\n") == "invalid value for setting 'log_level': '4'");
    CHECK(refused("output=x\njunk\n") == "malformed setting 'junk' (expected key=value)");
    CHECK(refused("output=bad\\qescape\n") == "invalid value for setting 'output': 'bad\\qescape'");
    CHECK(refused("output=x\nhandoff_timeout_ms=12345678\n").find("handoff_timeout_ms") != std::string::npos);
    std::string long_path = "output=" + std::string(sizeof(PayloadSettings::output), 'a');
    CHECK(refused(long_path.c_str()).find("invalid value for setting 'output'") == 0);
    CHECK(parse_settings(nullptr, s, err, sizeof err) == -EINVAL);
}

TEST_CASE("settings writer refuses what the parser would") {
    PayloadSettings s;
    CHECK_THROWS_AS(settings_text(s), std::invalid_argument);  // no output
    CHECK_THROWS_AS(set_setting(s.output, std::string(sizeof s.output, 'x')), std::length_error);
    set_setting(s.output, "x");
    s.log_level = 7;
    CHECK_THROWS_AS(settings_text(s), std::invalid_argument);
}

TEST_CASE("settings round trip: the live fields, at the end, and a live session needs no output") {
    PayloadSettings s;
    s.live_port = 65535;
    s.live_reconnect = true;
    s.live_accept_timeout_ms = 2500;
    std::string text = settings_text(s);
    CHECK(text.rfind("live_port=65535\nlive_reconnect=1\nlive_accept_timeout_ms=2500\n") ==
          text.size() - std::strlen("live_port=65535\nlive_reconnect=1\nlive_accept_timeout_ms=2500\n"));
    PayloadSettings back;
    char err[256] = "";
    REQUIRE(parse_settings(text.c_str(), back, err, sizeof err) == 0);
    CHECK(back.live_port == 65535);
    CHECK(back.live_reconnect);
    CHECK(back.live_accept_timeout_ms == 2500);
    CHECK(std::string(back.output).empty());

    // Not live: the keys are not written, and the defaults come back.
    PayloadSettings file;
    set_setting(file.output, "out.bin");
    CHECK(settings_text(file).find("live_") == std::string::npos);
    PayloadSettings file_back;
    REQUIRE(parse_settings(settings_text(file).c_str(), file_back, err, sizeof err) == 0);
    CHECK(file_back.live_port == 0);
    CHECK_FALSE(file_back.live_reconnect);

    auto refused = [](const char* text) {
        PayloadSettings t;
        char e[256] = "";
        return parse_settings(text, t, e, sizeof e) == -EINVAL ? std::string(e) : "accepted";
    };
    CHECK(refused("live_port=0\n") == "invalid value for setting 'live_port': '0'");
    CHECK(refused("live_port=65536\n") == "invalid value for setting 'live_port': '65536'");
    CHECK(refused("live_port=80\nlive_reconnect=2\n") ==
          "invalid value for setting 'live_reconnect': '2'");
    s.live_port = 70000;
    CHECK_THROWS_AS(settings_text(s), std::invalid_argument);
}
