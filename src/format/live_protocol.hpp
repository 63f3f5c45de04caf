// The live stream's transport (docs/live.md, "The stream"): what travels over the TCP connection
// between a tracked process (payload/socket_sink) and a viewer (live/stream_source). One owner
// for both sides, like the settings. Freestanding: the payload includes it.
//
//   viewer -> target: k_live_hello
//   target -> viewer: k_live_hello, then chunks: [type u8][length u32 le][length bytes]
//     'C' capture bytes: the capture file's header, then framed blocks, exactly as in a file
//     'D' 8 bytes, u64 le: blocks dropped so far because the viewer fell behind; the blocks
//         after a drop may name stack nodes and code objects that were in the dropped ones
//
// A peer whose first bytes are not the hello is not ours (or of another protocol version): the
// target drops that connection and keeps waiting, the viewer reports it in one line.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memray::format {

inline constexpr char k_live_hello[] = "memray-live 1\n";
inline constexpr size_t k_live_hello_len = sizeof k_live_hello - 1;
inline constexpr size_t k_live_hello_prefix_len = 12;  // "memray-live " (same protocol, any version)
inline constexpr uint8_t k_live_chunk_capture = 'C';
inline constexpr uint8_t k_live_chunk_dropped = 'D';
inline constexpr size_t k_live_chunk_header = 5;

}  // namespace memray::format
