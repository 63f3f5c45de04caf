// Streaming reader of capture files (tools only: uses the standard library and exceptions).
//
// Memory is bounded by the interning tables (threads, code objects, stack nodes, objects) and one
// block; never by file size. Events and memory samples are handed out one at a time; the interning
// records are absorbed into the tables below as they stream past, and can also be observed one by
// one through a RecordListener (used by `memray parse`).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "format/encoder.hpp"
#include "format/records.hpp"

namespace memray::format {

// Not a capture, unsupported version, or corrupt contents. what() is a complete sentence that
// names the file and the byte offset.
class FormatError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// A capture of another format version (older or newer): nothing after the version is read.
// what() is "<path>: unsupported capture version N (this memray reads M)".
class UnsupportedVersionError : public FormatError {
  public:
    UnsupportedVersionError(const std::string& what, uint32_t version)
        : FormatError(what), m_version(version) {}
    uint32_t version() const { return m_version; }

  private:
    uint32_t m_version;
};

// The file cannot be opened or read. what() names the file and the OS error.
class FileError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct Header {
    uint32_t version = 0;
    uint32_t flags = 0;
    uint64_t pid = 0;
    uint64_t start_time_unix_ms = 0;
    std::string command_line;
    std::string python_version;
    std::string executable;
    uint32_t pointer_size = 8;
    // CPython's name for its allocator at capture start, as _PyMem_GetCurrentAllocatorName()
    // gives it ("pymalloc", "pymalloc_debug", "malloc", "malloc_debug", "mimalloc", ...);
    // "" when the target is not Python or the interpreter did not say.
    std::string python_allocator;
};

struct Event {
    Allocator allocator = Allocator::Malloc;
    uint32_t thread = 0;     // index into Reader::threads() (0 = unknown)
    uint64_t address = 0;
    uint64_t size = 0;       // 0 for Free/PymallocFree
    uint32_t node = 0;       // stack node (0 = empty stack); deallocations have 0
    uint64_t time_us = 0;    // since capture start, millisecond resolution
};

struct MemorySample {
    uint64_t time_us = 0;
    uint64_t rss = 0;
};

struct ThreadInfo {
    uint64_t tid = 0;
    std::string name;
};

struct CodeInfo {
    std::string function;
    std::string file;
    uint32_t first_line = 0;
    uint32_t line_format = 0;  // python version 0xMMmm
    std::string line_table;
};

struct StackNode {
    uint32_t parent = 0;
    FrameKind kind = FrameKind::Python;
    uint32_t code = 0;    // python
    uint32_t offset = 0;  // python: instruction byte offset
    uint64_t ip = 0;      // native
    bool entry = false;   // python: first frame of an eval-loop call (records.hpp, Node)
};

struct ObjectInfo {
    uint64_t load_bias = 0;
    std::string path;
    std::string build_id;
    std::vector<std::pair<uint64_t, uint64_t>> segments;  // (vaddr, memsz), unbiased
};

using Trailer = TrailerFields;

// Aggregated captures (records.hpp, HeapSample .. Checkpoint).
struct HeapSample {
    uint64_t time_us = 0;
    uint64_t rss = 0;
    uint64_t heap = 0;  // tracked heap at that time
};

struct AggregateLocation {
    uint32_t node = 0;
    uint32_t thread = 0;
    Allocator allocator = Allocator::Malloc;
    AggregateAmounts amounts;
};

// The last complete checkpoint of an aggregated capture: its location table, the heap samples
// up to it and its totals. Empty (checkpoints == 0) until one has been read.
struct Aggregate {
    uint64_t checkpoints = 0;
    CheckpointFields totals;
    std::vector<AggregateLocation> locations;  // in order of first allocation
    std::vector<HeapSample> samples;
};

// Sees every record in file order, before the reader absorbs it. Offsets are of the block.
class RecordListener {
  public:
    virtual ~RecordListener() = default;
    virtual void on_block(uint64_t /*file_offset*/, Codec /*codec*/, uint32_t /*raw_len*/, uint32_t /*stored_len*/) {}
    virtual void on_time(uint64_t /*time_us*/) {}
    virtual void on_thread_switch(uint32_t /*thread*/) {}
    virtual void on_thread_info(uint32_t /*thread*/, const ThreadInfo& /*t*/) {}
    virtual void on_code(uint32_t /*id*/, const CodeInfo& /*c*/) {}
    virtual void on_node(uint32_t /*id*/, const StackNode& /*n*/) {}
    virtual void on_objects_reset(uint64_t /*generation*/) {}
    virtual void on_object(const ObjectInfo& /*o*/) {}
    virtual void on_sample(const MemorySample& /*s*/) {}
    virtual void on_event(const Event& /*e*/) {}
    virtual void on_trailer(const Trailer& /*t*/) {}
    virtual void on_heap_sample(const HeapSample& /*s*/) {}
    virtual void on_aggregate_location(const AggregateLocation& /*l*/) {}
    virtual void on_checkpoint(const CheckpointFields& /*c*/) {}
};

class Reader {
  public:
    // Opens the file and reads its header. Throws FileError or FormatError.
    explicit Reader(const std::string& path);
    // Reads a stream that cannot seek (the live viewer's connection, docs/live.md): `stream` is
    // read block by block as the reader advances, a read may block, and the end of the stream
    // ends the capture (truncated() when no trailer came). `name` stands for the path in
    // messages. Takes ownership of `stream`.
    Reader(std::FILE* stream, const std::string& name);
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    const std::string& path() const { return m_path; }
    const Header& header() const { return m_header; }

