// What exec will run: the PATH search and the ELF check that tells whether LD_PRELOAD can reach
// a program at all.
#pragma once

#include <optional>
#include <string>

namespace memray::launch {

// execvp's lookup: a name with a slash is used as is, else the first executable match on $PATH.
std::optional<std::string> find_program(const std::string& name);

enum class ElfKind { NotElf, Dynamic, Static };

// A program without PT_INTERP is never seen by the dynamic loader, so LD_PRELOAD cannot load the
// payload into it. Only 64-bit ELF is inspected; anything else counts as Dynamic (exec and the
// loader decide).
ElfKind elf_kind(const std::string& path);

}  // namespace memray::launch
