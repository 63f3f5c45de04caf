// libFuzzer entry point for the capture reader: any byte string must either read cleanly or
// raise FormatError/FileError; never crash, hang, or allocate without bound.
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

int read_file_bytes(const uint8_t* data, size_t size) {
    static int fd = memfd_create("memray-fuzz", 0);
    if (fd < 0) return 0;
    if (ftruncate(fd, 0) != 0) return 0;
    if (size && pwrite(fd, data, size, 0) != ssize_t(size)) return 0;
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    try {
        Reader r(path);
        uint64_t sum = 0;
        for (;;) {
            auto item = r.next();
            if (item == Reader::Item::End) break;
            if (item == Reader::Item::Event) sum += r.event().size + r.event().node;
            else sum += r.sample().rss;
        }
        // Walk every stack the file defines, as reports do, to catch cycles or dangling parents.
        const auto& nodes = r.nodes();
        for (size_t i = 1; i < nodes.size(); ++i) {
            uint32_t n = uint32_t(i);
            for (size_t depth = 0; n != 0 && n < nodes.size() && depth < 4096; ++depth) n = nodes[n].parent;
        }
        return int(sum & 1);
    } catch (const memray::format::FormatError&) {
    } catch (const memray::format::FileError&) {
    }
    return 0;
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
