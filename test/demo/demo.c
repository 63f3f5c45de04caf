// The bundled demo for `./scripts/demo.sh`: a small native program whose allocations are easy to
// recognise in a report. Two named threads ("parser" and "cache") and the main thread each use a
// different mix of allocators; some memory is deliberately still alive at exit.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

// Everything allocated is written and summed into this, so the compiler cannot drop a
// malloc/free pair as unused.
static volatile uint64_t g_checksum;

static void touch(void* p, size_t n) {
    memset(p, 0x5a, n);
    g_checksum += ((unsigned char*)p)[n - 1];
}

// "parser": many small strings (strdup allocates inside libc), most freed again.
static void* parser_main(void* arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "parser");
    char line[64];
    char* keep[100];
    for (int i = 0; i < 1000; ++i) {
        snprintf(line, sizeof line, "record %d: some text to copy", i);
        char* s = strdup(line);
        g_checksum += (unsigned char)s[7];
        if (i % 10 == 0) keep[i / 10] = s;  // 100 strings survive until the end of the thread
        else free(s);
    }
    for (int i = 0; i < 100; ++i) free(keep[i]);
    return NULL;
}

// "cache": a few large buffers: calloc'd, grown with realloc, one aligned block, one mmap.
static void* cache_main(void* arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "cache");
    for (int i = 0; i < 8; ++i) {
        char* block = calloc(64, 1024);  // 64 KiB
        touch(block, 64 * 1024);
        block = realloc(block, 256 * 1024);  // grown to 256 KiB
        touch(block, 256 * 1024);
        free(block);
    }
    void* aligned = NULL;
    if (posix_memalign(&aligned, 4096, 128 * 1024) == 0) {
        touch(aligned, 128 * 1024);
        free(aligned);
    }
    void* map = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map != MAP_FAILED) {
        touch(map, 1 << 20);
        munmap(map, 1 << 20);
    }
    return NULL;
}

// Kept alive until exit on purpose, so reports show something that was never freed.
static unsigned char* leak_config(void) {
    void* p = malloc(3 * 1000 * 1000);
    touch(p, 3 * 1000 * 1000);
    return p;
}

int main(void) {
    pthread_t parser, cache;
    if (pthread_create(&parser, NULL, parser_main, NULL) != 0 ||
        pthread_create(&cache, NULL, cache_main, NULL) != 0) {
        fprintf(stderr, "memray-demo: cannot start threads\n");
        return 1;
    }
    unsigned char* config = leak_config();
    pthread_join(parser, NULL);
    pthread_join(cache, NULL);
    printf("memray-demo: done (checksum %llu, config byte %d)\n", (unsigned long long)g_checksum,
           config[0]);
    return 0;
}
