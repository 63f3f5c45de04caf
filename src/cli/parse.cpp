// `memray parse capture`: every record of a capture as one line of text, for debugging.
#include <fmt/core.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "format/reader.hpp"
#include "report/capture.hpp"
#include "report/json_writer.hpp"

namespace memray::cli {

namespace {

using report::JsonWriter;

std::string hex_bytes(const std::string& s) {
    std::string out;
    for (unsigned char c : s) out += fmt::format("{:02x}", c);
    return out;
}

// Buffers output: a capture has hundreds of millions of records.
class ParsePrinter final : public format::RecordListener {
  public:
    ~ParsePrinter() override { flush(); }
    void flush() {
        std::fwrite(m_buf.data(), 1, m_buf.size(), stdout);
        m_buf.clear();
    }

    void on_block(uint64_t offset, format::Codec codec, uint32_t raw_len,
                  uint32_t stored_len) override {
        line(fmt::format("BLOCK offset={} codec={} raw_len={} stored_len={}", offset,
                         codec == format::Codec::Lz4 ? "lz4" : "raw", raw_len, stored_len));
    }
    void on_time(uint64_t time_us) override { line(fmt::format("TIME time_us={}", time_us)); }
    void on_thread_switch(uint32_t thread) override {
        line(fmt::format("THREAD_SWITCH thread={}", thread));
    }
    void on_thread_info(uint32_t thread, const format::ThreadInfo& t) override {
        line(fmt::format("THREAD thread={} tid={} name={}", thread, t.tid,
                         JsonWriter::quote(t.name)));
    }
    void on_code(uint32_t id, const format::CodeInfo& c) override {
        line(fmt::format("CODE id={} function={} file={} first_line={} line_format=0x{:04x} "
                         "line_table={}",
                         id, JsonWriter::quote(c.function), JsonWriter::quote(c.file),
                         c.first_line, c.line_format, hex_bytes(c.line_table)));
    }
    void on_node(uint32_t id, const format::StackNode& n) override {
        if (n.kind == format::FrameKind::Python)
            line(fmt::format("NODE id={} parent={} kind=python code={} offset={}{}", id, n.parent,
                             n.code, n.offset, n.entry ? " entry=1" : ""));
        else
            line(fmt::format("NODE id={} parent={} kind=native ip=0x{:x}", id, n.parent, n.ip));
    }
    void on_objects_reset(uint64_t generation) override {
        line(fmt::format("OBJECTS_RESET generation={}", generation));
    }
    void on_object(const format::ObjectInfo& o) override {
        std::string segs;
        for (const auto& [vaddr, memsz] : o.segments)
            segs += fmt::format("{}0x{:x}+0x{:x}", segs.empty() ? "" : ",", vaddr, memsz);
        line(fmt::format("OBJECT load_bias=0x{:x} path={} build_id={} segments=[{}]", o.load_bias,
                         JsonWriter::quote(o.path), hex_bytes(o.build_id), segs));
    }
    void on_sample(const format::MemorySample& s) override {
        line(fmt::format("MEMORY_SAMPLE time_us={} rss={}", s.time_us, s.rss));
    }
    void on_event(const format::Event& e) override {
        const char* name = format::allocator_name(e.allocator);
        if (e.allocator == format::Allocator::Free ||
            e.allocator == format::Allocator::PymallocFree)
            line(fmt::format("DEALLOCATION time_us={} thread={} address=0x{:x} allocator={}",
                             e.time_us, e.thread, e.address, name));
        else if (e.allocator == format::Allocator::Munmap)
            line(fmt::format("DEALLOCATION time_us={} thread={} address=0x{:x} size={} "
                             "allocator={}",
                             e.time_us, e.thread, e.address, e.size, name));
        else
            line(fmt::format("ALLOCATION time_us={} thread={} address=0x{:x} size={} "
                             "allocator={} node={}",
                             e.time_us, e.thread, e.address, e.size, name, e.node));
    }
    void on_heap_sample(const format::HeapSample& s) override {
        line(fmt::format("HEAP_SAMPLE time_us={} rss={} heap={}", s.time_us, s.rss, s.heap));
    }
    void on_aggregate_location(const format::AggregateLocation& l) override {
        line(fmt::format("AGGREGATED_ALLOCATION thread={} allocator={} node={} "
                         "n_allocations_in_high_water_mark={} bytes_in_high_water_mark={} "
                         "n_allocations_leaked={} bytes_leaked={}",
                         l.thread, format::allocator_name(l.allocator), l.node,
                         l.amounts.peak_count, l.amounts.peak_bytes, l.amounts.end_count,
                         l.amounts.end_bytes));
    }
    void on_checkpoint(const format::CheckpointFields& c) override {
        line(fmt::format("CHECKPOINT time_us={} allocations={} deallocations={} total_bytes={} "
                         "heap={} peak_bytes={} peak_time_us={} locations={}",
                         c.time_us, c.allocations, c.deallocations, c.total_bytes, c.heap,
                         c.peak_bytes, c.peak_time_us, c.locations));
    }
    void on_trailer(const format::Trailer& t) override {
        line(fmt::format("TRAILER end_time_us={} allocations={} deallocations={} threads={} "
                         "codes={} nodes={}",
                         t.end_time_us, t.allocations, t.deallocations, t.threads, t.codes,
                         t.nodes));
    }

    void line(const std::string& s) {
        m_buf += s;
        m_buf += '\n';
        if (m_buf.size() > (1u << 16)) flush();
    }

  private:
    std::string m_buf;
};

void run_parse(const std::string& path) {
    auto reader = report::open_capture(path);
    const format::Header& h = reader->header();
    ParsePrinter printer;
    printer.line(fmt::format("HEADER version={} flags=0x{:x} pid={} start_time_unix_ms={} "
                             "command_line={} python_version={} executable={} pointer_size={}",
                             h.version, h.flags, h.pid, h.start_time_unix_ms,
                             JsonWriter::quote(h.command_line), JsonWriter::quote(h.python_version),
                             JsonWriter::quote(h.executable), h.pointer_size));
    reader->read_all(printer);
    printer.flush();
    std::fflush(stdout);
    report::warn_if_truncated(*reader);
}

}  // namespace

void register_parse(CLI::App& app) {
    auto path = std::make_shared<std::string>();
    auto* sub = app.add_subcommand("parse", "Debug a results file by parsing and printing each record in it");
    sub->add_option("results", *path, "Results of the tracker run")->required();
    sub->callback([path] { run_parse(*path); });
}

}  // namespace memray::cli