    enum class Item { Event, Sample, End };
    // Advances to the next event or memory sample. Throws FormatError on corruption; a file cut
    // short ends cleanly with truncated() == true. Inline fast path for plain events (the bulk of
    // a capture); everything else goes through next_slow().
    Item next() {
        if (m_listener == nullptr && m_end - m_pos >= k_max_event_bytes) {
            if (is_event_tag(*m_pos)) {
                decode_event_unchecked();
                return Item::Event;
            }
            if (is_recent_tag(*m_pos)) {
                decode_recent_unchecked();
                return Item::Event;
            }
        }
        return next_slow();
    }
    const Event& event() const { return m_event; }

    // Batch form of next() for aggregators: decodes up to `max` plain events into `out` in one
    // tight loop (delta state in registers, no branch on the allocator kind) and returns how many.
    // Time and ThreadSwitch records between them are absorbed; the batch stops before any other
    // record, near the end of a block, or when a listener is set. 0 means the next item needs
    // next() (a sample, a slow-path event, a new block or the end); mixing both calls is fine.
    size_t next_events(Event* out, size_t max);
    const MemorySample& sample() const { return m_sample; }

    // Reads to the end, calling the listener for every record. Throws like next().
    void read_all(RecordListener& listener);
    void set_listener(RecordListener* listener) { m_listener = listener; }

    // Interning tables, as far as the file has been read. Index 0 of threads/codes/nodes is a
    // placeholder so that ids index directly; an id beyond size() is unknown (lost in a cut file).
    const std::vector<ThreadInfo>& threads() const { return m_threads; }
    const std::vector<CodeInfo>& codes() const { return m_codes; }
    const std::vector<StackNode>& nodes() const { return m_nodes; }
    const std::vector<ObjectInfo>& objects() const { return m_objects; }
    // Every distinct object of any generation, in order of first appearance: stacks recorded
    // before a dlclose still name addresses in objects that are gone from objects().
    const std::vector<ObjectInfo>& all_objects() const { return m_all_objects; }
    const std::optional<Trailer>& trailer() const { return m_trailer; }
    // True for a capture written with --aggregate (no events: read to the end, then aggregate()).
    bool aggregated() const { return (m_header.flags & k_flag_aggregated) != 0; }
    // The last complete checkpoint read so far.
    const Aggregate& aggregate() const { return m_aggregate; }

    // True once the end was reached without a trailer or in the middle of a block.
    bool truncated() const { return m_truncated; }
    // Human-readable reason for truncated() ("ends inside block at offset N", "no trailer").
    const std::string& truncation_reason() const { return m_truncation_reason; }
    uint64_t file_size() const { return m_file_size; }
    uint64_t bytes_consumed() const { return m_offset; }  // for progress bars
    uint64_t last_time_us() const { return m_time_us; }

  private:
    // An event is at most 1 + 3 * 9 bytes; the unchecked decoder also loads 8 bytes at the
    // start of each field, so it needs this much left in the block.
    static constexpr long k_max_event_bytes = 1 + 3 * 9 + 8;

  public:
    // Prefix varint (records.hpp) without bounds checks: the caller guarantees 17 readable bytes.
    static uint64_t read_varint_unchecked(const uint8_t*& p) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        if ((w & 0xff) == 0) [[unlikely]] {
            std::memcpy(&w, p + 1, 8);
            p += 9;
            return w;
        }
        unsigned n = unsigned(__builtin_ctzll(w)) + 1;
        p += n;
        // n <= 8 here, so 7 * n < 64 and the mask needs no special case.
        return (w >> n) & ((uint64_t(1) << (7 * n)) - 1);
    }

