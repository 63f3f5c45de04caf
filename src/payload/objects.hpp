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
// loader lock, so never call it from a hook while the hook holds anything. A fork being prepared
// holds it off (below); the fork handlers take that lock only once no thread is inside a record
// (the tracker's fork gate), so nothing the fork waits for waits for the writer.
void for_each_loaded_object(void (*fn)(const LoadedObject&, void*), void* ctx) noexcept;

// Fork (api.cpp). dl_iterate_phdr, dlopen and dlclose hold the loader's list lock (glibc's
// dl_load_write_lock), which glibc 2.36 does not reset in a forked child: a fork while another
// thread held it (the program loading or unloading a library, the writer walking the list, an
// unwinder) left the child's first walk (its writer's, libunwind's, the hook removal at exit)
// waiting for ever. Resetting it in the child is not enough: its holder may have been half way
// through an unload, and the child would walk an object already unmapped. So the fork handlers
// hold that lock across fork(), as glibc does for malloc's: objects_init() finds it once (inside a
// walk, the one recursive mutex of ld.so's globals this thread took once more than before it). Where it is not
// found (another libc), only the payload's own walks are held off, by a lock of ours.
void objects_init() noexcept;
void objects_lock_for_fork() noexcept;
void objects_unlock_after_fork_parent() noexcept;
void objects_after_fork_child() noexcept;

}  // namespace memray::payload
