// The capture-file rules (launch/output_file.hpp): what is refused with which words, and that only
// a file this run created is ever removed.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "launch/error.hpp"
#include "launch/output_file.hpp"

namespace fs = std::filesystem;
using memray::launch::check_output_file;
using memray::launch::FileStamp;
using memray::launch::LaunchError;
using memray::launch::OutputFile;

namespace {

struct TempDir {
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "memray-launch-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const char* name) const { return (path / name).string(); }
    fs::path path;
};

void write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
}

std::string read(const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const LaunchError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("check_output_file: a new file in a writable directory is fine") {
    TempDir d;
    CHECK_NOTHROW(check_output_file("x.bin", d.file("x.bin"), false));
    CHECK_FALSE(fs::exists(d.file("x.bin")));  // checking creates nothing
}

TEST_CASE("check_output_file: an existing file needs force, with one wording") {
    TempDir d;
    write(d.file("x.bin"), "precious");
    CHECK(error_of([&] { check_output_file("shown.bin", d.file("x.bin"), false); }) ==
          "output file shown.bin already exists, will not overwrite (use -f to force)");
    CHECK_NOTHROW(check_output_file("shown.bin", d.file("x.bin"), true));
    CHECK(read(d.file("x.bin")) == "precious");
}

TEST_CASE("check_output_file: a directory is refused even with force") {
    TempDir d;
    CHECK(error_of([&] { check_output_file("out", d.path.string(), true); }) ==
          "output out is a directory");
}

TEST_CASE("check_output_file: a directory that does not exist") {
    TempDir d;
    std::string path = d.file("missing/x.bin");
    CHECK(error_of([&] { check_output_file("missing/x.bin", path, false); }) ==
          "cannot write the output file missing/x.bin: " + d.file("missing") +
              ": No such file or directory");
}

TEST_CASE("OutputFile: created here, removed unless kept") {
    TempDir d;
    std::string path = d.file("x.bin");
    {
        OutputFile f("x.bin", path, false);
        CHECK(f.created());
        CHECK(f.fd() >= 0);
        CHECK(fs::exists(path));
    }
    CHECK_FALSE(fs::exists(path));
    {
        OutputFile f("x.bin", path, false);
        REQUIRE(::write(f.fd(), "capture", 7) == 7);
        f.keep();
        CHECK(f.fd() == -1);
    }
    CHECK(read(path) == "capture");
}

TEST_CASE("OutputFile: an existing file is refused without force and untouched") {
    TempDir d;
    std::string path = d.file("x.bin");
    write(path, "precious");
    CHECK(error_of([&] { OutputFile f("x.bin", path, false); }) ==
          "output file x.bin already exists, will not overwrite (use -f to force)");
    CHECK(read(path) == "precious");
}

TEST_CASE("OutputFile: with force the user's file is truncated but never removed") {
    TempDir d;
    std::string path = d.file("x.bin");
    write(path, "precious");
    {
        OutputFile f("x.bin", path, true);
        CHECK_FALSE(f.created());
    }
    REQUIRE(fs::exists(path));  // the failure path of attach must not delete what was there
    CHECK(fs::file_size(path) == 0);
}

TEST_CASE("OutputFile: a directory is refused") {
    TempDir d;
    CHECK(error_of([&] { OutputFile f("dir", d.path.string(), true); }) == "output dir is a directory");
}

TEST_CASE("FileStamp tells whether the file was written in between") {
    TempDir d;
    std::string path = d.file("x.bin");
    CHECK_FALSE(FileStamp::of(path).exists());
    write(path, "");
    CHECK_FALSE(FileStamp::of(path).exists());  // an empty file is no capture yet
    write(path, "one");
    FileStamp before = FileStamp::of(path);
    CHECK(before.exists());
    CHECK(before.same_as(FileStamp::of(path)));
    fs::remove(path);
    write(path, "another");  // a new file: another inode or size
    CHECK_FALSE(before.same_as(FileStamp::of(path)));
    CHECK_FALSE(FileStamp::of("/dev/null").exists());
}
