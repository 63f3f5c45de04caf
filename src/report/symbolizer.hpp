// Native return addresses to {function, file, line}, inlined frames included, with LLVM's
// DebugInfo/Symbolize. Works on the machine that made the capture (the objects' own paths) and
// elsewhere (--sysroot, --debug-dir with copies of the binaries or separate debug files found by
// build-id). A file whose build-id differs from the capture's is never used: it is reported once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "format/reader.hpp"

namespace memray::report {

struct SymbolizerOptions {
    // --debug-dir, searched in order before the system's /usr/lib/debug. Each may hold copies of
    // the capture's binaries (by file name or by their full path below it) and/or a
    // .build-id/xx/yyyy.debug tree.
    std::vector<std::string> debug_dirs;
    // --sysroot: the capture's absolute object paths are looked up below it first.
    std::string sysroot;
    // --no-symbolize: the reporters read no binary; native frames stay `module+0xoffset` (and
    // hybrid stacks cannot find the eval loop). Reproducible output, whatever is installed.
    bool enabled = true;
};

// One source-level frame of a native address.
struct SourceFrame {
    std::string function;  // demangled; "" when no symbol covers the address
    std::string file;      // source file from DWARF; "" when there is no line information
    uint32_t line = 0;
    bool operator==(const SourceFrame&) const = default;
};

class Symbolizer {
  public:
    explicit Symbolizer(SymbolizerOptions options = {});
    virtual ~Symbolizer();  // virtual: tests stand in their own names (stack_resolver tests)
    Symbolizer(const Symbolizer&) = delete;
    Symbolizer& operator=(const Symbolizer&) = delete;

    // Frames of the call that `return_address` returns to, in `object` (loaded at
    // object.load_bias), innermost first: inlined callees, then the function that holds the
    // call. Empty when neither a symbol nor line information covers it (the caller then shows
    // `module+0xoffset`). `object_key` identifies the object in the caller's tables (any value
    // stable for the same ObjectInfo); results are cached per (object_key, address).
    // The address looked up is return_address - 1 (inside the call instruction).
    virtual const std::vector<SourceFrame>& symbolize(const format::ObjectInfo& object, uint32_t object_key,
                                              uint64_t return_address);

    // Which file was used for an object: "" when none (not found, or every candidate had another
    // build-id).
    std::string file_for(const format::ObjectInfo& object, uint32_t object_key);

    // Problems found so far, one line each and each once, e.g.
    //   "/opt/app/server: build-id 1a2b... of the capture does not match /dbg/server (3c4d...);
    //    not used"
    //   "/opt/app/libfoo.so: not found (give --debug-dir or --sysroot); shown as libfoo.so+0x..."
    // Returns the lines not returned before.
    std::vector<std::string> take_warnings();

  private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace memray::report
