// Native frames through LLVM's DebugInfo/Symbolize (symbolizer.hpp).
//
// Per object, once: choose the file (candidates below, each checked against the capture's
// build-id), then, if that file carries no DWARF, a separate debug file for it (build-id trees,
// .gnu_debuglink). LLVMSymbolizer is given the debug file when there is one (it holds the same
// addresses plus .symtab and DWARF) and the chosen file otherwise. We look debug files up
// ourselves instead of through LLVM's DIFetcher so every file used is checked the same way and
// the search order is ours.
//
// Candidates for an object at PATH (first usable wins):
//   1. SYSROOT/PATH                                  (with --sysroot)
//   2. PATH itself; with --sysroot only when the capture has a build-id to check it against,
//      so a capture from another machine never silently picks up this machine's file
//   3. for each --debug-dir D: D/.build-id/xx/rest.debug, D/PATH, D/basename(PATH)
//   4. SYSROOT/usr/lib/debug/.build-id/xx/rest.debug (with --sysroot),
//      /usr/lib/debug/.build-id/xx/rest.debug
#include "report/symbolizer.hpp"

#include <llvm/DebugInfo/DIContext.h>
#include <llvm/DebugInfo/Symbolize/Symbolize.h>
#include <llvm/Demangle/Demangle.h>
#include <llvm/Object/ELFObjectFile.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Support/CRC.h>
#include <llvm/Support/Error.h>
#include <llvm/Support/MemoryBuffer.h>

#include <fmt/core.h>
#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "report/output_path.hpp"

