#include "report/output_path.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace memray::report {

std::string default_output_path(const std::string& capture, const std::string& reporter,
                                const std::string& suffix) {
    auto slash = capture.rfind('/');
    std::string dir = slash == std::string::npos ? "" : capture.substr(0, slash + 1);
    std::string name = slash == std::string::npos ? capture : capture.substr(slash + 1);
    // Python's Path.with_suffix: the suffix starts at the last dot, unless that dot leads or ends
    // the name.
    auto dot = name.rfind('.');
    if (dot != std::string::npos && dot != 0 && dot + 1 != name.size()) name.resize(dot);
    name += suffix;
    if (name.rfind("memray-", 0) == 0) name = name.substr(7);
    return dir + "memray-" + reporter + "-" + name;
}

void check_output_path(const std::string& path, bool force) {
    struct stat st {};
    if (!force && ::lstat(path.c_str(), &st) == 0)
        throw OutputExists("File already exists, will not overwrite: " + path);
}

void write_output_file(const std::string& path, const std::string& data) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
    size_t n = std::fwrite(data.data(), 1, data.size(), f);
    int err = n == data.size() ? 0 : errno;
    if (std::fclose(f) != 0 && err == 0) err = errno;
    if (n != data.size() || err != 0)
        throw std::runtime_error("cannot write " + path + ": " + std::strerror(err ? err : EIO));
}

}  // namespace memray::report
