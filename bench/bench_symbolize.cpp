// Driver of bench/bench_symbolize.py: symbolises a list of native return addresses with
// report::Symbolizer, the way a report does (each distinct address once, objects as a capture
// holds them), and prints one JSON line of timings and counts.
//
// usage: bench_symbolize ADDRESSES OBJECT...
//   OBJECT    PATH:LOAD_BIAS_HEX:BUILD_ID_HEX (build-id may be empty)
//   ADDRESSES text file, one "OBJECT_INDEX RETURN_ADDRESS_HEX" per line
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "report/symbolizer.hpp"

namespace {

std::string from_hex(const std::string& hex) {
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(char(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s ADDRESSES PATH:BIAS:BUILD_ID...\n", argv[0]);
        return 2;
    }
    std::vector<memray::format::ObjectInfo> objects;
    for (int i = 2; i < argc; ++i) {
        std::string spec = argv[i];
        auto a = spec.find(':'), b = spec.find(':', a + 1);
        memray::format::ObjectInfo o;
        o.path = spec.substr(0, a);
        o.load_bias = std::stoull(spec.substr(a + 1, b - a - 1), nullptr, 16);
        o.build_id = from_hex(spec.substr(b + 1));
        objects.push_back(o);
    }
    std::vector<std::pair<uint32_t, uint64_t>> addresses;
    std::ifstream in(argv[1]);
    uint32_t index;
    std::string hex;
    while (in >> index >> hex) addresses.emplace_back(index, std::stoull(hex, nullptr, 16));

    memray::report::Symbolizer symbolizer;
    size_t frames = 0, with_function = 0, with_line = 0, inlined = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (const auto& [obj, address] : addresses) {
        const auto& result = symbolizer.symbolize(objects.at(obj), obj, address);
        frames += result.size();
        if (!result.empty() && !result.back().function.empty()) ++with_function;
        if (!result.empty() && result.front().line != 0) ++with_line;
        if (result.size() > 1) ++inlined;
    }
    double first = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    size_t again = 0;
    for (const auto& [obj, address] : addresses)
        again += symbolizer.symbolize(objects.at(obj), obj, address).size();
    if (again != frames)
        std::fprintf(stderr, "cached pass disagrees: %zu != %zu frames\n", again, frames);
    double cached = seconds_since(t0);
    auto warnings = symbolizer.take_warnings();
    fmt::print(
        "{{\"addresses\": {}, \"first_pass_s\": {:.3f}, \"cached_pass_s\": {:.4f}, \"frames\": {}, "
        "\"with_function\": {}, \"with_line\": {}, \"with_inlined\": {}, \"warnings\": {}}}\n",
        addresses.size(), first, cached, frames, with_function, with_line, inlined,
        warnings.size());
    for (const auto& w : warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    return 0;
}
