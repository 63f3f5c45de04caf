// Which libmemray-payload.so this memray uses. A memray running from its build tree uses the
// payload built next to it; any other copy (installed, or installed into a --destdir root and
// moved) finds the payload where installing put it relative to the binary, so that an installed
// memray never picks up a build tree that happens to still exist, and a relocated install works.
#include <fmt/core.h>

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "cli/commands.hpp"
#include "memray_config.h"

namespace memray::cli {

namespace fs = std::filesystem;

namespace {

bool running_from_build_tree(const fs::path& self) {
    std::error_code ec;
    fs::path built = fs::weakly_canonical(MEMRAY_EXE_BUILD, ec);
    return !ec && self == built;
}

}  // namespace

std::string payload_path() {
    if (const char* env = std::getenv("MEMRAY_PAYLOAD"); env != nullptr && *env != '\0') return env;
    std::error_code ec;
    fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return MEMRAY_INSTALL_PAYLOAD;
    if (running_from_build_tree(self)) return MEMRAY_PAYLOAD_BUILD;
    // <bindir>/memray -> <libdir>/memray/libmemray-payload.so, as configured.
    fs::path relation = fs::path(MEMRAY_INSTALL_PAYLOAD).lexically_relative(MEMRAY_INSTALL_BINDIR);
    if (relation.empty()) return MEMRAY_INSTALL_PAYLOAD;
    return (self.parent_path() / relation).lexically_normal().string();
}

std::string resolve_payload() {
    std::string payload = payload_path();
    if (::access(payload.c_str(), R_OK) != 0) {
        int err = errno;
        throw UsageError(fmt::format("cannot use the payload {}: {} (set MEMRAY_PAYLOAD to its path)",
                                     payload, std::strerror(err)));
    }
    return fs::absolute(payload).lexically_normal().string();
}

}  // namespace memray::cli
