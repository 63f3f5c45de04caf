// Byte counts printed the way memray prints them (1000-based units, 3 decimals: "2.047kB").
#pragma once

#include <cstdint>
#include <string>

namespace memray::report {

std::string size_fmt(int64_t bytes);
inline std::string size_fmt(uint64_t bytes) { return size_fmt(int64_t(bytes)); }
inline std::string size_fmt(int bytes) { return size_fmt(int64_t(bytes)); }
inline std::string size_fmt(unsigned bytes) { return size_fmt(int64_t(bytes)); }

}  // namespace memray::report
