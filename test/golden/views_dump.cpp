// Prints a snapshot of a capture as plain lines for the test drivers (not installed):
//   views_dump CAPTURE (hwm|leaks|temporary N) [--temporal]
//   location <function> <line> <count> <bytes>          (innermost frame of each location)
//   interval <function> <line> <allocated_in> <freed_in|never> <count> <bytes>
//   memory <points> peak <bytes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "format/reader.hpp"
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"

using namespace memray;

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: views_dump CAPTURE (hwm|leaks|temporary N) [--temporal]\n");
        return 2;
    }
    report::SnapshotOptions o;
    int i = 2;
    std::string kind = argv[i++];
    if (kind == "leaks") o.kind = report::SnapshotKind::Leaks;
    if (kind == "temporary") {
        o.kind = report::SnapshotKind::Temporary;
        o.temporary_threshold = std::strtoull(argv[i++], nullptr, 10);
    }
    for (; i < argc; ++i)
        if (std::strcmp(argv[i], "--temporal") == 0) o.temporal = true;
    format::Reader reader(argv[1]);
    report::Snapshot s = report::build_snapshot(reader, o);
    report::StackResolver resolver(reader);
    auto top = [&](uint32_t node) {
        report::Frame f;
        if (!resolver.top_frame(node, f)) f = {"???", "???", 0, false};
        return f;
    };
    for (const auto& l : s.locations) {
        report::Frame f = top(l.node);
        std::printf("location %s %u %llu %llu\n", f.function.c_str(), f.line,
                    (unsigned long long)l.count, (unsigned long long)l.bytes);
    }
    for (const auto& iv : s.intervals) {
        report::Frame f = top(s.locations[iv.location].node);
        std::string freed = iv.freed_in == report::IntervalAmount::k_never
                                ? "never"
                                : std::to_string(iv.freed_in);
        std::printf("interval %s %u %u %s %llu %llu\n", f.function.c_str(), f.line,
                    iv.allocated_in, freed.c_str(), (unsigned long long)iv.count,
                    (unsigned long long)iv.bytes);
    }
    std::printf("memory %zu peak %llu\n", s.memory.size(), (unsigned long long)s.peak_bytes);
    return 0;
}
