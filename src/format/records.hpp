// The capture format: constants, record tags and allocator kinds.
// docs/capture-format.md is the prose version of this file; change both together and bump
// k_format_version on every change to a layout.
//
// This header is shared by the payload (no exceptions, no libstdc++ runtime) and the tools, so it
// may only use freestanding headers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memray::format {

// File layout:  FileHeader | Block | Block | ... (until EOF)
//   FileHeader := magic[8] u32le(version) u32le(body_len) body[body_len]
//   Block      := u32le(k_block_magic) u8(codec) u32le(raw_len) u32le(stored_len)
//                 u32le(crc32c of the stored bytes) stored[stored_len]
// A block's raw bytes are a sequence of whole records. Delta state (time, thread, address, node)
// starts from zero at every block, so every block decodes on its own once the interning records
// (code, node, thread, object) that precede it are known.
inline constexpr uint8_t k_file_magic[8] = {'M', 'E', 'M', 'R', 'A', 'Y', 'C', 'P'};
// History: 1 first release; 2 Node kind 2 (Python entry frame); 3 aggregated captures
// (HeapSample, AggregateLocation, Checkpoint); 4 short records for frees of recent allocations
// and allocations at recently freed addresses (tags 0x40-0xbf), one-byte thread switches (tags
// 0xc0-0xff). A reader accepts exactly its own version: the version is checked before anything
// else in the file is read.
inline constexpr uint32_t k_format_version = 4;
inline constexpr uint32_t k_block_magic = 0x4b4c424d;  // "MBLK" little-endian
inline constexpr size_t k_block_header_size = 17;
// A writer never produces larger blocks; a reader rejects them (protects against corrupt lengths).
inline constexpr uint32_t k_max_block_raw = 4u << 20;

enum class Codec : uint8_t { Raw = 0, Lz4 = 1 };

// Same numbering as memray's AllocatorType so that users and tools see familiar values.
enum class Allocator : uint8_t {
    Malloc = 1,
    Free = 2,
    Calloc = 3,
    Realloc = 4,
    PosixMemalign = 5,
    AlignedAlloc = 6,
    Memalign = 7,
    Valloc = 8,
    Pvalloc = 9,
    Mmap = 10,
    Munmap = 11,
    PymallocMalloc = 12,
    PymallocCalloc = 13,
    PymallocRealloc = 14,
    PymallocFree = 15,
};
inline constexpr unsigned k_allocator_max = 15;

constexpr bool is_deallocator(Allocator a) {
    return a == Allocator::Free || a == Allocator::Munmap || a == Allocator::PymallocFree;
}

constexpr const char* allocator_name(Allocator a) {
    switch (a) {
        case Allocator::Malloc: return "MALLOC";
        case Allocator::Free: return "FREE";
        case Allocator::Calloc: return "CALLOC";
        case Allocator::Realloc: return "REALLOC";
        case Allocator::PosixMemalign: return "POSIX_MEMALIGN";
        case Allocator::AlignedAlloc: return "ALIGNED_ALLOC";
        case Allocator::Memalign: return "MEMALIGN";
        case Allocator::Valloc: return "VALLOC";
        case Allocator::Pvalloc: return "PVALLOC";
        case Allocator::Mmap: return "MMAP";
        case Allocator::Munmap: return "MUNMAP";
        case Allocator::PymallocMalloc: return "PYMALLOC_MALLOC";
        case Allocator::PymallocCalloc: return "PYMALLOC_CALLOC";
        case Allocator::PymallocRealloc: return "PYMALLOC_REALLOC";
        case Allocator::PymallocFree: return "PYMALLOC_FREE";
    }
    return "UNKNOWN";
}

// Header flags (varint in the header body).
enum HeaderFlag : uint32_t {
    k_flag_native = 1u << 0,             // native return addresses recorded
    k_flag_python_allocators = 1u << 1,  // PYMALLOC_* events recorded
    k_flag_aggregated = 1u << 2,         // --aggregate: checkpoints instead of events
    k_flag_compressed = 1u << 3,         // blocks use Codec::Lz4
};

