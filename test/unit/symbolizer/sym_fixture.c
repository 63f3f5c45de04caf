// Symbolizer fixture, built with -g -O2: an allocation in a static inline function that is
// inlined into its caller. Prints, like a capture would hold, each object (path, load bias,
// build-id) and the return addresses recorded at the allocations. The test finds the expected
// lines by the /* MARKERS */ below.
#define _GNU_SOURCE
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern uintptr_t symfix_recorded[8];
extern int symfix_count;
void symfix_record(void);
void* symfix_lib_alloc(size_t n);

void* volatile g_sink;

static inline __attribute__((always_inline)) void* make_buffer(size_t n) {
    symfix_record(); /* ALLOC_HERE */
    return malloc(n);
}

__attribute__((noinline)) void* outer_alloc(size_t n) {
    void* p = make_buffer(n); /* CALL_HERE */
#if SYMFIX_VARIANT == 2
    // Another build of this program: different code, so a different build-id.
    g_sink = malloc(n * 3 + 1);
#endif
    g_sink = p;
    return p;
}

static void print_object(struct dl_phdr_info* info, const char* path) {
    printf("object %s 0x%lx ", path, (unsigned long)info->dlpi_addr);
    int found = 0;
    for (int i = 0; i < info->dlpi_phnum && !found; ++i) {
        const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const unsigned char* p = (const unsigned char*)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char* end = p + ph->p_memsz;
        size_t align = ph->p_align >= 8 ? 8 : 4;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr)* nh = (const ElfW(Nhdr)*)p;
            const unsigned char* name = p + sizeof(*nh);
            const unsigned char* desc = name + ((nh->n_namesz + align - 1) & ~(align - 1));
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                for (unsigned j = 0; j < nh->n_descsz; ++j) printf("%02x", desc[j]);
                found = 1;
                break;
            }
            p = desc + ((nh->n_descsz + align - 1) & ~(align - 1));
        }
    }
    if (!found) printf("-");
    printf("\n");
}

static int each_object(struct dl_phdr_info* info, size_t size, void* data) {
    (void)size;
    int* index = data;
    char exe[4096];
    if ((*index)++ == 0) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        exe[n > 0 ? n : 0] = 0;
        print_object(info, exe);
    } else if (strstr(info->dlpi_name, "symfix")) {
        print_object(info, info->dlpi_name);
    }
    return 0;
}

int main(void) {
    outer_alloc(16);
    symfix_lib_alloc(32);
    int index = 0;
    dl_iterate_phdr(each_object, &index);
    printf("exe_return 0x%lx\n", (unsigned long)symfix_recorded[0]);
    printf("lib_return 0x%lx\n", (unsigned long)symfix_recorded[1]);
    return 0;
}
