// Which libmemray-payload.so this memray uses, and the check that it can be used.
#include <fmt/core.h>

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "cli/commands.hpp"
#include "memray_config.h"

namespace memray::cli {

std::string payload_path() {
    if (const char* env = std::getenv("MEMRAY_PAYLOAD"); env != nullptr && *env != '\0') return env;
    if (::access(MEMRAY_PAYLOAD_BUILD, F_OK) == 0) return MEMRAY_PAYLOAD_BUILD;
    return MEMRAY_PAYLOAD_INSTALLED;
}

std::string resolve_payload() {
    std::string payload = payload_path();
    if (::access(payload.c_str(), R_OK) != 0) {
        int err = errno;
        throw UsageError(fmt::format("cannot use the payload {}: {} (set MEMRAY_PAYLOAD to its path)",
                                     payload, std::strerror(err)));
    }
    return std::filesystem::absolute(payload).lexically_normal().string();
}

}  // namespace memray::cli
