#include "report/size_format.hpp"

#include <fmt/core.h>

#include <cmath>

namespace memray::report {

std::string size_fmt(int64_t bytes) {
    // Same steps as memray's size_fmt: divide by 1000 in floating point until the value is
    // below 1000, then "%5.3f" (a minimum width of 5 never pads a 3-decimal number).
    static constexpr const char* k_units[] = {"", "k", "M", "G", "T", "P", "E", "Z"};
    double num = double(bytes);
    for (const char* unit : k_units) {
        if (std::fabs(num) < 1000.0) return fmt::format("{:5.3f}{}B", num, unit);
        num /= 1000.0;
    }
    return fmt::format("{:.1f}YB", num);
}

}  // namespace memray::report
