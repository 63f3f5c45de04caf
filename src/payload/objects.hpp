// The objects (executable, shared libraries) loaded in this process, for Object records.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/encoder.hpp"

namespace memray::payload {

struct LoadedObject {
    uintptr_t load_bias;
    const char* path;          // absolute where the loader knows it; the executable's from /proc/self/exe
    const uint8_t* build_id;   // GNU build-id note contents, or nullptr
    size_t build_id_len;
    format::Segment segments[16];  // PT_LOAD (p_vaddr, p_memsz)
    size_t n_segments;
};

// Calls fn for every loaded object (vdso included, payload included). Cold path: may take the
// loader lock, so never call it from a hook while the hook holds anything.
void for_each_loaded_object(void (*fn)(const LoadedObject&, void*), void* ctx) noexcept;

}  // namespace memray::payload