// Header body, in order:
//   varint flags, varint pid, varint start_time_unix_ms, string command_line,
//   string python_version ("" when the target is not a Python interpreter), string executable,
//   varint pointer_size (8), string python_allocator (CPython's allocator name at capture start,
//   e.g. "pymalloc" or "pymalloc_debug"; "" when not Python or unknown)
//
// Record tags (first byte of every record). varint = unsigned prefix varint: a value that needs
// n <= 8 groups of 7 bits is stored in n bytes as little-endian (v << n) | (1 << (n - 1)), i.e. the
// count of trailing zero bits of the first byte + 1 is the length; larger values are a 0x00 byte
// followed by 8 little-endian bytes. zvarint = zigzag then varint. string/bytes = varint length
// + bytes.
enum class Tag : uint8_t {
    // varint: microseconds since capture start, as a delta from the previous Time of this block.
    // Every event and sample after it happened at (or within 1 ms after) that time.
    Time = 0x01,
    // varint: thread index (small, sequential from 1) of the events that follow in this block.
    // Indices below k_short_thread_limit take the one-byte form (k_short_thread_switch_tag).
    ThreadSwitch = 0x02,
    // varint thread index, varint native tid, string name. Emitted when a thread is first seen and
    // whenever it is renamed; the latest name wins.
    ThreadInfo = 0x03,
    // varint code id (from 1), string function (qualified name where available), string file,
    // varint first line, varint line-table format (python version as 0xMMmm, e.g. 0x030b),
    // bytes line table (co_lnotab / co_linetable copied verbatim).
    Code = 0x04,
    // zvarint node id delta (from previous Node of this block), varint parent node id (0 = root),
    // u8 frame kind (0 python, 1 native, 2 python entry), then python: varint code id, varint
    // instruction byte offset; native: varint instruction pointer (return address as captured).
    // "Python entry" marks the outermost Python frame run by one call of the interpreter's eval
    // loop (_PyEval_EvalFrameDefault): 3.11+ runs Python-to-Python calls inside one such call,
    // so hybrid stacks need it to put Python frames in place of the right eval-loop frames.
    // Writers for 3.8-3.10, where every frame has its own eval-loop call, mark every frame.
    // A node is one frame in the stack tree; an event's stack is the path from its node to the
    // root, innermost first. With native frames, the payload writes a stack as [native frames
    // outer..innermost eval-loop call][python frames outer..inner][native frames of that call]
    // on the same path; readers must not rely on how the two kinds interleave (older captures
    // have all native frames first, or the Python frames first).
    Node = 0x05,
    // varint generation: the Object records that follow replace the previous set.
    ObjectsReset = 0x06,
    // varint load bias, string path, bytes build id, varint segment count,
    // then per segment varint vaddr (unbiased), varint memsz.
    Object = 0x07,
    // varint time (microseconds since capture start, absolute), varint rss bytes.
    MemorySample = 0x08,
    // varint end time (microseconds since capture start), varint allocation events,
    // varint deallocation events, varint thread count, varint code count, varint node count.
    // The last record of a capture that was finalized; its absence means the capture was cut.
    Trailer = 0x09,
    // --- Aggregated captures only (header flag k_flag_aggregated). Such a file holds no events
    // and no MemorySample; it is a stream of checkpoints. A checkpoint is every record after the
    // previous Checkpoint record (interning records and HeapSamples new since then, then the
    // whole location table as of now) up to and including its own Checkpoint record. A reader
    // uses the last complete checkpoint and ignores what follows it (a killed process).
    //
    // varint time (microseconds since capture start, absolute), varint rss bytes, varint tracked
    // heap bytes at that time.
    HeapSample = 0x0a,
    // One location (stack node, thread, allocator) of the current checkpoint: zvarint node delta
    // (from the previous AggregateLocation of this block), varint thread index, u8 allocator,
    // varint allocations and varint bytes alive at the high-water mark so far, varint
    // allocations and varint bytes alive now. Locations come in the order of their first
    // allocation; those with all four numbers zero are left out.
    AggregateLocation = 0x0b,
    // Ends a checkpoint: varint time (microseconds since capture start), varint allocation
    // events, varint deallocation events, varint bytes allocated, varint heap now, varint
    // high-water mark, varint time of the high-water mark (latest on ties), varint number of
    // AggregateLocation records in this checkpoint.
    Checkpoint = 0x0c,
    // Events: tag = k_event_tag_base + allocator.
    //   allocation kinds:      zvarint address delta, varint size, zvarint node delta
    //   Free / PymallocFree:   zvarint address delta
    //   Munmap:                zvarint address delta, varint size
    // Deltas are against the previous event of the same block (address) and the previous
    // allocation of the same block (node).
    // RecentFree and RecentMalloc (below): tags 0x40-0xbf.
};
inline constexpr uint8_t k_event_tag_base = 0x20;

