// Dynamic symbols of an ELF file (only .dynsym/.dynstr are read: ~5 ms for libc, against tens
// of milliseconds for the full symbol table). LLVM stays inside elf_symbols.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <sys/types.h>

#include "attach/tracer.hpp"

namespace memray::inject {

// A path from which this process can read the file behind `mapping` of `pid`, whatever the
// target's mount namespace: /proc/PID/map_files/START-END (also for memfds and deleted files),
// else /proc/PID/root/PATH if its device and inode match the mapping. Throws AttachError.
std::string mapped_file_path(pid_t pid, const attach::Mapping& mapping);

struct DynamicSymbols {
    uint64_t first_load_vaddr = 0;            // p_vaddr of the first PT_LOAD (for the load bias)
    std::map<std::string, uint64_t> values;   // defined symbols among those asked for
};

// Throws attach::AttachError naming `path` when it is not a readable 64-bit ELF file.
DynamicSymbols read_dynamic_symbols(const std::string& path, const std::vector<std::string>& names);

}  // namespace memray::inject
