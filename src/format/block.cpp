#include "format/block.hpp"

#include <lz4.h>

#include <cstring>

namespace memray::format {

namespace {

// CRC-32C (Castagnoli): the SSE4.2 instruction computes it at several GB/s, which keeps the
// checksum off the report's critical path; the table is the fallback for CPUs without it.
struct Crc32cTable {
    uint32_t v[256];
    constexpr Crc32cTable() : v() {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82f63b78u ^ (c >> 1) : c >> 1;
            v[i] = c;
        }
    }
};
constexpr Crc32cTable k_crc_table;

uint32_t crc32c_table(const uint8_t* p, size_t n, uint32_t c) {
    for (size_t i = 0; i < n; ++i) c = k_crc_table.v[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_hw(const uint8_t* p, size_t n, uint32_t c) {
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        c64 = __builtin_ia32_crc32di(c64, w);
        p += 8;
        n -= 8;
    }
    c = uint32_t(c64);
    while (n--) c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}

// A plain load of libgcc's CPU model (filled by its constructor); no function-local static,
// whose guard would drag the C++ runtime into the payload.
bool have_sse42() { return __builtin_cpu_supports("sse4.2"); }
#endif

void put_le32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}
uint32_t get_le32(const uint8_t* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t seed) {
    const auto* p = static_cast<const uint8_t*>(data);
#if defined(__x86_64__)
    if (have_sse42()) return ~crc32c_hw(p, n, ~seed);
#endif
    return ~crc32c_table(p, n, ~seed);
}

size_t max_framed_size(size_t raw_len) {
    size_t lz = size_t(LZ4_compressBound(int(raw_len)));
    return k_block_header_size + (lz > raw_len ? lz : raw_len);
}

size_t frame_block(const uint8_t* raw, size_t raw_len, Codec codec, uint8_t* out, size_t out_cap) {
    if (raw_len > k_max_block_raw || out_cap < k_block_header_size) return 0;
    uint8_t* stored = out + k_block_header_size;
    size_t cap = out_cap - k_block_header_size;
    size_t stored_len = 0;
    if (codec == Codec::Lz4) {
        int n = LZ4_compress_default(reinterpret_cast<const char*>(raw),
                                     reinterpret_cast<char*>(stored), int(raw_len), int(cap));
        if (n > 0 && size_t(n) < raw_len) stored_len = size_t(n);
        else codec = Codec::Raw;
    }
    if (codec == Codec::Raw) {
        if (cap < raw_len) return 0;
        if (raw_len) std::memcpy(stored, raw, raw_len);
        stored_len = raw_len;
    }
    put_le32(out, k_block_magic);
    out[4] = uint8_t(codec);
    put_le32(out + 5, uint32_t(raw_len));
    put_le32(out + 9, uint32_t(stored_len));
    put_le32(out + 13, crc32c(stored, stored_len));
    return k_block_header_size + stored_len;
}

BlockStatus parse_block_header(const uint8_t* p, BlockHeader& out) {
    if (get_le32(p) != k_block_magic) return BlockStatus::BadMagic;
    if (p[4] > uint8_t(Codec::Lz4)) return BlockStatus::BadCodec;
    out.codec = Codec(p[4]);
    out.raw_len = get_le32(p + 5);
    out.stored_len = get_le32(p + 9);
    out.crc = get_le32(p + 13);
    if (out.raw_len > k_max_block_raw || out.stored_len > max_framed_size(k_max_block_raw))
        return BlockStatus::TooLarge;
    if (out.codec == Codec::Raw && out.stored_len != out.raw_len) return BlockStatus::TooLarge;
    return BlockStatus::Ok;
}

bool unframe_block(const BlockHeader& h, const uint8_t* stored, uint8_t* raw) {
    if (crc32c(stored, h.stored_len) != h.crc) return false;
    if (h.codec == Codec::Raw) {
        if (h.raw_len) std::memcpy(raw, stored, h.raw_len);
        return true;
    }
    int n = LZ4_decompress_safe(reinterpret_cast<const char*>(stored), reinterpret_cast<char*>(raw),
                                int(h.stored_len), int(h.raw_len));
    return n >= 0 && uint32_t(n) == h.raw_len;
}

}  // namespace memray::format
