// CPython line tables: instruction offset -> source line, for the formats of 3.8 to 3.13.
#pragma once

#include <cstdint>
#include <string_view>

namespace memray::report {

// `line_format` is the Code record's 0xMMmm python version, `table` its line table bytes
// (co_lnotab for 3.8-3.9, co_linetable for 3.10+), `offset` the instruction byte offset.
// Returns the line, or `first_line` when the table does not cover the offset or is malformed.
uint32_t python_line(uint32_t line_format, std::string_view table, uint32_t first_line,
                     uint32_t offset);

}  // namespace memray::report
