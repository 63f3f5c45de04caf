// Event clock workload: distinctive allocations and frees, each bracketed by CLOCK_MONOTONIC
// reads, 15 ms apart (spinning on the clock, so the spacing is measured, not slept). Prints
//   WINDOW <size> <alloc_before_ns> <alloc_after_ns> <free_before_ns> <free_after_ns>
// per size; the driver checks that the capture's event times fall inside these windows.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void* volatile g_sink;

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void spin_until(uint64_t t) {
    while (mono_ns() < t) {
    }
}

enum { k_count = 12 };

int main(void) {
    uint64_t w[k_count][4];
    size_t sizes[k_count];
    const uint64_t gap = 15u * 1000 * 1000;
    uint64_t next = mono_ns();
    for (int i = 0; i < k_count; ++i) {
        sizes[i] = 4567001 + (size_t)i * 10;
        spin_until(next);
        w[i][0] = mono_ns();
        void* p = malloc(sizes[i]);
        w[i][1] = mono_ns();
        g_sink = p;
        // The free of this block comes half a gap later, between two allocations.
        spin_until(w[i][1] + gap / 2);
        w[i][2] = mono_ns();
        free(p);
        w[i][3] = mono_ns();
        next = w[i][0] + gap;
    }
    for (int i = 0; i < k_count; ++i)
        printf("WINDOW %zu %llu %llu %llu %llu\n", sizes[i], (unsigned long long)w[i][0],
               (unsigned long long)w[i][1], (unsigned long long)w[i][2],
               (unsigned long long)w[i][3]);
    return 0;
}
