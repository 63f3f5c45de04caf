// Opening a capture for a report, shared by the report subcommands.
#pragma once

#include <memory>
#include <string>

#include "format/reader.hpp"

namespace memray::report {

// Throws format::FileError("No such file: PATH") (memray's wording) when `path` is not a regular
// file, and whatever the Reader throws for a file that is not a capture.
std::unique_ptr<format::Reader> open_capture(const std::string& path);

// After reading: one line on stderr when the capture was cut short (the target was killed).
void warn_if_truncated(const format::Reader& reader);

}  // namespace memray::report
