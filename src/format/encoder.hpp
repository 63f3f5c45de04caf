// The one encoder of the capture format. Header-only and freestanding (no allocation, no
// exceptions) because the payload's writer thread uses it inside the target process.
//
// All writes go into a caller-owned ByteSink; when it runs out of room the sink records the
// overflow and the caller must flush and retry with a bigger buffer (records are small, except
// Code/Object records, which are bounded by the strings the caller passes in).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "format/records.hpp"

namespace memray::format {

// Prefix varints (records.hpp): the number of bytes is in the trailing zero bits of the first
// byte, so the reader decodes a value without a loop or a data-dependent branch. A value of more
// than 56 bits is 0x00 and 8 bytes.
// Bytes of a varint by the count of leading zero bits of the value (v | 1): a table, because the
// writer thread encodes several varints per event and the arithmetic form costs a multiply-divide
// chain each (a sixth of its encoding time on a malloc-heavy Python capture).
struct VarintSizes {
    uint8_t by_clz[64];
    constexpr VarintSizes() : by_clz{} {
        for (unsigned clz = 0; clz < 64; ++clz) {
            unsigned n = (64 - clz + 6) / 7;
            by_clz[clz] = uint8_t(n > 8 ? 9 : n);
        }
    }
};
inline constexpr VarintSizes k_varint_sizes{};
inline unsigned varint_size(uint64_t v) { return k_varint_sizes.by_clz[__builtin_clzll(v | 1)]; }
// The n <= 8 bytes of v's varint, little-endian: (v << n) | 1 << (n - 1), with one shift.
inline uint64_t varint_word(uint64_t v, unsigned n) { return ((v << 1) | 1) << (n - 1); }
inline uint64_t zigzag(int64_t v) { return (uint64_t(v) << 1) ^ uint64_t(v >> 63); }
// Writes v's varint at p, which must have 9 bytes of room (a short value stores 8 bytes; those
// past its end are overwritten later). Returns the end of the varint.
inline uint8_t* store_varint(uint8_t* p, uint64_t v) {
    unsigned n = varint_size(v);
    if (n == 9) [[unlikely]] {
        *p = 0;
        std::memcpy(p + 1, &v, 8);
        return p + 9;
    }
    uint64_t w = varint_word(v, n);
    std::memcpy(p, &w, 8);
    return p + n;
}

struct ByteSink {
    uint8_t* begin = nullptr;
    uint8_t* pos = nullptr;
    uint8_t* end = nullptr;
    bool overflow = false;

    ByteSink() = default;
    ByteSink(uint8_t* buf, size_t cap) : begin(buf), pos(buf), end(buf + cap) {}
    size_t size() const { return size_t(pos - begin); }
    size_t room() const { return size_t(end - pos); }
    void clear() {
        pos = begin;
        overflow = false;
    }

    void put_u8(uint8_t v) {
        if (pos < end) *pos++ = v;
        else overflow = true;
    }
    void put_le32(uint32_t v) {
        for (int i = 0; i < 4; ++i) put_u8(uint8_t(v >> (8 * i)));
    }
    void put_varint(uint64_t v) {
        if (room() >= 9) {
            pos = store_varint(pos, v);
            return;
        }
        unsigned n = varint_size(v);  // near the end of the buffer: byte by byte
        if (room() < n) {
            overflow = true;
            return;
        }
        uint64_t w = varint_word(v, n);  // n <= 8 here: room() < 9
        for (unsigned i = 0; i < n; ++i) pos[i] = uint8_t(w >> (8 * i));
        pos += n;
    }
    void put_zvarint(int64_t v) { put_varint(zigzag(v)); }
    void put_bytes(const void* data, size_t n) {
        put_varint(n);
        if (room() < n) {
            overflow = true;
            return;
        }
        if (n) std::memcpy(pos, data, n);
        pos += n;
    }
    void put_string(const char* s) { put_bytes(s, s ? std::strlen(s) : 0); }
};

// A sink without bounds checks for the writer's hot path: the caller guarantees
// k_unchecked_room bytes of room, enough for a thread switch, a time record and an event (each
// varint at most 9 bytes) plus the 8 bytes store_varint may store past its value.
struct UncheckedSink {
    uint8_t* pos;
    static constexpr size_t k_unchecked_room = (1 + 9) + (1 + 9) + (1 + 3 * 9) + 8;

