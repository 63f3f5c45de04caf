// Driver of bench_live_rows.py: the live model (src/live/live_model.hpp) on a synthetic stream
// with LOCATIONS distinct locations (one Python function each, stacks 8 deep) and EVENTS events.
// Prints, as JSON, the fold rate (events decoded and folded per CPU second, with a merged rows()
// every million events as the view does once a second at 1 M events/s: what that costs), and the
// CPU (and wall) time of rows(): the first call (every stack resolved), the later ones during the
// fold (the stacks new since the previous call resolved), after the fold (what a redraw of an
// unchanged table pays), for one thread, and after switching the hide rule (all counted afresh).
//
//   bench_live_rows SCRATCH_CAPTURE [LOCATIONS=100000] [EVENTS=3000000]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "capture_builder.hpp"
#include "format/reader.hpp"
#include "live/live_model.hpp"


// CPU time of this thread: the machine may be shared, and wall time then says little.
static double cpu_ms() {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

// CPU time beside wall time of a stretch of code.
struct Timing {
    double cpu = 0, wall = 0;
    static double wall_ms() {
        return std::chrono::duration<double, std::milli>(
                   std::chrono::steady_clock::now().time_since_epoch()).count();
    }
    static Timing start() { return {cpu_ms(), wall_ms()}; }
    Timing stop() const { return {cpu_ms() - cpu, wall_ms() - wall}; }
    Timing& operator+=(const Timing& o) {
        cpu += o.cpu;
        wall += o.wall;
        return *this;
    }
    void max_of(const Timing& o) {
        cpu = std::max(cpu, o.cpu);
        wall = std::max(wall, o.wall);
    }
};

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s SCRATCH_CAPTURE [LOCATIONS] [EVENTS]\n", argv[0]);
        return 2;
    }
    std::string path = argv[1];
    uint32_t locations = argc > 2 ? uint32_t(std::strtoul(argv[2], nullptr, 10)) : 100000;
    uint64_t events = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 3000000;

    {
        memray::format::HeaderFields h;
        h.pid = 1;
        h.command_line = "bench";
        memray::testing::CaptureBuilder b(path, h, memray::format::Codec::Lz4);
        for (uint32_t t = 1; t <= 4; ++t) b.thread_info(t, 100 + t, "t");
        // Node n runs function_n; its parent is a shared 7-deep spine, so each leaf is a distinct
        // location and every stack is 8 frames.
        const uint32_t spine = 7;
        std::vector<std::string> names(locations + spine + 1);
        for (uint32_t c = 1; c <= locations + spine; ++c) {
            names[c] = "function_" + std::to_string(c);
            b.code(c, names[c].c_str(), "/srv/app/module.py", c % 1000 + 1);
        }
        for (uint32_t n = 1; n <= spine; ++n) b.python_node(n, n - 1, n);
        for (uint32_t n = spine + 1; n <= locations + spine; ++n) b.python_node(n, spine, n);
        std::mt19937_64 rng(7);
        std::vector<uint64_t> live;
        uint64_t next = 0x10000000;
        b.time(0);
        b.thread(1);
        for (uint64_t i = 0; i < events; ++i) {
            if (i % 1000 == 0) b.time(i);
            if (i % 97 == 0) b.thread(uint32_t(rng() % 4) + 1);
            uint64_t r = rng();
            if (live.size() < 10000 || r % 100 < 55) {
                uint64_t a = next;
                next += 64;
                b.alloc(memray::format::Allocator::Malloc, a, 16 + r % 1000,
                        spine + 1 + uint32_t((r >> 20) % locations));
                live.push_back(a);
            } else {
                size_t k = size_t((r >> 8) % live.size());
                b.dealloc(memray::format::Allocator::Free, live[k]);
                live[k] = live.back();
                live.pop_back();
            }
        }
        b.finish(events);
    }

    // The fold, with a redraw (rows() of the merged table) every REDRAW_EVERY events: what the
    // view does once a second with 1 M events/s arriving. Fold and rows() are timed apart.
    const uint64_t redraw_every = 1000000;
    memray::format::Reader reader(path);
    memray::live::LiveModel model;
    Timing fold, first, during;
    uint64_t folded = 0;
    size_t redraws = 0;
    Timing t = Timing::start();
    for (;;) {
        auto item = reader.next();
        if (item == memray::format::Reader::Item::End) break;
        if (item != memray::format::Reader::Item::Event) continue;
        model.on_event(reader.event());
        if (++folded % redraw_every == 0) {
            fold += t.stop();
            Timing r = Timing::start();
            model.rows(reader, 0, false);
            (redraws++ == 0 ? first : during).max_of(r.stop());
            t = Timing::start();
        }
    }
    fold += t.stop();
    auto time = [&](auto&& f) {
        Timing r = Timing::start();
        f();
        return r.stop();
    };
    // Each into a vector of its own: freeing the previous table is not rows()'s cost.
    std::vector<memray::live::Row> rows, rows_thread, rows_hidden, rows_hidden_again;
    Timing warm = time([&] { rows = model.rows(reader, 0, false); });
    Timing thread = time([&] { rows_thread = model.rows(reader, 1, false); });
    Timing hidden_cold = time([&] { rows_hidden = model.rows(reader, 0, true); });
    Timing hidden_warm = time([&] { rows_hidden_again = model.rows(reader, 0, true); });
    std::printf("{\"locations\": %u, \"events\": %llu, \"fold_events_per_s\": %.0f, "
                "\"rows\": %zu, \"rows_first_ms\": %.1f, \"rows_first_wall_ms\": %.1f, "
                "\"rows_during_ms\": %.1f, \"rows_during_wall_ms\": %.1f, "
                "\"rows_warm_ms\": %.1f, \"rows_warm_wall_ms\": %.1f, "
                "\"rows_one_thread_ms\": %.1f, \"rows_one_thread_wall_ms\": %.1f, "
                "\"rows_hide_internal_cold_ms\": %.1f, \"rows_hide_internal_warm_ms\": %.1f}\n",
                locations, static_cast<unsigned long long>(folded), folded / (fold.cpu / 1000),
                rows.size(), first.cpu, first.wall, during.cpu, during.wall, warm.cpu, warm.wall,
                thread.cpu, thread.wall, hidden_cold.cpu, hidden_warm.cpu);
    return rows.size() > locations / 2 ? 0 : 1;  // most locations hold something
}
