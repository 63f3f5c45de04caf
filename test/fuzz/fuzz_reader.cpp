// libFuzzer entry point for the capture reader: any byte string must either read cleanly or
// raise FormatError/FileError; never crash, hang, or allocate without bound; and the batched
// event API must see exactly what next() sees.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "format/block.hpp"
#include "format/encoder.hpp"
#include "format/reader.hpp"

using memray::format::Reader;

namespace {

struct Item {
    int kind;
    memray::format::Event e;
    uint64_t time, rss;
};

// Reads the whole file with next() alone (batched = false) or with next_events() in batches of
// varying size mixed with next(); both must see the same items and fail the same way.
int read_items(const std::string& path, bool batched, std::vector<Item>& out) {
    try {
        Reader r(path);
        memray::format::Event buf[7];
        size_t step = 0;
        for (;;) {
            if (batched) {
                size_t max = 1 + (step++ % 7);
                size_t k = r.next_events(buf, max);
                if (k > max) __builtin_trap();
                for (size_t i = 0; i < k; ++i) out.push_back({1, buf[i], 0, 0});
                if (k) continue;
            }
            auto item = r.next();
            if (item == Reader::Item::End) break;
            if (item == Reader::Item::Event) out.push_back({1, r.event(), 0, 0});
            else out.push_back({2, {}, r.sample().time_us, r.sample().rss});
        }
        // Walk every stack the file defines, as reports do, to catch cycles or dangling parents.
        const auto& nodes = r.nodes();
        for (size_t i = 1; i < nodes.size(); ++i) {
            uint32_t n = uint32_t(i);
            for (size_t depth = 0; n != 0 && n < nodes.size() && depth < 4096; ++depth) n = nodes[n].parent;
        }
        return 0;
    } catch (const memray::format::FormatError&) {
        return 1;
    } catch (const memray::format::FileError&) {
        return 2;
    }
}

int read_file_bytes(const uint8_t* data, size_t size) {
    static int fd = memfd_create("memray-fuzz", 0);
    if (fd < 0) return 0;
    if (ftruncate(fd, 0) != 0) return 0;
    if (size && pwrite(fd, data, size, 0) != ssize_t(size)) return 0;
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    std::vector<Item> a, b;
    int fail_a = read_items(path, false, a);
    int fail_b = read_items(path, true, b);
    if (fail_a != fail_b || a.size() != b.size()) __builtin_trap();
    for (size_t i = 0; i < a.size(); ++i) {
        const Item& x = a[i];
        const Item& y = b[i];
        if (x.kind != y.kind || x.time != y.time || x.rss != y.rss) __builtin_trap();
        if (x.kind == 1 && (x.e.allocator != y.e.allocator || x.e.thread != y.e.thread ||
                            x.e.address != y.e.address || x.e.size != y.e.size ||
                            x.e.node != y.e.node || x.e.time_us != y.e.time_us))
            __builtin_trap();
    }
    return int(a.size() & 1);
}

}  // namespace

// Also used by the regression runner (run_corpus.cpp) so both exercise exactly the same code.
// Checksums stop most mutations at the block boundary, so the input is also read a second time
// wrapped as the raw contents of one valid block, which drives the record decoder directly.
int read_capture_bytes(const uint8_t* data, size_t size) {
    int r = read_file_bytes(data, size);
    if (size > memray::format::k_max_block_raw) return r;
    using namespace memray::format;
    static std::vector<uint8_t> buf;
    buf.assign(4096 + max_framed_size(size), 0);
    ByteSink s(buf.data(), 4096);
    HeaderFields hf;
    encode_file_header(s, hf);
    size_t n = frame_block(data, size, Codec::Raw, buf.data() + s.size(), buf.size() - s.size());
    return r + read_file_bytes(buf.data(), s.size() + n);
}

#ifndef MEMRAY_FUZZ_NO_MAIN
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    read_capture_bytes(data, size);
    return 0;
}
#endif