    void put_u8(uint8_t v) { *pos++ = v; }
    void put_varint(uint64_t v) { pos = store_varint(pos, v); }
    void put_zvarint(int64_t v) { put_varint(zigzag(v)); }
};

// Delta state of one block. Reset it whenever a new block starts.
struct EncoderState {
    uint64_t time_us = 0;
    uint32_t thread = 0;
    uint64_t address = 0;
    uint32_t node = 0;
    uint32_t last_node_id = 0;  // for Node record id deltas
    uint64_t allocated[k_recent_slots] = {};  // the recent tables (records.hpp)
    uint64_t freed[k_recent_slots] = {};
    void reset() { *this = EncoderState{}; }
};

struct HeaderFields {
    uint32_t flags = 0;
    uint64_t pid = 0;
    uint64_t start_time_unix_ms = 0;
    const char* command_line = "";
    const char* python_version = "";
    const char* executable = "";
    const char* python_allocator = "";
};

// Writes magic, version, body length and body.
inline void encode_file_header(ByteSink& out, const HeaderFields& h) {
    for (uint8_t b : k_file_magic) out.put_u8(b);
    out.put_le32(k_format_version);
    uint8_t* len_at = out.pos;
    out.put_le32(0);
    uint8_t* body = out.pos;
    out.put_varint(h.flags);
    out.put_varint(h.pid);
    out.put_varint(h.start_time_unix_ms);
    out.put_string(h.command_line);
    out.put_string(h.python_version);
    out.put_string(h.executable);
    out.put_varint(8);
    out.put_string(h.python_allocator);
    if (out.overflow) return;
    uint32_t body_len = uint32_t(out.pos - body);
    for (int i = 0; i < 4; ++i) len_at[i] = uint8_t(body_len >> (8 * i));
}

// Emits a Time record only when `time_us` moved on by at least 1 ms since the last one, so events
// cost nothing for time and temporal reports still get millisecond resolution.
template <class Sink>
inline void encode_time(Sink& out, EncoderState& st, uint64_t time_us, bool force = false) {
    if (!force && st.time_us != 0 && time_us < st.time_us + 1000) return;
    if (time_us < st.time_us) return;  // never go back in time within a block
    out.put_u8(uint8_t(Tag::Time));
    out.put_varint(time_us - st.time_us);
    st.time_us = time_us;
}

template <class Sink>
inline void encode_thread_switch(Sink& out, EncoderState& st, uint32_t thread) {
    if (st.thread == thread) return;
    st.thread = thread;
    if (thread < k_short_thread_limit) {
        out.put_u8(uint8_t(k_short_thread_switch_tag + thread));
        return;
    }
    out.put_u8(uint8_t(Tag::ThreadSwitch));
    out.put_varint(thread);
}

inline void encode_thread_info(ByteSink& out, uint32_t thread, uint64_t tid, const char* name) {
    out.put_u8(uint8_t(Tag::ThreadInfo));
    out.put_varint(thread);
    out.put_varint(tid);
    out.put_string(name);
}

inline void encode_code(ByteSink& out, uint32_t code_id, const char* function, const char* file,
                        uint32_t first_line, uint32_t line_format, const void* line_table,
                        size_t line_table_len) {
    out.put_u8(uint8_t(Tag::Code));
    out.put_varint(code_id);
    out.put_string(function);
    out.put_string(file);
    out.put_varint(first_line);
    out.put_varint(line_format);
    out.put_bytes(line_table, line_table_len);
}

inline void encode_python_node(ByteSink& out, EncoderState& st, uint32_t id, uint32_t parent,
                               uint32_t code_id, uint32_t offset, bool entry = false) {
    out.put_u8(uint8_t(Tag::Node));
    out.put_zvarint(int64_t(id) - int64_t(st.last_node_id));
    st.last_node_id = id;
    out.put_varint(parent);
    out.put_u8(uint8_t(entry ? FrameKind::PythonEntry : FrameKind::Python));
    out.put_varint(code_id);
    out.put_varint(offset);
}

inline void encode_native_node(ByteSink& out, EncoderState& st, uint32_t id, uint32_t parent,
                               uint64_t ip) {
    out.put_u8(uint8_t(Tag::Node));
    out.put_zvarint(int64_t(id) - int64_t(st.last_node_id));
    st.last_node_id = id;
    out.put_varint(parent);
    out.put_u8(uint8_t(FrameKind::Native));
    out.put_varint(ip);
}

inline void encode_objects_reset(ByteSink& out, uint64_t generation) {
    out.put_u8(uint8_t(Tag::ObjectsReset));
    out.put_varint(generation);
}

struct Segment {
    uint64_t vaddr;
    uint64_t memsz;
};

inline void encode_object(ByteSink& out, uint64_t load_bias, const char* path,
                          const void* build_id, size_t build_id_len, const Segment* segments,
                          size_t n_segments) {
    out.put_u8(uint8_t(Tag::Object));
    out.put_varint(load_bias);
    out.put_string(path);
    out.put_bytes(build_id, build_id_len);
    out.put_varint(n_segments);
    for (size_t i = 0; i < n_segments; ++i) {
        out.put_varint(segments[i].vaddr);
        out.put_varint(segments[i].memsz);
    }
}

inline void encode_memory_sample(ByteSink& out, uint64_t time_us, uint64_t rss) {
    out.put_u8(uint8_t(Tag::MemorySample));
    out.put_varint(time_us);
    out.put_varint(rss);
}

template <class Sink>
inline void encode_allocation(Sink& out, EncoderState& st, Allocator kind, uint64_t address,
                          uint64_t size, uint32_t node) {
    unsigned slot = recent_slot(address);
    if ((kind == Allocator::Malloc || kind == Allocator::PymallocMalloc) &&
        st.freed[slot] == address) {
        uint8_t base =
            kind == Allocator::Malloc ? k_recent_malloc_tag : k_recent_pymalloc_malloc_tag;
        out.put_u8(uint8_t(base + slot));
    } else {
        out.put_u8(event_tag(kind));
        out.put_zvarint(int64_t(address - st.address));
        st.address = address;
    }
    out.put_varint(size);
    out.put_zvarint(int64_t(node) - int64_t(st.node));
    st.node = node;
    st.allocated[slot] = address;
}

template <class Sink>
inline void encode_deallocation(Sink& out, EncoderState& st, Allocator kind, uint64_t address,
                            uint64_t size) {
    if (kind != Allocator::Munmap) {
        unsigned slot = recent_slot(address);
        st.freed[slot] = address;
        if (st.allocated[slot] == address) {
            out.put_u8(uint8_t(
                (kind == Allocator::Free ? k_recent_free_tag : k_recent_pymalloc_free_tag) + slot));
            return;
        }
    }
    out.put_u8(event_tag(kind));
    out.put_zvarint(int64_t(address - st.address));
    st.address = address;
    if (kind == Allocator::Munmap) out.put_varint(size);
}

inline void encode_heap_sample(ByteSink& out, uint64_t time_us, uint64_t rss, uint64_t heap) {
    out.put_u8(uint8_t(Tag::HeapSample));
    out.put_varint(time_us);
    out.put_varint(rss);
    out.put_varint(heap);
}

struct AggregateAmounts {
    uint64_t peak_count = 0;
    uint64_t peak_bytes = 0;
    uint64_t end_count = 0;
    uint64_t end_bytes = 0;
};

inline void encode_aggregate_location(ByteSink& out, EncoderState& st, uint32_t node,
                                      uint32_t thread, Allocator allocator,
                                      const AggregateAmounts& a) {
    out.put_u8(uint8_t(Tag::AggregateLocation));
    out.put_zvarint(int64_t(node) - int64_t(st.node));
    st.node = node;
    out.put_varint(thread);
    out.put_u8(uint8_t(allocator));
    out.put_varint(a.peak_count);
    out.put_varint(a.peak_bytes);
    out.put_varint(a.end_count);
    out.put_varint(a.end_bytes);
}

struct CheckpointFields {
    uint64_t time_us = 0;
    uint64_t allocations = 0;
    uint64_t deallocations = 0;
    uint64_t total_bytes = 0;
    uint64_t heap = 0;
    uint64_t peak_bytes = 0;
    uint64_t peak_time_us = 0;
    uint64_t locations = 0;
};

inline void encode_checkpoint(ByteSink& out, const CheckpointFields& c) {
    out.put_u8(uint8_t(Tag::Checkpoint));
    out.put_varint(c.time_us);
    out.put_varint(c.allocations);
    out.put_varint(c.deallocations);
    out.put_varint(c.total_bytes);
    out.put_varint(c.heap);
    out.put_varint(c.peak_bytes);
    out.put_varint(c.peak_time_us);
    out.put_varint(c.locations);
}

struct TrailerFields {
    uint64_t end_time_us = 0;
    uint64_t allocations = 0;
    uint64_t deallocations = 0;
    uint64_t threads = 0;
    uint64_t codes = 0;
    uint64_t nodes = 0;
};

inline void encode_trailer(ByteSink& out, const TrailerFields& t) {
    out.put_u8(uint8_t(Tag::Trailer));
    out.put_varint(t.end_time_us);
    out.put_varint(t.allocations);
    out.put_varint(t.deallocations);
    out.put_varint(t.threads);
    out.put_varint(t.codes);
    out.put_varint(t.nodes);
}

}  // namespace memray::format
