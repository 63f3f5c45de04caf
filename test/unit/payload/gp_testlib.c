// A shared library whose own calls to the allocator and to dlopen must reach the hooks.
#include <dlfcn.h>
#include <stdlib.h>

void* gp_lib_malloc(size_t size) { return malloc(size); }
void gp_lib_free(void* p) { free(p); }
// dlopen by name from here: the loader must search *this* library's RUNPATH ($ORIGIN/gp_plugins).
// Not a tail call: the loader (and the hook) must see a return address inside this library.
void* gp_lib_dlopen(const char* name) {
    void* volatile handle = dlopen(name, RTLD_NOW);
    return handle;
}
