#include "inject/elf_symbols.hpp"

#include <llvm/Object/Binary.h>
#include <llvm/Object/ELFObjectFile.h>
#include <llvm/Support/Error.h>

#include <fmt/core.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <set>

#include "attach/tracer.hpp"

namespace memray::inject {

namespace {

[[noreturn]] void fail(const std::string& path, llvm::Error error) {
    throw attach::AttachError("cannot read the symbols of " + path + ": " +
                              llvm::toString(std::move(error)));
}

}  // namespace

std::string mapped_file_path(pid_t pid, const attach::Mapping& m) {
    std::string direct = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end);
    if (::access(direct.c_str(), R_OK) == 0) return direct;
    std::string path = m.path;
    const std::string deleted = " (deleted)";
    if (path.size() > deleted.size() &&
        path.compare(path.size() - deleted.size(), deleted.size(), deleted) == 0) {
        throw attach::AttachError(fmt::format(
            "cannot read {} of process {}: the file was deleted (and {} is not readable)", path,
            pid, direct));
    }
    std::string rooted = fmt::format("/proc/{}/root{}", pid, path);
    struct stat st {};
    if (::stat(rooted.c_str(), &st) != 0 || st.st_ino != m.inode ||
        major(st.st_dev) != m.dev_major || minor(st.st_dev) != m.dev_minor) {
        throw attach::AttachError(fmt::format(
            "cannot find the file {} mapped in process {} (looked at {} and {})", path, pid,
            direct, rooted));
    }
    return rooted;
}

DynamicSymbols read_dynamic_symbols(const std::string& path, const std::vector<std::string>& names) {
    auto binary = llvm::object::createBinary(path);
    if (!binary) fail(path, binary.takeError());
    auto* elf = llvm::dyn_cast<llvm::object::ELF64LEObjectFile>(binary->getBinary());
    if (elf == nullptr) throw attach::AttachError(path + " is not a 64-bit little-endian ELF file");

    DynamicSymbols out;
    auto headers = elf->getELFFile().program_headers();
    if (!headers) fail(path, headers.takeError());
    bool found_load = false;
    for (const auto& ph : *headers) {
        if (ph.p_type == llvm::ELF::PT_LOAD) {
            out.first_load_vaddr = ph.p_vaddr;
            found_load = true;
            break;
        }
    }
    if (!found_load) throw attach::AttachError(path + " has no loadable segment");

    std::set<std::string> wanted(names.begin(), names.end());
    for (const llvm::object::ELFSymbolRef& sym : elf->getDynamicSymbolIterators()) {
        auto name = sym.getName();
        if (!name) {
            llvm::consumeError(name.takeError());
            continue;
        }
        if (wanted.count(name->str()) == 0) continue;
        auto flags = sym.getFlags();
        if (!flags) {
            llvm::consumeError(flags.takeError());
            continue;
        }
        if (*flags & llvm::object::SymbolRef::SF_Undefined) continue;  // an import, not the definition
        auto value = sym.getValue();
        if (!value) {
            llvm::consumeError(value.takeError());
            continue;
        }
        // Versioned duplicates (dlopen@GLIBC_2.2.5 / dlopen@@GLIBC_2.34) share one address in
        // glibc; the first definition wins.
        out.values.emplace(name->str(), *value);
    }
    return out;
}

}  // namespace memray::inject
