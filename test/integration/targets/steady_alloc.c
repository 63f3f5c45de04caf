// Allocates steadily (one distinctive malloc every 10 ms) until killed, reporting each one on
// stdout as "ALLOC <index> <CLOCK_MONOTONIC ms>" so the driver knows what happened before the kill.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void* volatile g_sink;

static long long monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char** argv) {
    const size_t size = argc > 1 ? strtoul(argv[1], NULL, 10) : 100003;
    const int limit = argc > 2 ? atoi(argv[2]) : 6000;  // about a minute if nobody kills us
    const struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < limit; ++i) {
        void* p = malloc(size);
        g_sink = p;
        free(p);
        printf("ALLOC %d %lld\n", i, monotonic_ms());
        fflush(stdout);
        nanosleep(&tick, NULL);
    }
    return 0;
}