namespace memray::report {

namespace {

namespace object = llvm::object;

constexpr const char* k_system_debug_dir = "/usr/lib/debug";

std::string to_hex(std::string_view bytes) {
    static constexpr char k_digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        out.push_back(k_digits[c >> 4]);
        out.push_back(k_digits[c & 15]);
    }
    return out;
}

std::string dirname_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

// DIR joined with PATH as a path below DIR, whether or not PATH is absolute.
std::string below(const std::string& dir, const std::string& path) {
    std::string out = dir;
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    if (!path.empty() && path.front() != '/') out.push_back('/');
    return out + path;
}

bool is_regular_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The kernel's vdso has no file; a capture names it "linux-vdso.so.1" (dl_iterate_phdr) or
// "[vdso]" (/proc/PID/maps).
bool is_fileless(const std::string& path) {
    if (path.empty() || path.front() == '[') return true;
    std::string base(basename_of(path));
    return base.rfind("linux-vdso", 0) == 0 || base.rfind("linux-gate", 0) == 0;
}

std::string build_id_tree_path(const std::string& dir, std::string_view build_id) {
    std::string hex = to_hex(build_id);
    return below(dir, ".build-id/" + hex.substr(0, 2) + "/" + hex.substr(2) + ".debug");
}

template <typename ELFT>
std::optional<std::string> elf_build_id(const object::ELFFile<ELFT>& elf) {
    auto from_note = [](const auto& note) -> std::optional<std::string> {
        if (note.getType() != llvm::ELF::NT_GNU_BUILD_ID || note.getName() != "GNU") return {};
        llvm::ArrayRef<uint8_t> desc = note.getDesc();
        return std::string(reinterpret_cast<const char*>(desc.data()), desc.size());
    };
    // Over section or program headers: the notes of those `is_note` accepts.
    auto search = [&](const auto& headers, auto is_note) -> std::optional<std::string> {
        for (const auto& h : headers) {
            if (!is_note(h)) continue;
            llvm::Error err = llvm::Error::success();
            for (const auto& note : elf.notes(h, err)) {
                if (auto id = from_note(note)) {
                    llvm::consumeError(std::move(err));
                    return id;
                }
            }
            llvm::consumeError(std::move(err));
        }
        return std::nullopt;
    };
    // Sections first: a separate debug file (objcopy --only-keep-debug) keeps the note section
    // but its segments may point at nothing.
    if (auto sections = elf.sections()) {
        auto id = search(*sections, [](const auto& sh) { return sh.sh_type == llvm::ELF::SHT_NOTE; });
        if (id) return id;
    } else {
        llvm::consumeError(sections.takeError());
    }
    if (auto headers = elf.program_headers()) {
        auto id = search(*headers, [](const auto& ph) { return ph.p_type == llvm::ELF::PT_NOTE; });
        if (id) return id;
    } else {
        llvm::consumeError(headers.takeError());
    }
    return {};
}

std::optional<std::string> build_id_of(const object::ObjectFile& obj) {
    if (const auto* o = llvm::dyn_cast<object::ELF64LEObjectFile>(&obj))
        return elf_build_id(o->getELFFile());
    if (const auto* o = llvm::dyn_cast<object::ELF32LEObjectFile>(&obj))
        return elf_build_id(o->getELFFile());
    if (const auto* o = llvm::dyn_cast<object::ELF64BEObjectFile>(&obj))
        return elf_build_id(o->getELFFile());
    if (const auto* o = llvm::dyn_cast<object::ELF32BEObjectFile>(&obj))
        return elf_build_id(o->getELFFile());
    return {};
}

bool has_dwarf(const object::ObjectFile& obj) {
    for (const object::SectionRef& s : obj.sections()) {
        auto name = s.getName();
        if (!name) {
            llvm::consumeError(name.takeError());
            continue;
        }
        if ((*name == ".debug_info" || *name == ".zdebug_info") && !s.isBSS() && s.getSize() > 0)
            return true;
    }
    return false;
}

struct Debuglink {
    std::string name;
    uint32_t crc = 0;
};

std::optional<Debuglink> debuglink_of(const object::ObjectFile& obj) {
    for (const object::SectionRef& s : obj.sections()) {
        auto name = s.getName();
        if (!name) {
            llvm::consumeError(name.takeError());
            continue;
        }
        if (*name != ".gnu_debuglink") continue;
        auto contents = s.getContents();
        if (!contents) {
            llvm::consumeError(contents.takeError());
            return {};
        }
        llvm::StringRef data = *contents;
        size_t end = data.find('\0');
        if (end == llvm::StringRef::npos) return {};
        size_t crc_at = (end + 4) & ~size_t{3};
        if (crc_at + 4 > data.size()) return {};
        uint32_t crc = 0;
        const auto* p = reinterpret_cast<const uint8_t*>(data.data() + crc_at);
        crc = obj.isLittleEndian() ? (p[0] | p[1] << 8 | p[2] << 16 | uint32_t(p[3]) << 24)
                                   : (uint32_t(p[0]) << 24 | p[1] << 16 | p[2] << 8 | p[3]);
        return Debuglink{data.substr(0, end).str(), crc};
    }
    return {};
}

bool file_crc_matches(const std::string& path, uint32_t crc) {
    auto buffer =
        llvm::MemoryBuffer::getFile(path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
    if (!buffer) return false;
    return llvm::crc32(llvm::arrayRefFromStringRef((*buffer)->getBuffer())) == crc;
}

std::string clean(const std::string& s) {
    return s == llvm::DILineInfo::BadString ? std::string() : s;
}

// Names from .dynsym may carry their symbol version ("__libc_start_main@GLIBC_2.2.5"); the
// function is the same whichever version, so reports show it without.
std::string function_name(const std::string& s) {
    std::string name = clean(s);
    auto at = name.find('@');
    if (at != std::string::npos && at > 0 &&
        name.find_first_of(" ()<>", at) == std::string::npos)
        name.resize(at);
    return name;
}

struct DynamicSymbol {
    uint64_t address;
    uint64_t size;
    std::string name;
};

struct AddressKey {
    uint32_t object;
    uint64_t address;
    bool operator==(const AddressKey&) const = default;
};

struct AddressKeyHash {
    size_t operator()(const AddressKey& k) const noexcept {
        uint64_t h = k.address * 0x9e3779b97f4a7c15ull ^ (uint64_t(k.object) << 32 | k.object);
        return size_t(h ^ (h >> 29));
    }
};

}  // namespace

struct Symbolizer::Impl {
    struct ObjectState {
        std::string file;     // the chosen file: "" when none
        std::string module;   // what LLVMSymbolizer reads: the debug file, else `file`
        std::string display;  // the capture's path, for messages
        object::OwningBinary<object::ObjectFile> binary;  // `file`, kept open for .dynsym
        bool dynsym_built = false;
        std::vector<DynamicSymbol> dynsym;  // sorted by address
        bool llvm_failed = false;
    };

