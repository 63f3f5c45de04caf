// Private to src/attach: walks a stopped thread's stack while that thread waits, so it must be
// quick. libunwind-ptrace alone reads the target one word per ptrace call and reopens an ELF
// file (and rereads /proc/PID/maps) whenever a frame moves to another object; here the
// objects' files are mapped once, while the target still runs (prepare), and during the walk
// memory reads are answered from one process_vm_readv snapshot of the stack, from those file
// mappings for read-only segments (where the unwind tables live), and only then from the target.
// Function names come from the objects' symbol tables read in prepare, with libunwind's rule
// (the nearest function symbol at or below the address).
#pragma once

#include <libunwind-ptrace.h>
#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attach/tracer.hpp"

namespace memray::attach::detail {

class Unwinder {
  public:
    explicit Unwinder(pid_t pid);
    ~Unwinder();
    Unwinder(const Unwinder&) = delete;
    Unwinder& operator=(const Unwinder&) = delete;

    bool ok() const { return m_space != nullptr; }

    // Maps the files of the target's objects and reads their unwind tables' headers; the symbol
    // tables of the objects for which `want_names(path)` is true. Call with the target running.
    void prepare(const std::vector<Mapping>& maps, const std::function<bool(const std::string&)>& want_names);

    // Walks the stack of stopped thread `tid` innermost first, calling `frame(depth, ip)` until
    // it returns false (the walk is then "stopped") or the outermost frame. Returns false with
    // `why` when the stack cannot be walked to its end.
    bool walk(pid_t tid, int max_depth, const std::function<bool(int, uint64_t)>& frame,
              std::string& why);

    // Name of the function holding `ip` in an object prepared with names; nullptr otherwise.
    const char* function_name(uint64_t ip) const;

    struct Object;
    struct Walk;

  private:
    pid_t m_pid;
    unw_addr_space_t m_space = nullptr;
    std::vector<std::unique_ptr<Object>> m_objects;  // sorted by start address

    friend struct Accessors;
    const Object* object_at(uint64_t address) const;
    bool read_cached(uint64_t address, uint64_t& value, const Walk& w) const;
};

}  // namespace memray::attach::detail
