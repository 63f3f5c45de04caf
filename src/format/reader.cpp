#include "format/reader.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "format/block.hpp"

namespace memray::format {

namespace {

// Ids are dense (the payload hands them out sequentially), so a record that jumps far ahead is
// corruption; refusing it keeps a hostile file from making us allocate gigabytes.
constexpr uint64_t k_max_id_jump = 1u << 20;

// Identity of an object across ObjectsReset generations (each generation lists every object).
std::string fmt_object_key(const ObjectInfo& o) {
    std::string key(reinterpret_cast<const char*>(&o.load_bias), sizeof(o.load_bias));
    key.push_back(char(o.build_id.size()));
    key += o.build_id;
    key.push_back('\0');
    key += o.path;
    return key;
}

// Bit k set when Allocator(k) is a deallocator (for branch-free decoding).
constexpr uint32_t k_deallocator_bits = [] {
    uint32_t bits = 0;
    for (unsigned k = 0; k <= k_allocator_max; ++k)
        if (is_deallocator(Allocator(k))) bits |= 1u << k;
    return bits;
}();

uint32_t get_le32(const uint8_t* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Cursor over a byte range; every read is bounds-checked and reports failure through `ok`.
struct Cursor {
    const uint8_t* pos;
    const uint8_t* end;
    bool ok = true;

    uint8_t u8() {
        if (pos >= end) {
            ok = false;
            return 0;
        }
        return *pos++;
    }
    uint64_t varint() {
        if (end - pos >= 17) return Reader::read_varint_unchecked(pos);
        if (pos >= end) {
            ok = false;
            return 0;
        }
        uint8_t b0 = *pos;
        unsigned n = b0 == 0 ? 9 : unsigned(__builtin_ctz(b0)) + 1;
        if (end - pos < long(n)) {
            ok = false;
            pos = end;
            return 0;
        }
        uint64_t v = 0;
        if (n == 9) {
            for (int i = 0; i < 8; ++i) v |= uint64_t(pos[1 + i]) << (8 * i);
        } else {
            uint64_t w = 0;
            for (unsigned i = 0; i < n; ++i) w |= uint64_t(pos[i]) << (8 * i);
            v = w >> n;
        }
        pos += n;
        return v;
    }
    int64_t zvarint() {
        uint64_t v = varint();
        return int64_t(v >> 1) ^ -int64_t(v & 1);
    }
    std::string string() {
        uint64_t n = varint();
        if (!ok || n > uint64_t(end - pos)) {
            ok = false;
            return {};
        }
        std::string s(reinterpret_cast<const char*>(pos), size_t(n));
        pos += n;
        return s;
    }
};

}  // namespace

Reader::Reader(const std::string& path) : m_path(path) {
    m_file = std::fopen(path.c_str(), "rb");
    if (!m_file) {
        throw FileError("cannot open " + path + ": " + std::strerror(errno));
    }
    if (std::fseek(m_file, 0, SEEK_END) == 0) {
        long n = std::ftell(m_file);
        m_file_size = n > 0 ? uint64_t(n) : 0;
        std::fseek(m_file, 0, SEEK_SET);
    }
    read_header();
}

Reader::Reader(std::FILE* stream, const std::string& name) : m_path(name), m_file(stream) {
    m_stream = true;
    read_header();
}

size_t Reader::read_at(uint8_t* out, size_t n) {
    if (!m_stream && std::fseek(m_file, long(m_offset), SEEK_SET) != 0)
        throw FileError("cannot read " + m_path + ": " + std::strerror(errno));
    size_t got = std::fread(out, 1, n, m_file);
    if (got < n && std::ferror(m_file))
        throw FileError("cannot read " + m_path + ": " + std::strerror(errno));
    return got;
}

void Reader::read_header() {
    const std::string& path = m_path;
    uint8_t fixed[16];
    size_t got = std::fread(fixed, 1, sizeof fixed, m_file);
    if (got < 8 || std::memcmp(fixed, k_file_magic, 8) != 0) {
        std::fclose(m_file);
        m_file = nullptr;
        throw FormatError(path + " is not a memray capture file");
    }
    // The version comes before any other check: a capture of another version may differ in
    // every later byte, and "unsupported version" is the only useful thing to say about it.
    if (got >= 12) {
        m_header.version = get_le32(fixed + 8);
        if (m_header.version != k_format_version) {
            std::fclose(m_file);
            m_file = nullptr;
            throw UnsupportedVersionError(path + ": unsupported capture version " +
                                              std::to_string(m_header.version) +
                                              " (this memray reads " +
                                              std::to_string(k_format_version) + ")",
                                          m_header.version);
        }
    }
    if (got < sizeof fixed) {
        std::fclose(m_file);
        m_file = nullptr;
        throw FormatError(path + " is cut short inside its header (" + std::to_string(got) +
                          " bytes)");
    }
    uint32_t body_len = get_le32(fixed + 12);
    if (body_len > (1u << 20) || (!m_stream && 16 + uint64_t(body_len) > m_file_size)) {
        std::fclose(m_file);
        m_file = nullptr;
        throw FormatError(path + " has a corrupt header (body length " + std::to_string(body_len) +
                          ")");
    }
    std::vector<uint8_t> body(body_len);
    if (std::fread(body.data(), 1, body_len, m_file) != body_len) {
        std::fclose(m_file);
        m_file = nullptr;
        throw FormatError(path + " is cut short inside its header");
    }
    Cursor c{body.data(), body.data() + body.size()};
    m_header.flags = uint32_t(c.varint());
    m_header.pid = c.varint();
    m_header.start_time_unix_ms = c.varint();
    m_header.command_line = c.string();
    m_header.python_version = c.string();
    m_header.executable = c.string();
    m_header.pointer_size = uint32_t(c.varint());
    m_header.python_allocator = c.string();
    if (!c.ok) {
        std::fclose(m_file);
        m_file = nullptr;
        throw FormatError(path + " has a corrupt header");
    }
    m_offset = 16 + body_len;
    m_threads.resize(1);
    m_codes.resize(1);
    m_nodes.resize(1);
}

Reader::~Reader() {
    if (m_file) std::fclose(m_file);
}

void Reader::corrupt(const std::string& what) const {
    throw FormatError(m_path + " is corrupt: " + what + " in the block at offset " +
                      std::to_string(m_block_offset));
}

bool Reader::load_block() {
    if (m_done) return false;
    auto no_more = [&] {
        m_done = true;
        if (!m_trailer) {
            m_truncated = true;
            m_truncation_reason = "the capture has no trailer (the tracked process was killed or "
                                  "is still running)";
        }
        return false;
    };
    uint64_t remaining = m_file_size > m_offset ? m_file_size - m_offset : 0;
    if (!m_stream && remaining == 0) return no_more();
    m_block_offset = m_offset;
    uint8_t hdr_bytes[k_block_header_size];
    auto cut = [&](const char* where) {
        m_done = true;
        m_truncated = true;
        m_truncation_reason =
            std::string("the capture ends inside ") + where + " at offset " + std::to_string(m_offset);
        return false;
    };
    if (!m_stream && remaining < k_block_header_size) return cut("a block header");
    size_t got = read_at(hdr_bytes, sizeof hdr_bytes);
    if (m_stream && got == 0) return no_more();
    if (got != sizeof hdr_bytes) {
        if (m_stream) return cut("a block header");
        throw FileError("cannot read " + m_path + ": " + std::strerror(errno));
    }
    BlockHeader h{};
    switch (parse_block_header(hdr_bytes, h)) {
        case BlockStatus::Ok: break;
        case BlockStatus::BadMagic: corrupt("bad block magic");
        case BlockStatus::BadCodec: corrupt("unknown block codec");
        case BlockStatus::TooLarge: corrupt("impossible block length");
    }
    if (!m_stream && remaining - k_block_header_size < h.stored_len) return cut("a block");
    m_stored.resize(h.stored_len);
    m_raw.resize(h.raw_len);
    if (h.stored_len && std::fread(m_stored.data(), 1, h.stored_len, m_file) != h.stored_len) {
        if (m_stream && !std::ferror(m_file)) return cut("a block");
        throw FileError("cannot read " + m_path + ": " + std::strerror(errno));
    }
    if (!unframe_block(h, m_stored.data(), m_raw.data())) corrupt("checksum or compression error");
    if (m_listener) m_listener->on_block(m_block_offset, h.codec, h.raw_len, h.stored_len);
    m_offset += k_block_header_size + h.stored_len;
    m_pos = m_raw.data();
    m_end = m_raw.data() + m_raw.size();
    m_time_us = 0;
    m_thread = 0;
    m_address = 0;
    m_node = 0;
    m_last_node_id = 0;
    std::fill(std::begin(m_recent), std::end(m_recent), 0);
    return true;
}

Reader::Item Reader::next_slow() {
    for (;;) {
        if (m_pos == m_end) {
            if (m_trailer || !load_block()) {
                m_done = true;
                return Item::End;
            }
            continue;
        }
        Cursor c{m_pos, m_end};
        uint8_t tag = c.u8();
        if (is_event_tag(tag)) {
            auto kind = Allocator(tag - k_event_tag_base);
            m_address += uint64_t(c.zvarint());
            m_event.allocator = kind;
            m_event.address = m_address;
            m_event.thread = m_thread;
            m_event.time_us = m_time_us;
            if (is_deallocator(kind)) {
                m_event.size = kind == Allocator::Munmap ? c.varint() : 0;
                m_event.node = 0;
            } else {
                m_event.size = c.varint();
                m_node = uint32_t(uint64_t(m_node) + uint64_t(c.zvarint()));
                m_event.node = m_node;
            }
            remember(kind, m_address);
            if (!c.ok) corrupt("truncated event record");
            m_pos = c.pos;
            if (m_listener) m_listener->on_event(m_event);
            return Item::Event;
        }
        if (is_recent_tag(tag)) {
            decode_recent(tag, [&c] { return c.varint(); });
            if (!c.ok) corrupt("truncated event record");
            m_pos = c.pos;
            if (m_listener) m_listener->on_event(m_event);
            return Item::Event;
        }
        if (tag >= k_short_thread_switch_tag) {
            m_thread = uint32_t(tag - k_short_thread_switch_tag);
            if (m_listener) m_listener->on_thread_switch(m_thread);
            m_pos = c.pos;
            continue;
        }
        switch (Tag(tag)) {
            case Tag::Time: {
                m_time_us += c.varint();
                if (!c.ok) corrupt("truncated time record");
                if (m_listener) m_listener->on_time(m_time_us);
                break;
            }
            case Tag::ThreadSwitch: {
                uint64_t t = c.varint();
                if (!c.ok || t > m_threads.size() + k_max_id_jump) corrupt("bad thread switch");
                m_thread = uint32_t(t);
                if (m_listener) m_listener->on_thread_switch(m_thread);
                break;
            }
            case Tag::ThreadInfo: {
                uint64_t idx = c.varint();
                ThreadInfo t;
                t.tid = c.varint();
                t.name = c.string();
                if (!c.ok || idx == 0 || idx > m_threads.size() + k_max_id_jump)
                    corrupt("bad thread record");
                if (m_listener) m_listener->on_thread_info(uint32_t(idx), t);
                if (idx >= m_threads.size()) m_threads.resize(idx + 1);
                m_threads[idx] = std::move(t);
                break;
            }
            case Tag::Code: {
                uint64_t id = c.varint();
                CodeInfo code;
                code.function = c.string();
                code.file = c.string();
                code.first_line = uint32_t(c.varint());
                code.line_format = uint32_t(c.varint());
                code.line_table = c.string();
                if (!c.ok || id == 0 || id > m_codes.size() + k_max_id_jump)
                    corrupt("bad code record");
                if (m_listener) m_listener->on_code(uint32_t(id), code);
                if (id >= m_codes.size()) m_codes.resize(id + 1);
                m_codes[id] = std::move(code);
                break;
            }
            case Tag::Node: {
                uint64_t id = uint64_t(m_last_node_id) + uint64_t(c.zvarint());
                StackNode n;
                n.parent = uint32_t(c.varint());
                uint8_t kind = c.u8();
                if (kind == uint8_t(FrameKind::Python) || kind == uint8_t(FrameKind::PythonEntry)) {
                    n.kind = FrameKind::Python;
                    n.entry = kind == uint8_t(FrameKind::PythonEntry);
                    n.code = uint32_t(c.varint());
                    n.offset = uint32_t(c.varint());
                } else if (kind == uint8_t(FrameKind::Native)) {
                    n.kind = FrameKind::Native;
                    n.ip = c.varint();
                } else {
                    corrupt("unknown frame kind");
                }
                if (!c.ok || id == 0 || id > m_nodes.size() + k_max_id_jump)
                    corrupt("bad stack node record");
                m_last_node_id = uint32_t(id);
                if (m_listener) m_listener->on_node(uint32_t(id), n);
                if (id >= m_nodes.size()) m_nodes.resize(id + 1);
                m_nodes[id] = n;
                break;
            }
            case Tag::ObjectsReset: {
                uint64_t gen = c.varint();
                if (!c.ok) corrupt("truncated objects record");
                if (m_listener) m_listener->on_objects_reset(gen);
                m_objects.clear();
                break;
            }
            case Tag::Object: {
                ObjectInfo o;
                o.load_bias = c.varint();
                o.path = c.string();
                o.build_id = c.string();
                uint64_t n = c.varint();
                if (!c.ok || n > 64) corrupt("bad object record");
                for (uint64_t i = 0; i < n && c.ok; ++i) {
                    uint64_t vaddr = c.varint();
                    uint64_t memsz = c.varint();
                    o.segments.emplace_back(vaddr, memsz);
                }
                if (!c.ok) corrupt("truncated object record");
                if (m_listener) m_listener->on_object(o);
                {
                    std::string key = fmt_object_key(o);
                    auto at = std::lower_bound(m_object_keys.begin(), m_object_keys.end(), key);
                    if (at == m_object_keys.end() || *at != key) {
                        m_object_keys.insert(at, std::move(key));
                        m_all_objects.push_back(o);
                    }
                }
                m_objects.push_back(std::move(o));
                break;
            }
            case Tag::MemorySample: {
                m_sample.time_us = c.varint();
                m_sample.rss = c.varint();
                if (!c.ok) corrupt("truncated memory sample");
                m_pos = c.pos;
                if (m_listener) m_listener->on_sample(m_sample);
                return Item::Sample;
            }
            case Tag::HeapSample: {
                HeapSample h;
                h.time_us = c.varint();
                h.rss = c.varint();
                h.heap = c.varint();
                if (!c.ok) corrupt("truncated heap sample");
                if (m_listener) m_listener->on_heap_sample(h);
                m_pending_samples.push_back(h);
                break;
            }
            case Tag::AggregateLocation: {
                AggregateLocation l;
                m_node = uint32_t(uint64_t(m_node) + uint64_t(c.zvarint()));
                l.node = m_node;
                uint64_t thread = c.varint();
                uint8_t allocator = c.u8();
                l.amounts.peak_count = c.varint();
                l.amounts.peak_bytes = c.varint();
                l.amounts.end_count = c.varint();
                l.amounts.end_bytes = c.varint();
                if (!c.ok || thread > m_threads.size() + k_max_id_jump || allocator == 0 ||
                    allocator > k_allocator_max || is_deallocator(Allocator(allocator)))
                    corrupt("bad aggregate location record");
                l.thread = uint32_t(thread);
                l.allocator = Allocator(allocator);
                if (m_listener) m_listener->on_aggregate_location(l);
                m_pending_locations.push_back(l);
                break;
            }
            case Tag::Checkpoint: {
                CheckpointFields cp;
                cp.time_us = c.varint();
                cp.allocations = c.varint();
                cp.deallocations = c.varint();
                cp.total_bytes = c.varint();
                cp.heap = c.varint();
                cp.peak_bytes = c.varint();
                cp.peak_time_us = c.varint();
                cp.locations = c.varint();
                if (!c.ok) corrupt("truncated checkpoint record");
                if (cp.locations != m_pending_locations.size())
                    corrupt("checkpoint announces " + std::to_string(cp.locations) +
                            " locations, " + std::to_string(m_pending_locations.size()) +
                            " were read");
                if (m_listener) m_listener->on_checkpoint(cp);
                m_aggregate.checkpoints += 1;
                m_aggregate.totals = cp;
                m_aggregate.locations.swap(m_pending_locations);
                m_pending_locations.clear();
                m_aggregate.samples.insert(m_aggregate.samples.end(), m_pending_samples.begin(),
                                           m_pending_samples.end());
                m_pending_samples.clear();
                break;
            }
            case Tag::Trailer: {
                Trailer t;
                t.end_time_us = c.varint();
                t.allocations = c.varint();
                t.deallocations = c.varint();
                t.threads = c.varint();
                t.codes = c.varint();
                t.nodes = c.varint();
                if (!c.ok) corrupt("truncated trailer");
                if (m_listener) m_listener->on_trailer(t);
                m_trailer = t;
                m_pos = m_end = nullptr;
                m_done = true;
                return Item::End;
            }
            default: corrupt("unknown record tag " + std::to_string(tag));
        }
        m_pos = c.pos;
    }
}

size_t Reader::next_events(Event* out, size_t max) {
    if (m_listener != nullptr || m_end - m_pos < k_max_event_bytes) return 0;
    // Every record started at or before `limit` has k_max_event_bytes readable bytes, enough for
    // the unchecked decoding of an allocation, of a Time record and of a ThreadSwitch record.
    const uint8_t* const limit = m_end - k_max_event_bytes;
    const uint8_t* p = m_pos;
    uint64_t address = m_address;
    uint32_t node = m_node;
    uint32_t thread = m_thread;
    uint64_t time_us = m_time_us;
    uint64_t* recent = m_recent;
    size_t n = 0;
    while (n < max && p <= limit) {
        uint8_t tag = *p;
        if (is_event_tag(tag)) [[likely]] {
            // Decode all three fields of the longest layout and keep what the kind has: frees and
            // allocations interleave at random, and a mispredicted branch per event would cost
            // more than the spare work. The bytes read past a short record are still in the block.
            auto kind = Allocator(tag - k_event_tag_base);
            const uint8_t* q = p + 1;
            uint64_t addr_delta = read_varint_unchecked(q);
            const uint8_t* after_address = q;
            uint64_t size = read_varint_unchecked(q);
            const uint8_t* after_size = q;
            uint64_t node_delta = read_varint_unchecked(q);
            // All-ones masks instead of conditions, so the compiler cannot turn them into
            // branches: `alloc` for fields only allocations have, `sized` for the size field
            // (allocations and Munmap).
            uint64_t dealloc = (k_deallocator_bits >> unsigned(kind)) & 1;
            uint64_t alloc = dealloc - 1;
            uint64_t sized = alloc | (0 - uint64_t(kind == Allocator::Munmap));
            address += uint64_t(unzigzag(addr_delta));
            node += uint32_t(uint64_t(unzigzag(node_delta)) & alloc);
            // Allocations fill `allocated`, frees `freed`, an Munmap the spare slot.
            unsigned slot = recent_slot(address);
            unsigned table = kind == Allocator::Munmap ? 2 * k_recent_slots
                                                       : unsigned(dealloc) * k_recent_slots + slot;
            recent[table] = address;
            Event& e = out[n++];
            e.allocator = kind;
            e.thread = thread;
            e.address = address;
            e.size = size & sized;
            e.node = node & uint32_t(alloc);
            e.time_us = time_us;
            p = after_address + (uintptr_t(after_size - after_address) & sized) +
                (uintptr_t(q - after_size) & alloc);
        } else if (is_recent_tag(tag)) {
            // RecentFree / RecentMalloc: the address from one table, copied into the other.
            unsigned slot = tag % k_recent_slots;
            bool is_free = is_recent_free_tag(tag);
            uint64_t at = recent[(is_free ? 0 : k_recent_slots) + slot];
            recent[(is_free ? k_recent_slots : 0) + slot] = at;
            Event& e = out[n++];
            e.allocator = recent_kind(tag);
            e.thread = thread;
            e.address = at;
            e.time_us = time_us;
            ++p;
            if (is_free) {
                e.size = 0;
                e.node = 0;
            } else {
                e.size = read_varint_unchecked(p);
                node += uint32_t(uint64_t(unzigzag(read_varint_unchecked(p))));
                e.node = node;
            }
        } else if (tag == uint8_t(Tag::Time)) {
            ++p;
            time_us += read_varint_unchecked(p);
        } else if (tag >= k_short_thread_switch_tag) {
            thread = uint32_t(tag - k_short_thread_switch_tag);
            ++p;
        } else if (tag == uint8_t(Tag::ThreadSwitch)) {
            const uint8_t* q = p + 1;
            uint64_t t = read_varint_unchecked(q);
            if (t > m_threads.size() + k_max_id_jump) break;  // next_slow() reports it
            thread = uint32_t(t);
            p = q;
        } else {
            break;
        }
    }
    m_pos = p;
    m_address = address;
    m_node = node;
    m_thread = thread;
    m_time_us = time_us;
    if (n != 0) m_event = out[n - 1];
    return n;
}

void Reader::read_all(RecordListener& listener) {
    RecordListener* previous = m_listener;
    m_listener = &listener;
    while (next() != Item::End) {
    }
    m_listener = previous;
}

}  // namespace memray::format
