#include "report/frame_rule.hpp"

#include <cctype>
#include <string_view>

#include "report/output_path.hpp"

namespace memray::report {

uint32_t frame_flags(const Frame& f) {
    uint32_t flags = f.native ? k_frame_native : 0;
    if (f.native) {
        std::string_view fn = f.function;
        std::string_view object = basename_of(f.object.empty() ? f.file : f.object);
        bool c_api = fn.starts_with("_Py") ||
                     (fn.starts_with("Py") && fn.size() > 2 &&
                      (std::isupper(uint8_t(fn[2])) || fn[2] == '_'));
        bool interpreter_object =
            object.starts_with("libpython") ||
            (object.starts_with("python") && object.find(".so") == std::string_view::npos);
        if (c_api || interpreter_object) flags |= k_frame_irrelevant;
    } else {
        std::string_view file = f.file;
        if (file.starts_with("<frozen importlib") || file.ends_with("importlib/_bootstrap.py") ||
            file.ends_with("importlib/_bootstrap_external.py"))
            flags |= k_frame_import;
        if (file == "<frozen runpy>" || file.ends_with("/runpy.py")) flags |= k_frame_irrelevant;
    }
    return flags;
}

}  // namespace memray::report
