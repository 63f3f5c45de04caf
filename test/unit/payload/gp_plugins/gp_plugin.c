// Loaded with dlopen after the hooks are installed.
#include <stdlib.h>

void* gp_plugin_malloc(size_t size) { return malloc(size); }