    SymbolizerOptions options;
    llvm::symbolize::LLVMSymbolizer llvm_symbolizer;
    std::unordered_map<uint32_t, ObjectState> objects;
    std::unordered_map<AddressKey, std::vector<SourceFrame>, AddressKeyHash> frames;
    std::vector<std::string> pending_warnings;
    std::unordered_set<std::string> warned;

    static llvm::symbolize::LLVMSymbolizer::Options llvm_options() {
        llvm::symbolize::LLVMSymbolizer::Options o;
        o.PrintFunctions = llvm::DINameKind::LinkageName;
        o.PathStyle = llvm::DILineInfoSpecifier::FileLineInfoKind::AbsoluteFilePath;
        o.UseSymbolTable = true;
        o.Demangle = true;
        o.RelativeAddresses = false;
        return o;
    }

    explicit Impl(SymbolizerOptions opts)
        : options(std::move(opts)), llvm_symbolizer(llvm_options()) {}

    void warn(std::string line) {
        if (warned.insert(line).second) pending_warnings.push_back(std::move(line));
    }

    // Build-id trees to search for separate debug files, in order.
    std::vector<std::string> debug_trees() const {
        std::vector<std::string> out = options.debug_dirs;
        if (!options.sysroot.empty()) out.push_back(below(options.sysroot, k_system_debug_dir));
        out.push_back(k_system_debug_dir);
        return out;
    }

    std::vector<std::string> candidates(const format::ObjectInfo& o) const {
        std::vector<std::string> out;
        const bool has_id = !o.build_id.empty();
        if (!options.sysroot.empty()) out.push_back(below(options.sysroot, o.path));
        if (options.sysroot.empty() || has_id) out.push_back(o.path);
        for (const auto& dir : options.debug_dirs) {
            if (has_id) out.push_back(build_id_tree_path(dir, o.build_id));
            out.push_back(below(dir, o.path));
            out.push_back(below(dir, std::string(basename_of(o.path))));
        }
        if (has_id) {
            if (!options.sysroot.empty())
                out.push_back(
                    build_id_tree_path(below(options.sysroot, k_system_debug_dir), o.build_id));
            out.push_back(build_id_tree_path(k_system_debug_dir, o.build_id));
        }
        std::vector<std::string> unique;
        for (auto& c : out)
            if (std::find(unique.begin(), unique.end(), c) == unique.end())
                unique.push_back(std::move(c));
        return unique;
    }

    // Opens `path` if it is an object file usable for `o`; says why not in `problems` (a
    // build-id mismatch, an unreadable file).
    std::optional<object::OwningBinary<object::ObjectFile>> open_checked(
        const format::ObjectInfo& o, const std::string& path, std::vector<std::string>& problems) {
        if (!is_regular_file(path)) return {};
        auto file = object::ObjectFile::createObjectFile(path);
        if (!file) {
            problems.push_back(fmt::format("{}: cannot read {}: {}; not used", o.path, path,
                             llvm::toString(file.takeError())));
            return {};
        }
        if (!o.build_id.empty()) {
            std::optional<std::string> id = build_id_of(*file->getBinary());
            if (!id) {
                problems.push_back(fmt::format(
                    "{}: {} has no build-id to check against the capture's {}; not used", o.path,
                    path, to_hex(o.build_id)));
                return {};
            }
            if (*id != o.build_id) {
                problems.push_back(fmt::format(
                    "{}: build-id {} of the capture does not match {} ({}); not used",
                                 o.path, to_hex(o.build_id), path, to_hex(*id)));
                return {};
            }
        }
        return std::move(*file);
    }

