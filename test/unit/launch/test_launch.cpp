// The launcher's pieces that need no child process: the log level from the environment, the
// PATH search, the ELF check and the embedded bootstrap. (run_tracked itself is exercised by the
// integration suite with real programs.)
#include <doctest/doctest.h>

#include <stdio.h>
#include <stdlib.h>

#include <cstdio>

#include <string>

#include "launch/error.hpp"
#include "launch/launch.hpp"
#include "launch/program.hpp"

using namespace memray::launch;

namespace {

struct EnvVar {
    EnvVar(const char* name, const char* value) : m_name(name) {
        if (const char* old = ::getenv(name)) m_old = old, m_had = true;
        if (value) ::setenv(name, value, 1);
        else ::unsetenv(name);
    }
    ~EnvVar() {
        if (m_had) ::setenv(m_name, m_old.c_str(), 1);
        else ::unsetenv(m_name);
    }
    const char* m_name;
    std::string m_old;
    bool m_had = false;
};

// The independent opinion: no PT_INTERP in `readelf -l`.
bool readelf_says_static(const char* path) {
    std::string cmd = std::string("readelf -lW ") + path + " 2>/dev/null";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return false;
    std::string out;
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    bool ok = ::pclose(p) == 0;
    return ok && out.find("Program Headers") != std::string::npos && out.find("INTERP") == std::string::npos;
}

}  // namespace

TEST_CASE("log level: the environment wins over -q, -q means errors only") {
    {
        EnvVar e("MEMRAY_LOG_LEVEL", nullptr);
        CHECK(log_level_from_environment(false) == memray::format::PayloadSettings::k_default_log_level);
        CHECK(log_level_from_environment(true) == 3);
    }
    {
        EnvVar e("MEMRAY_LOG_LEVEL", "");
        CHECK(log_level_from_environment(true) == 3);
    }
    {
        EnvVar e("MEMRAY_LOG_LEVEL", "0");
        CHECK(log_level_from_environment(true) == 0);
        CHECK(log_level_from_environment(false) == 0);
    }
}

TEST_CASE("log level: anything but 0-3 is one clear error") {
    for (const char* bad : {"4", "-1", "01", "debug", "2 "}) {
        EnvVar e("MEMRAY_LOG_LEVEL", bad);
        CAPTURE(bad);
        CHECK_THROWS_WITH_AS(log_level_from_environment(false),
                             (std::string("MEMRAY_LOG_LEVEL must be 0 (debug) to 3 (errors only), not '") +
                              bad + "'")
                                 .c_str(),
                             LaunchError);
    }
}

TEST_CASE("find_program: PATH search like execvp") {
    EnvVar path("PATH", "/nonexistent-dir:/bin:/usr/bin");
    auto sh = find_program("sh");
    REQUIRE(sh);
    CHECK((*sh == "/bin/sh" || *sh == "/usr/bin/sh"));
    CHECK_FALSE(find_program("memray-no-such-program"));
    CHECK_FALSE(find_program(""));
    CHECK(find_program("/bin/sh") == std::optional<std::string>("/bin/sh"));
    CHECK_FALSE(find_program("/etc/passwd"));  // with a slash: as is, and must be executable
}

TEST_CASE("elf_kind: dynamic and static programs, scripts") {
    // Debian's ldconfig is linked statically; where it is not there is nothing to check.
    if (readelf_says_static("/sbin/ldconfig")) CHECK(elf_kind("/sbin/ldconfig") == ElfKind::Static);
    CHECK(elf_kind("/bin/sh") == ElfKind::Dynamic);
    CHECK(elf_kind("/etc/passwd") == ElfKind::NotElf);
    CHECK(elf_kind("/nonexistent") == ElfKind::NotElf);
}

TEST_CASE("the embedded bootstrap is bootstrap.py") {
    std::string_view text = bootstrap_source();
    CHECK(text.find("def _memray_run():") != std::string_view::npos);
    CHECK(text.substr(text.size() - 14) == "_memray_run()\n");
}
