#include "report/capture.hpp"

#include <sys/stat.h>

#include <cstdio>

namespace memray::report {

std::unique_ptr<format::Reader> open_capture(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        throw format::FileError("No such file: " + path);
    return std::make_unique<format::Reader>(path);
}

void warn_if_truncated(const format::Reader& reader) {
    if (!reader.truncated()) return;
    if (reader.aggregated()) {
        const format::Aggregate& agg = reader.aggregate();
        if (agg.checkpoints == 0) {
            std::fprintf(stderr,
                         "memray: warning: %s is incomplete: %s; it holds no complete checkpoint, "
                         "so there is nothing to report\n",
                         reader.path().c_str(), reader.truncation_reason().c_str());
        } else {
            std::fprintf(stderr,
                         "memray: warning: %s is incomplete: %s; reporting its last complete "
                         "checkpoint (%.3f s after the start)\n",
                         reader.path().c_str(), reader.truncation_reason().c_str(),
                         double(agg.totals.time_us) / 1e6);
        }
        return;
    }
    std::fprintf(stderr,
                 "memray: warning: %s is incomplete: %s; reporting what it holds up to its last "
                 "complete block\n",
                 reader.path().c_str(), reader.truncation_reason().c_str());
}

}  // namespace memray::report
