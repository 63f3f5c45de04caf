// Writes small, valid captures covering every record type into a directory: the fuzzer's seeds.
#include <cstdio>
#include <string>
#include <vector>

#include "format/block.hpp"
#include "format/encoder.hpp"

using namespace memray::format;

namespace {

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return;
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
}

std::vector<uint8_t> make(Codec codec, int variant) {
    std::vector<uint8_t> out(8192), raw(8192), framed(16384);
    ByteSink h(out.data(), out.size());
    HeaderFields hf;
    hf.pid = 77;
    hf.command_line = "seed";
    hf.python_version = variant ? "3.12.1" : "";
    encode_file_header(h, hf);
    std::vector<uint8_t> file(out.data(), out.data() + h.size());
    ByteSink s(raw.data(), raw.size());
    EncoderState st;
    auto flush = [&] {
        size_t n = frame_block(raw.data(), s.size(), codec, framed.data(), framed.size());
        file.insert(file.end(), framed.data(), framed.data() + n);
        s.clear();
        st.reset();
    };
    encode_thread_info(s, 1, 10, "MainThread");
    const uint8_t lt[] = {0x80, 0x00, 0x82, 0x04, 0x06};
    encode_code(s, 1, "f", "a.py", 3, variant ? 0x030c : 0x0308, lt, sizeof lt);
    encode_python_node(s, st, 1, 0, 1, 2);
    encode_native_node(s, st, 2, 1, 0x401000);
    encode_objects_reset(s, 1);
    Segment seg{0, 0x1000};
    encode_object(s, 0x400000, "/bin/x", "\x01\x02", 2, &seg, 1);
    encode_thread_switch(s, st, 1);
    for (int i = 0; i < 20; ++i) {
        encode_time(s, st, uint64_t(i) * 1500);
        encode_allocation(s, st, Allocator((i % 9) + 1 == 2 ? 1 : (i % 9) + 1), 0x10000 + i * 64,
                          uint64_t(i) * 100 + 1, i % 2 ? 1 : 2);
        if (i % 3 == 0) encode_deallocation(s, st, Allocator::Free, 0x10000 + i * 64, 0);
    }
    // The short records (RecentMalloc, RecentFree) of both kinds: allocations at freed addresses.
    encode_allocation(s, st, Allocator::Malloc, 0x10000 + 3 * 64, 48, 1);
    encode_deallocation(s, st, Allocator::PymallocFree, 0x10000 + 4 * 64, 0);
    encode_allocation(s, st, Allocator::PymallocMalloc, 0x10000 + 4 * 64, 32, 2);
    encode_deallocation(s, st, Allocator::PymallocFree, 0x10000 + 4 * 64, 0);
    encode_memory_sample(s, 9000, 1 << 20);
    flush();
    encode_allocation(s, st, Allocator::Mmap, 0x7f0000000000, 8192, 2);
    encode_deallocation(s, st, Allocator::Munmap, 0x7f0000001000, 4096);
    TrailerFields t;
    t.allocations = 21;
    encode_trailer(s, t);
    flush();
    return file;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    write_file(dir + "/seed-lz4", make(Codec::Lz4, 0));
    write_file(dir + "/seed-raw", make(Codec::Raw, 1));
    return 0;
}
