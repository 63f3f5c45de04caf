// For the live-mode tests: holds COUNT blocks of SIZE bytes allocated in live_hold_blocks, then
// (with "busy") keeps allocating in live_churn, which always holds its last 64 blocks of 4096
// bytes, until a line arrives on stdin or it closes.
//   live_hold COUNT SIZE [busy]
// Prints "HELD <count> <size>" once the blocks are allocated and, when busy, "TICK <n>" after
// every 100,000 calls of live_churn (its progress, for the test of a viewer that stops reading).
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void* volatile g_sink;

// Nothing else allocates here: the row of this function is exactly COUNT x SIZE.
__attribute__((noinline)) void live_hold_blocks(void** blocks, int count, size_t size) {
    for (int i = 0; i < count; ++i) {
        blocks[i] = malloc(size);
        memset(blocks[i], 1, size);
    }
}

static void* g_ring[64];
static unsigned g_next;

__attribute__((noinline)) void live_churn(void) {
    unsigned k = g_next++ % 64;
    free(g_ring[k]);
    g_ring[k] = malloc(4096);
    g_sink = g_ring[k];
}

int main(int argc, char** argv) {
    int count = argc > 1 ? atoi(argv[1]) : 8;
    size_t size = argc > 2 ? strtoul(argv[2], NULL, 10) : 1048576;
    int busy = argc > 3 && strcmp(argv[3], "busy") == 0;
    void** blocks = calloc((size_t)count, sizeof *blocks);
    live_hold_blocks(blocks, count, size);
    g_sink = blocks;
    printf("HELD %d %zu\n", count, size);
    fflush(stdout);
    struct pollfd p = {STDIN_FILENO, POLLIN, 0};
    for (long rounds = 1;; ++rounds) {
        if (busy) {
            for (int i = 0; i < 1000; ++i) live_churn();
            if (rounds % 100 == 0) {
                printf("TICK %ld\n", rounds / 100);
                fflush(stdout);
            }
        }
        if (poll(&p, 1, busy ? 1 : 1000) != 0) break;  // a line, or stdin closed
    }
    return 0;
}
