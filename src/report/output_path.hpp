// Where a reporter writes by default, and memray's refusal to overwrite: shared by the file
// reporters (flamegraph, table, transform).
#pragma once

#include <stdexcept>
#include <string>

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

}  // namespace memray::report
