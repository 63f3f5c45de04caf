// Where a reporter writes by default, and memray's refusal to overwrite: shared by the file
// reporters (flamegraph, table, transform). Also the one file-name helper of src/report.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace memray::report {

// memray's default output name: the capture's name with its last suffix replaced by `suffix`,
// a leading "memray-" dropped, prefixed with "memray-<reporter>-", next to the capture:
// ("dir/memray-app.123.bin", "csv", ".csv") -> "dir/memray-csv-app.123.csv".
std::string default_output_path(const std::string& capture, const std::string& reporter,
                                const std::string& suffix);

// Throws OutputExists ("File already exists, will not overwrite: PATH") unless `force` or
// nothing is at `path`.
class OutputExists : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};
void check_output_path(const std::string& path, bool force);

// Writes `data` to `path` (truncating). Throws std::runtime_error naming the file and the error.
void write_output_file(const std::string& path, const std::string& data);

// The last component of a path ("libc.so.6" of "/lib/x86_64-linux-gnu/libc.so.6").
inline std::string_view basename_of(std::string_view path) {
    auto slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace memray::report
