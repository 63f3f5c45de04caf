// Writes a capture with many distinct stacks (default one million), for measuring the size and
// render time of the HTML pages: a Python-like call tree (a main chain, then three levels of
// fan-out 100) with one live allocation per leaf, sizes mostly small with a heavy tail.
//
//   make_wide_capture OUTPUT [LEAVES=1000000]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "capture_builder.hpp"

using memray::format::Allocator;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s OUTPUT [LEAVES]\n", argv[0]);
        return 2;
    }
    uint64_t leaves = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1'000'000;
    memray::format::HeaderFields h;
    h.pid = 4343;
    h.start_time_unix_ms = 1700000000000ull;
    h.command_line = "python3 wide.py";
    h.python_version = "3.11.7";
    h.executable = "/usr/bin/python3";
    memray::testing::CaptureBuilder b(argv[1], h);
    std::mt19937_64 rng(7);
    b.thread_info(1, 2000, "MainThread");
    b.thread_info(2, 2001, "worker");

    const uint32_t n_codes = 5000;
    for (uint32_t c = 1; c <= n_codes; ++c) {
        std::string fn = "function_" + std::to_string(c);
        std::string file = "/srv/app/pkg" + std::to_string(c % 40) + "/module" + std::to_string(c % 211) + ".py";
        b.code(c, fn.c_str(), file.c_str(), c % 500 + 1);
    }
    uint32_t next = 1;
    uint32_t parent = 0;
    for (int d = 0; d < 8; ++d) {  // main chain
        b.python_node(next, parent, 1 + d);
        parent = next++;
    }
    // Three levels of fan-out; leaves are created lazily (one allocation each).
    const uint32_t fan = 100;
    std::vector<uint32_t> level1, level2;
    for (uint32_t i = 0; i < fan; ++i) {
        b.python_node(next, parent, 10 + uint32_t(rng() % (n_codes - 10)), uint32_t(rng() % 50) * 2);
        level1.push_back(next++);
    }
    for (uint32_t p : level1)
        for (uint32_t i = 0; i < fan; ++i) {
            b.python_node(next, p, 10 + uint32_t(rng() % (n_codes - 10)), uint32_t(rng() % 50) * 2);
            level2.push_back(next++);
        }
    uint64_t t = 1000, address = 0x10000000;
    b.time(t);
    b.thread(1);
    std::lognormal_distribution<double> size_dist(4.5, 1.6);
    for (uint64_t i = 0; i < leaves; ++i) {
        uint32_t p = level2[i % level2.size()];
        b.python_node(next, p, 10 + uint32_t(rng() % (n_codes - 10)), uint32_t(i / level2.size()) * 2);
        if (i % 1000 == 0) {
            t += 1000;
            b.time(t);
            b.sample(t, 50'000'000 + i * 200);
            b.thread(1 + uint32_t((i / 1000) % 2));
        }
        uint64_t size = 16 + uint64_t(size_dist(rng));
        b.alloc(Allocator::Malloc, address, size, next++);
        address += (size + 15) & ~uint64_t(15);
    }
    b.finish(t + 1000);
    std::printf("%s: %llu distinct stacks\n", argv[1], (unsigned long long)leaves);
    return 0;
}
