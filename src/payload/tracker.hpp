// Interface between the hooks (hooks.cpp, which know *what* happened) and the tracker
// (tracker.cpp, which records it with its stack into per-thread buffers drained by the writer).
// Everything here is called on the hot path of the target: noexcept, no allocation through
// hooked functions, no lock around the real allocator call.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "format/records.hpp"

namespace memray::payload {

// Per-thread recursion guard. Hooks must not record while it is set: the tracker itself, the
// writer thread and anything they call (libunwind, dl_iterate_phdr, ...) may allocate.
// Kept to one byte of initial-exec TLS: a dlopen'ed payload only gets the small static-TLS surplus
// glibc reserves, so any bigger per-thread state lives in mmap'd memory reached through a pointer.
extern __thread bool t_in_tracker __attribute__((tls_model("initial-exec")));

class ReentryGuard {
  public:
    ReentryGuard() noexcept : m_was(t_in_tracker) { t_in_tracker = true; }
    ~ReentryGuard() { t_in_tracker = m_was; }
    ReentryGuard(const ReentryGuard&) = delete;
    ReentryGuard& operator=(const ReentryGuard&) = delete;
    static bool active() noexcept { return t_in_tracker; }

  private:
    bool m_was;
};

// The tracker may clobber errno (futex, write); a hooked call that succeeded must not.
class ErrnoKeeper {
  public:
    ErrnoKeeper() noexcept : m_saved(errno) {}
    ~ErrnoKeeper() { errno = m_saved; }
    ErrnoKeeper(const ErrnoKeeper&) = delete;
    ErrnoKeeper& operator=(const ErrnoKeeper&) = delete;

  private:
    int m_saved;
};

// True while tracking is on. One relaxed load; hooks check it first.
bool tracking_enabled() noexcept;

// After the real allocator returned `address` (non-null) for a request of `size` bytes.
void record_allocation(format::Allocator kind, const void* address, size_t size) noexcept;
// Before the real deallocator runs (another thread could get the address back right after).
// `size` is only meaningful for Munmap.
void record_deallocation(format::Allocator kind, const void* address, size_t size) noexcept;
// The calling thread was renamed (prctl(PR_SET_NAME) / pthread_setname_np on itself), or
// `tid` was renamed by another thread (pthread_setname_np(other)).
void record_thread_name(long tid, const char* name) noexcept;
// A library was loaded or unloaded: the writer emits a fresh set of Object records.
void notify_objects_changed() noexcept;

}  // namespace memray::payload