constexpr uint8_t event_tag(Allocator a) { return uint8_t(k_event_tag_base + uint8_t(a)); }
constexpr bool is_event_tag(uint8_t tag) {
    return tag > k_event_tag_base && tag <= k_event_tag_base + k_allocator_max;
}

// The recent tables, zero at the start of every block, k_recent_slots addresses each, indexed by
// recent_slot(address): `allocated` holds the address of every allocation event (any kind),
// `freed` that of every Free and PymallocFree. Two short records use them; neither touches the
// address delta state:
//   RecentFree: one byte, k_recent_free_tag + slot (Free) or k_recent_pymalloc_free_tag + slot
//     (PymallocFree): a free of allocated[slot].
//   RecentMalloc: k_recent_malloc_tag + slot (Malloc) or k_recent_pymalloc_malloc_tag + slot
//     (PymallocMalloc), then varint size, zvarint node delta: an allocation at freed[slot].
// Objects die young and allocators hand a freed block straight back: on malloc-heavy Python
// ~44% of frees and ~42% of allocations take these forms, and lz4 then finds the rest repetitive
// (1.95 -> 1.01 bytes per event); on native churn, -10%.
inline constexpr unsigned k_recent_bits = 5;
inline constexpr unsigned k_recent_slots = 1u << k_recent_bits;
inline constexpr uint8_t k_recent_free_tag = 0x40;
inline constexpr uint8_t k_recent_pymalloc_free_tag = 0x60;
inline constexpr uint8_t k_recent_malloc_tag = 0x80;
inline constexpr uint8_t k_recent_pymalloc_malloc_tag = 0xa0;
constexpr unsigned recent_slot(uint64_t address) {
    return unsigned(((address >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - k_recent_bits));
}
constexpr bool is_recent_tag(uint8_t tag) {
    return tag >= k_recent_free_tag && tag < k_recent_pymalloc_malloc_tag + k_recent_slots;
}
constexpr bool is_recent_free_tag(uint8_t tag) {
    return tag >= k_recent_free_tag && tag < k_recent_malloc_tag;
}
constexpr Allocator recent_kind(uint8_t tag) {
    switch (tag >> k_recent_bits) {
        case k_recent_free_tag >> k_recent_bits: return Allocator::Free;
        case k_recent_pymalloc_free_tag >> k_recent_bits: return Allocator::PymallocFree;
        case k_recent_malloc_tag >> k_recent_bits: return Allocator::Malloc;
        default: return Allocator::PymallocMalloc;
    }
}

// A ThreadSwitch to thread index i < k_short_thread_limit is the one byte
// k_short_thread_switch_tag + i. Events of concurrent threads interleave in the merged stream: a
// fifth of a two-thread native capture's events follow a switch.
inline constexpr uint8_t k_short_thread_switch_tag = 0xc0;
inline constexpr uint32_t k_short_thread_limit = 64;

// PythonEntry is only a record value: readers give StackNode{kind Python, entry true}.
enum class FrameKind : uint8_t { Python = 0, Native = 1, PythonEntry = 2 };

}  // namespace memray::format
