// Writes capture files through the real encoder and block framing, for tests and the benchmark
// generator (bench/make_capture.cpp). Header-only so both can use it without a library.
#pragma once

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "format/block.hpp"
#include "format/encoder.hpp"
#include "format/records.hpp"

namespace memray::testing {

class CaptureBuilder {
  public:
    CaptureBuilder(const std::string& path, const format::HeaderFields& header,
                   format::Codec codec = format::Codec::Lz4, size_t block_bytes = 256 << 10)
        : m_codec(codec), m_block_bytes(block_bytes), m_raw(format::k_max_block_raw),
          m_framed(format::max_framed_size(format::k_max_block_raw)) {
        m_file = std::fopen(path.c_str(), "wb");
        if (!m_file) throw std::runtime_error("cannot create " + path);
        std::vector<uint8_t> buf(1 << 16);
        format::ByteSink hs(buf.data(), buf.size());
        format::encode_file_header(hs, header);
        std::fwrite(buf.data(), 1, hs.size(), m_file);
        m_sink = format::ByteSink(m_raw.data(), m_raw.size());
    }
    ~CaptureBuilder() {
        if (m_file) std::fclose(m_file);
    }

    void thread_info(uint32_t thread, uint64_t tid, const char* name) {
        open_block();
        format::encode_thread_info(m_sink, thread, tid, name);
        ++m_threads;
        after_record();
    }
    void code(uint32_t id, const char* function, const char* file, uint32_t first_line,
              uint32_t line_format = 0x030b, const std::string& table = "") {
        open_block();
        format::encode_code(m_sink, id, function, file, first_line, line_format, table.data(),
                            table.size());
        ++m_codes;
        after_record();
    }
    void python_node(uint32_t id, uint32_t parent, uint32_t code, uint32_t offset = 0,
                     bool entry = false) {
        open_block();
        format::encode_python_node(m_sink, m_state, id, parent, code, offset, entry);
        ++m_nodes;
        after_record();
    }
    void native_node(uint32_t id, uint32_t parent, uint64_t ip) {
        open_block();
        format::encode_native_node(m_sink, m_state, id, parent, ip);
        ++m_nodes;
        after_record();
    }
    void objects_reset(uint64_t generation) {
        open_block();
        format::encode_objects_reset(m_sink, generation);
        after_record();
    }
    void object(uint64_t load_bias, const char* path, std::vector<format::Segment> segments) {
        open_block();
        format::encode_object(m_sink, load_bias, path, "", 0, segments.data(), segments.size());
        after_record();
    }
    // Time of the events that follow (microseconds since capture start).
    void time(uint64_t us) {
        m_time = us;
        open_block();
        format::encode_time(m_sink, m_state, us);
        after_record();
    }
    void thread(uint32_t t) {
        m_thread = t;
        open_block();
        format::encode_thread_switch(m_sink, m_state, t);
        after_record();
    }
    void alloc(format::Allocator kind, uint64_t address, uint64_t size, uint32_t node) {
        open_block();
        format::encode_allocation(m_sink, m_state, kind, address, size, node);
        ++m_allocations;
        after_record();
    }
    void dealloc(format::Allocator kind, uint64_t address, uint64_t size = 0) {
        open_block();
        format::encode_deallocation(m_sink, m_state, kind, address, size);
        ++m_deallocations;
        after_record();
    }
    void sample(uint64_t time_us, uint64_t rss) {
        open_block();
        format::encode_memory_sample(m_sink, time_us, rss);
        after_record();
    }

    // Ends the current block (the next record starts a fresh one).
    void flush_block() {
        if (m_sink.size() == 0) return;
        if (m_sink.overflow) throw std::runtime_error("block overflow");
        size_t n = format::frame_block(m_raw.data(), m_sink.size(), m_codec, m_framed.data(),
                                       m_framed.size());
        if (n == 0) throw std::runtime_error("cannot frame block");
        std::fwrite(m_framed.data(), 1, n, m_file);
        m_sink.clear();
        m_state.reset();
        m_block_open = false;
    }

    // Writes the trailer and closes the file.
    void finish(uint64_t end_time_us) {
        format::TrailerFields t;
        t.end_time_us = end_time_us;
        t.allocations = m_allocations;
        t.deallocations = m_deallocations;
        t.threads = m_threads;
        t.codes = m_codes;
        t.nodes = m_nodes;
        open_block();
        format::encode_trailer(m_sink, t);
        flush_block();
        close();
    }
    // Closes without a trailer, like a target killed mid-run.
    void close() {
        if (m_file) std::fclose(m_file);
        m_file = nullptr;
    }

  private:
    // A new block restarts the delta state: repeat the time and thread first, as the writer does.
    void open_block() {
        if (m_block_open) return;
        m_block_open = true;
        if (m_time) format::encode_time(m_sink, m_state, m_time, true);
        if (m_thread) format::encode_thread_switch(m_sink, m_state, m_thread);
    }
    void after_record() {
        if (m_sink.size() >= m_block_bytes) flush_block();
    }

    std::FILE* m_file = nullptr;
    format::Codec m_codec;
    size_t m_block_bytes;
    std::vector<uint8_t> m_raw;
    std::vector<uint8_t> m_framed;
    format::ByteSink m_sink;
    format::EncoderState m_state;
    bool m_block_open = false;
    uint64_t m_time = 0;
    uint32_t m_thread = 0;
    uint64_t m_allocations = 0, m_deallocations = 0, m_threads = 0, m_codes = 0, m_nodes = 0;
};

}  // namespace memray::testing
