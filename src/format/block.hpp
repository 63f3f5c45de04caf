// Block framing shared by the payload's writer and the tools' reader. Freestanding: the payload
// links this file too, so no allocation and no exceptions here.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/records.hpp"

namespace memray::format {

// CRC-32C (Castagnoli) of the stored bytes of a block.
uint32_t crc32c(const void* data, size_t n, uint32_t seed = 0);

// Upper bound of the framed size of a block with `raw_len` raw bytes.
size_t max_framed_size(size_t raw_len);

// Frames `raw` (raw_len <= k_max_block_raw) into `out`. With Codec::Lz4 falls back to Codec::Raw
// when compression does not help. Returns the framed size, or 0 when `out_cap` is too small.
size_t frame_block(const uint8_t* raw, size_t raw_len, Codec codec, uint8_t* out, size_t out_cap);

struct BlockHeader {
    Codec codec;
    uint32_t raw_len;
    uint32_t stored_len;
    uint32_t crc;
};

enum class BlockStatus { Ok, BadMagic, BadCodec, TooLarge };

// Parses the fixed k_block_header_size bytes at `p`.
BlockStatus parse_block_header(const uint8_t* p, BlockHeader& out);

// Decodes the stored bytes into `raw` (capacity >= h.raw_len). Returns false when the checksum
// or decompression fails.
bool unframe_block(const BlockHeader& h, const uint8_t* stored, uint8_t* raw);

}  // namespace memray::format