    // A separate debug file for `chosen` (which has no DWARF), or "".
    std::string find_debug_file(const format::ObjectInfo& o, const std::string& chosen,
                                const object::ObjectFile& obj) {
        std::optional<std::string> id = build_id_of(obj);
        if (id && id->size() >= 2) {
            for (const auto& dir : debug_trees()) {
                std::string path = build_id_tree_path(dir, *id);
                if (path == chosen || !is_regular_file(path)) continue;
                auto debug = object::ObjectFile::createObjectFile(path);
                if (!debug) {
                    llvm::consumeError(debug.takeError());
                    continue;
                }
                if (build_id_of(*debug->getBinary()) == id && has_dwarf(*debug->getBinary()))
                    return path;
            }
        }
        std::optional<Debuglink> link = debuglink_of(obj);
        if (!link || link->name.empty()) return {};
        std::vector<std::string> places;
        std::string dir = dirname_of(chosen);
        places.push_back(below(dir, link->name));
        places.push_back(below(dir, ".debug/" + link->name));
        for (const auto& d : options.debug_dirs) {
            places.push_back(below(d, link->name));
            places.push_back(below(below(d, dirname_of(o.path)), link->name));
        }
        if (!options.sysroot.empty())
            places.push_back(below(
                below(below(options.sysroot, k_system_debug_dir), dirname_of(o.path)), link->name));
        places.push_back(below(below(k_system_debug_dir, dirname_of(o.path)), link->name));
        for (const auto& path : places) {
            if (path == chosen || !is_regular_file(path)) continue;
            auto debug = object::ObjectFile::createObjectFile(path);
            if (!debug) {
                llvm::consumeError(debug.takeError());
                continue;
            }
            // A build-id on both sides decides; reading the whole file for its CRC only when not.
            std::optional<std::string> debug_id = build_id_of(*debug->getBinary());
            bool same = (id && debug_id) ? *id == *debug_id : file_crc_matches(path, link->crc);
            if (same && has_dwarf(*debug->getBinary())) return path;
        }
        return {};
    }

    ObjectState& object_state(const format::ObjectInfo& o, uint32_t key) {
        auto [it, inserted] = objects.try_emplace(key);
        ObjectState& st = it->second;
        if (!inserted) return st;
        st.display = o.path;
        if (is_fileless(o.path)) return st;
        // A stale file at one place (say, a rebuilt binary at the original path) does not matter
        // once a matching one was found elsewhere: the problems are told only when none was.
        std::vector<std::string> problems;
        for (const auto& path : candidates(o)) {
            auto opened = open_checked(o, path, problems);
            if (!opened) continue;
            st.file = path;
            st.binary = std::move(*opened);
            break;
        }
        if (st.file.empty()) {
            for (auto& p : problems) warn(std::move(p));
            if (problems.empty())
                warn(fmt::format("{}: not found (give --debug-dir or --sysroot); shown as {}+0x...",
                                 o.path, basename_of(o.path)));
            return st;
        }
        st.module = st.file;
        if (!has_dwarf(*st.binary.getBinary())) {
            std::string debug = find_debug_file(o, st.file, *st.binary.getBinary());
            if (!debug.empty()) st.module = debug;
        }
        return st;
    }

    void build_dynsym(ObjectState& st) {
        st.dynsym_built = true;
        const auto* elf = llvm::dyn_cast_or_null<object::ELFObjectFileBase>(st.binary.getBinary());
        if (elf == nullptr) return;
        for (const object::ELFSymbolRef& sym : elf->getDynamicSymbolIterators()) {
            uint8_t type = sym.getELFType();
            if (type != llvm::ELF::STT_FUNC && type != llvm::ELF::STT_GNU_IFUNC) continue;
            auto flags = sym.getFlags();
            if (!flags) {
                llvm::consumeError(flags.takeError());
                continue;
            }
            if (*flags & object::SymbolRef::SF_Undefined) continue;
            auto address = sym.getAddress();
            auto name = sym.getName();
            if (!address || !name || *address == 0 || name->empty()) {
                if (!address) llvm::consumeError(address.takeError());
                if (!name) llvm::consumeError(name.takeError());
                continue;
            }
            st.dynsym.push_back({*address, sym.getSize(), name->str()});
        }
        // Aliases share an address; keep the first of each (sort is stable on ties).
        std::stable_sort(
            st.dynsym.begin(), st.dynsym.end(),
            [](const DynamicSymbol& a, const DynamicSymbol& b) { return a.address < b.address; });
        st.dynsym.erase(std::unique(st.dynsym.begin(), st.dynsym.end(),
                                    [](const DynamicSymbol& a, const DynamicSymbol& b) {
                                        return a.address == b.address;
                                    }),
                        st.dynsym.end());
    }

