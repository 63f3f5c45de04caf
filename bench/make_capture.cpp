// Writes a synthetic capture for measuring the report side (`memray stats`, `memray summary`).
//
//   make_capture OUTPUT [EVENTS=20000000] [--raw] [--random-frees]
//
// The workload imitates a long-running Python service: ~2000 code objects, a stack tree of
// ~20000 nodes, 4 threads, malloc-like address reuse (LIFO per size class), mostly small sizes
// with a tail of large ones, a few mmaps, time advancing 1 us per event and a memory sample every
// 10 ms. As in real programs most blocks die young: 85% of allocations are freed within a few
// dozen events, the rest join a long-lived set of ~200k blocks freed at random.
// --random-frees makes every free pick a random live block (the worst case for the report's
// live-allocation map: one cache miss per free).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capture_builder.hpp"

using memray::format::Allocator;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s OUTPUT [EVENTS] [--raw]\n", argv[0]);
        return 2;
    }
    std::string out = argv[1];
    uint64_t events = 20'000'000;
    auto codec = memray::format::Codec::Lz4;
    bool random_frees = false;
    for (int i = 2; i < argc; ++i) {
        if (std::strcmp(argv[i], "--raw") == 0) codec = memray::format::Codec::Raw;
        else if (std::strcmp(argv[i], "--random-frees") == 0) random_frees = true;
        else events = std::strtoull(argv[i], nullptr, 10);
    }

    memray::format::HeaderFields h;
    h.pid = 4242;
    h.start_time_unix_ms = 1700000000000ull;
    h.command_line = "python3 service.py";
    h.python_version = "3.11.7";
    h.executable = "/usr/bin/python3";
    memray::testing::CaptureBuilder b(out, h, codec);
    std::mt19937_64 rng(12345);

    const char* names[] = {"MainThread", "worker-1", "worker-2", "worker-3"};
    for (uint32_t t = 1; t <= 4; ++t) b.thread_info(t, 1000 + t, names[t - 1]);

    const uint32_t n_codes = 2000, n_nodes = 20000;
    std::vector<std::string> fn(n_codes), file(n_codes);
    for (uint32_t c = 1; c < n_codes; ++c) {
        fn[c] = "function_" + std::to_string(c);
        file[c] = c % 5 == 0 ? "/usr/lib/python3.11/json/mod" + std::to_string(c % 50) + ".py"
                             : "/srv/app/pkg" + std::to_string(c % 20) + "/mod" +
                                   std::to_string(c % 97) + ".py";
        b.code(c, fn[c].c_str(), file[c].c_str(), c % 400 + 1);
    }
    for (uint32_t n = 1; n < n_nodes; ++n) {
        uint32_t parent = n < 50 ? 0 : uint32_t(rng() % (n - 1)) + 1;
        b.python_node(n, parent, uint32_t(rng() % (n_codes - 1)) + 1, uint32_t(rng() % 200) * 2);
    }

    struct Live {
        uint64_t address, size;
        bool mmap;
    };
    std::vector<Live> live, young;
    live.reserve(400000);
    std::vector<std::vector<uint64_t>> free_lists(64);
    uint64_t bump = 0x7f0000000000ull;
    const size_t target_live = 200000;
    std::vector<uint32_t> hot_nodes(512);
    for (auto& n : hot_nodes) n = uint32_t(rng() % (n_nodes - 1)) + 1;

    uint64_t time_us = 0, next_sample = 10000, rss = 50 << 20;
    uint32_t thread = 1;
    b.time(0);
    b.thread(1);
    for (uint64_t i = 0; i < events; ++i) {
        time_us += 1;
        if (time_us % 1000 == 0) b.time(time_us);
        if (time_us >= next_sample) {
            b.sample(time_us, rss + live.size() * 64);
            next_sample += 10000;
        }
        if (i % 97 == 0) {
            thread = uint32_t(rng() % 4) + 1;
            b.thread(thread);
        }
        uint64_t r = rng();
        bool do_alloc;
        bool young_free = false;
        if (random_frees) {
            do_alloc = live.size() < 1000 ||
                       (live.size() < 2 * target_live &&
                        (r % 1000) < (live.size() < target_live ? 520 : 480));
        } else {
            do_alloc = (r % 1000) < 500 || (young.empty() && live.empty());
            if (!do_alloc) {
                // Long-lived blocks are freed at a rate that holds their number near the target.
                bool pool_free = !live.empty() &&
                                 ((r >> 30) % 1000) < 150 * live.size() / target_live;
                if (!pool_free && young.empty()) do_alloc = true;
                young_free = !pool_free;
            }
        }
        if (do_alloc) {
            uint64_t sz;
            uint64_t pick = (r >> 10) % 1000;
            if (pick < 700) sz = 16 + ((r >> 20) % 240);
            else if (pick < 950) sz = 256 + ((r >> 20) % 3800);
            else if (pick < 999) sz = 4096 + ((r >> 20) % 120000);
            else sz = 1 << 20;
            size_t cls = std::min<size_t>(63, size_t(64 - __builtin_clzll(sz)));
            uint64_t addr;
            if (!free_lists[cls].empty()) {
                addr = free_lists[cls].back();
                free_lists[cls].pop_back();
            } else {
                addr = bump;
                bump += (uint64_t(1) << cls) + 16;
            }
            uint32_t node = (r >> 40) % 4 ? hot_nodes[(r >> 44) % hot_nodes.size()]
                                          : uint32_t((r >> 40) % (n_nodes - 1)) + 1;
            bool is_mmap = pick == 999 && (r >> 50) % 8 == 0;
            if (is_mmap) {
                b.alloc(Allocator::Mmap, addr, sz, node);
            } else {
                Allocator kind = pick % 10 == 1 ? Allocator::Calloc
                                 : pick % 10 == 2 ? Allocator::Realloc
                                                  : Allocator::Malloc;
                b.alloc(kind, addr, sz, node);
            }
            bool long_lived = random_frees || (r >> 56) % 100 < 15;
            (long_lived ? live : young).push_back({addr, sz, is_mmap});
        } else {
            std::vector<Live>& from = young_free ? young : live;
            size_t k = young_free ? from.size() - 1 - size_t((r >> 8) % std::min<size_t>(from.size(), 32))
                                  : size_t((r >> 8) % from.size());
            Live l = from[k];
            from[k] = from.back();
            from.pop_back();
            size_t cls = std::min<size_t>(63, size_t(64 - __builtin_clzll(l.size)));
            free_lists[cls].push_back(l.address);
            if (l.mmap) b.dealloc(Allocator::Munmap, l.address, l.size);
            else b.dealloc(Allocator::Free, l.address);
        }
    }
    b.finish(time_us);
    std::fprintf(stderr, "wrote %s: %llu events\n", out.c_str(), (unsigned long long)events);
    return 0;
}
