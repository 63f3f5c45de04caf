// Loaded objects with their build-ids, for Object records (objects.hpp).
#include "payload/objects.hpp"

#include <elf.h>
#include <link.h>

#include <climits>
#include <cstring>

#include "payload/got_patch.hpp"

namespace memray::payload {
namespace {

struct IterateContext {
    void (*fn)(const LoadedObject&, void*);
    void* ctx;
    size_t index;
};

// The GNU build-id note of an object, from its PT_NOTE segments (already mapped).
void find_build_id(const dl_phdr_info* info, LoadedObject& obj) noexcept {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_NOTE) continue;
        const auto* p = reinterpret_cast<const uint8_t*>(info->dlpi_addr + ph.p_vaddr);
        const uint8_t* end = p + ph.p_memsz;
        // GNU property notes live in an 8-byte-aligned PT_NOTE and are padded to 8; the rest to 4.
        const size_t align = ph.p_align >= 8 ? 8 : 4;
        auto round = [align](size_t n) { return (n + align - 1) & ~(align - 1); };
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const auto* nh = reinterpret_cast<const ElfW(Nhdr)*>(p);
            const uint8_t* name = p + sizeof(ElfW(Nhdr));
            const uint8_t* desc = name + round(nh->n_namesz);
            if (desc + nh->n_descsz > end) break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                obj.build_id = desc;
                obj.build_id_len = nh->n_descsz;
                return;
            }
            p = desc + round(nh->n_descsz);
        }
    }
}

int iterate_callback(dl_phdr_info* info, size_t, void* data) {
    auto& ctx = *static_cast<IterateContext*>(data);
    const size_t index = ctx.index++;
    LoadedObject obj{};
    obj.load_bias = info->dlpi_addr;
    char exe[PATH_MAX];
    if (index == 0 && (!info->dlpi_name || !*info->dlpi_name)) {
        obj.path = got::executable_path(exe, sizeof(exe)) ? exe : "";
    } else {
        obj.path = info->dlpi_name ? info->dlpi_name : "";
    }
    find_build_id(info, obj);
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD) continue;
        if (obj.n_segments == sizeof(obj.segments) / sizeof(obj.segments[0])) break;
        obj.segments[obj.n_segments++] = format::Segment{ph.p_vaddr, ph.p_memsz};
    }
    ctx.fn(obj, ctx.ctx);
    return 0;
}

}  // namespace

void for_each_loaded_object(void (*fn)(const LoadedObject&, void*), void* ctx) noexcept {
    IterateContext ictx{fn, ctx, 0};
    dl_iterate_phdr(iterate_callback, &ictx);
}

}  // namespace memray::payload
