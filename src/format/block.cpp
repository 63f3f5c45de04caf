#include "format/block.hpp"

#include <lz4.h>

#include <cstring>

namespace memray::format {

namespace {

struct Crc32Table {
    uint32_t v[256];
    constexpr Crc32Table() : v() {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            v[i] = c;
        }
    }
};
constexpr Crc32Table k_crc_table;

void put_le32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}
uint32_t get_le32(const uint8_t* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

}  // namespace

uint32_t crc32(const void* data, size_t n, uint32_t seed) {
    const auto* p = static_cast<const uint8_t*>(data);
    uint32_t c = ~seed;
    for (size_t i = 0; i < n; ++i) c = k_crc_table.v[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
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
    put_le32(out + 13, crc32(stored, stored_len));
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
    if (crc32(stored, h.stored_len) != h.crc) return false;
    if (h.codec == Codec::Raw) {
        if (h.raw_len) std::memcpy(raw, stored, h.raw_len);
        return true;
    }
    int n = LZ4_decompress_safe(reinterpret_cast<const char*>(stored), reinterpret_cast<char*>(raw),
                                int(h.stored_len), int(h.raw_len));
    return n >= 0 && uint32_t(n) == h.raw_len;
}

}  // namespace memray::format