  private:
    static int64_t unzigzag(uint64_t v) { return int64_t(v >> 1) ^ -int64_t(v & 1); }
    void decode_event_unchecked() {
        const uint8_t* p = m_pos;
        auto kind = Allocator(*p++ - k_event_tag_base);
        m_address += uint64_t(unzigzag(read_varint_unchecked(p)));
        m_event.allocator = kind;
        m_event.address = m_address;
        m_event.thread = m_thread;
        m_event.time_us = m_time_us;
        if (is_deallocator(kind)) {
            m_event.size = kind == Allocator::Munmap ? read_varint_unchecked(p) : 0;
            m_event.node = 0;
        } else {
            m_event.size = read_varint_unchecked(p);
            m_node = uint32_t(uint64_t(m_node) + uint64_t(unzigzag(read_varint_unchecked(p))));
            m_event.node = m_node;
        }
        remember(kind, m_address);
        m_pos = p;
    }
    // An event's address goes into the recent table of its kind (records.hpp); an Munmap's into
    // none.
    void remember(Allocator kind, uint64_t address) {
        if (!is_deallocator(kind)) m_recent[recent_slot(address)] = address;
        else if (kind != Allocator::Munmap) m_recent[k_recent_slots + recent_slot(address)] = address;
    }
    // RecentFree / RecentMalloc (records.hpp); `read` returns the next varint of the record.
    template <class ReadVarint>
    void decode_recent(uint8_t tag, ReadVarint&& read) {
        unsigned slot = tag % k_recent_slots;
        m_event.allocator = recent_kind(tag);
        m_event.thread = m_thread;
        m_event.time_us = m_time_us;
        if (is_recent_free_tag(tag)) {
            m_event.address = m_recent[slot];
            m_recent[k_recent_slots + slot] = m_event.address;
            m_event.size = 0;
            m_event.node = 0;
        } else {
            m_event.address = m_recent[k_recent_slots + slot];
            m_recent[slot] = m_event.address;
            m_event.size = read();
            m_node = uint32_t(uint64_t(m_node) + uint64_t(unzigzag(read())));
            m_event.node = m_node;
        }
    }
    // Unchecked, like decode_event_unchecked().
    void decode_recent_unchecked() {
        const uint8_t* p = m_pos + 1;
        decode_recent(*m_pos, [&p] { return read_varint_unchecked(p); });
        m_pos = p;
    }
    Item next_slow();
    void read_header();
    bool load_block();
    // Reads exactly n bytes at the current position (the stream's, or m_offset's in a file).
    // Returns the count read: less than n only at the end of the data.
    size_t read_at(uint8_t* out, size_t n);
    [[noreturn]] void corrupt(const std::string& what) const;

    std::string m_path;
    std::FILE* m_file = nullptr;
    bool m_stream = false;        // no seeking, no size: read until the end of the stream
    uint64_t m_file_size = 0;
    uint64_t m_offset = 0;        // file offset of the next block
    uint64_t m_block_offset = 0;  // file offset of the current block
    Header m_header;

    std::vector<uint8_t> m_stored;
    std::vector<uint8_t> m_raw;
    const uint8_t* m_pos = nullptr;
    const uint8_t* m_end = nullptr;

    // per-block delta state
    uint64_t m_time_us = 0;
    uint32_t m_thread = 0;
    uint64_t m_address = 0;
    uint32_t m_node = 0;
    uint32_t m_last_node_id = 0;
    // The recent tables (records.hpp): `allocated` at [0, k_recent_slots), `freed` after it, and
    // a spare slot that next_events() stores an Munmap's address into.
    uint64_t m_recent[2 * k_recent_slots + 1] = {};

    Event m_event;
    MemorySample m_sample;
    std::vector<ThreadInfo> m_threads;
    std::vector<CodeInfo> m_codes;
    std::vector<StackNode> m_nodes;
    std::vector<ObjectInfo> m_objects;
    std::vector<ObjectInfo> m_all_objects;
    std::vector<std::string> m_object_keys;  // sorted (bias, path, build-id) of m_all_objects
    std::optional<Trailer> m_trailer;
    Aggregate m_aggregate;
    std::vector<AggregateLocation> m_pending_locations;  // of the checkpoint being read
    std::vector<HeapSample> m_pending_samples;
    bool m_truncated = false;
    bool m_done = false;
    std::string m_truncation_reason;
    RecordListener* m_listener = nullptr;
};

}  // namespace memray::format
