// `memray transform`: a snapshot written in formats other tools read.
//   gprof2dot   JSON for gprof2dot (memray's layout: one event per location, cost = bytes)
//   csv         memray's columns: allocator, num_allocations, size, tid, thread_name,
//               stack_trace (frames "function;file;line" joined by '|', innermost first)
//   speedscope  speedscope's file format: two sampled profiles, "Memory" (bytes) and
//               "Allocations" (count)
//   pprof       gzipped profile.proto (google/pprof): sample types inuse_objects/count and
//               inuse_space/bytes for the high-water mark and leaks, alloc_objects/count and
//               alloc_space/bytes for temporary allocations; labels "thread" and "allocator"
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "format/reader.hpp"
#include "report/snapshot.hpp"
#include "report/stack_resolver.hpp"

namespace memray::report {

enum class TransformFormat { Gprof2dot, Csv, Speedscope, Pprof };

// Case-insensitive, as memray; nullopt for an unknown name.
std::optional<TransformFormat> parse_transform_format(std::string_view name);
const char* transform_format_name(TransformFormat f);
// The default output's suffix (memray's for its formats): ".json", ".csv", ".speedscope.json",
// ".pb.gz".
const char* transform_suffix(TransformFormat f);

struct TransformOptions {
    // csv: one row per thread (tid = the capture's thread index, thread_name "0x1 (name)");
    // otherwise threads are merged as memray does (tid -1, "merged thread"). pprof always
    // labels samples with their thread.
    bool split_threads = false;
    std::string exporter = "memray";  // speedscope's "exporter"
};

// The file's contents (binary for pprof).
std::string render_transform(TransformFormat f, const Snapshot& s, const StackResolver& resolver,
                             const format::Header& header, const TransformOptions& o = {});

}  // namespace memray::report