    std::string dynsym_name(ObjectState& st, uint64_t address) {
        if (!st.dynsym_built) build_dynsym(st);
        auto it =
            std::upper_bound(st.dynsym.begin(), st.dynsym.end(), address,
                             [](uint64_t a, const DynamicSymbol& s) { return a < s.address; });
        if (it == st.dynsym.begin()) return {};
        --it;
        // Size 0 (hand-written assembly) is taken as "up to the next symbol".
        if (it->size != 0 && address >= it->address + it->size) return {};
        return llvm::demangle(it->name);
    }

    std::vector<SourceFrame> lookup(ObjectState& st, uint64_t address) {
        std::vector<SourceFrame> out;
        if (st.file.empty()) return out;
        if (!st.llvm_failed) {
            auto info = llvm_symbolizer.symbolizeInlinedCode(
                st.module, {address, object::SectionedAddress::UndefSection});
            if (!info) {
                st.llvm_failed = true;
                warn(fmt::format("{}: cannot symbolise {}: {}", st.display, st.module,
                                 llvm::toString(info.takeError())));
            } else {
                for (uint32_t i = 0; i < info->getNumberOfFrames(); ++i) {
                    const llvm::DILineInfo& f = info->getFrame(i);
                    out.push_back({function_name(f.FunctionName), clean(f.FileName), f.Line});
                }
            }
        }
        if (out.empty()) out.emplace_back();
        if (out.back().function.empty())
            out.back().function = function_name(dynsym_name(st, address));
        if (std::all_of(out.begin(), out.end(),
                        [](const SourceFrame& f) { return f.function.empty() && f.file.empty(); }))
            out.clear();
        return out;
    }
};

Symbolizer::Symbolizer(SymbolizerOptions options)
    : m_impl(std::make_unique<Impl>(std::move(options))) {}

Symbolizer::~Symbolizer() = default;

const std::vector<SourceFrame>& Symbolizer::symbolize(const format::ObjectInfo& object,
                                                      uint32_t object_key,
                                                      uint64_t return_address) {
    Impl& impl = *m_impl;
    auto found = impl.frames.find({object_key, return_address});
    if (found != impl.frames.end()) return found->second;
    std::vector<SourceFrame> result;
    try {
        Impl::ObjectState& st = impl.object_state(object, object_key);
        // dl_iterate_phdr's bias is 0 for a non-PIE executable, so this is the file's own
        // address for every object; -1 lands inside the call instruction.
        if (return_address > object.load_bias)
            result = impl.lookup(st, return_address - 1 - object.load_bias);
    } catch (const std::exception& e) {
        impl.warn(fmt::format("{}: symbolisation failed: {}", object.path, e.what()));
        result.clear();
    }
    return impl.frames.emplace(AddressKey{object_key, return_address}, std::move(result))
        .first->second;
}

std::string Symbolizer::file_for(const format::ObjectInfo& object, uint32_t object_key) {
    try {
        return m_impl->object_state(object, object_key).file;
    } catch (const std::exception& e) {
        m_impl->warn(fmt::format("{}: symbolisation failed: {}", object.path, e.what()));
        return {};
    }
}

std::vector<std::string> Symbolizer::take_warnings() {
    std::vector<std::string> out;
    out.swap(m_impl->pending_warnings);
    return out;
}

}  // namespace memray::report
