#include "report/transform.hpp"

#include <fmt/core.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <stdexcept>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "report/json_writer.hpp"

namespace memray::report {

namespace {

// One output row: a snapshot location with threads merged unless split.
struct Row {
    uint32_t node;
    int64_t thread;  // -1 = merged
    format::Allocator allocator;
    uint64_t count = 0;
    uint64_t bytes = 0;
    // Innermost first; into the resolver's frame table (shared, not copied: a million rows of
    // deep stacks would otherwise hold gigabytes of strings).
    std::vector<const Frame*> frames;
    std::vector<uint32_t> ids;  // the same as frame ids, until the table stops growing
};

// Rows ordered by size (largest first), then count, allocator, thread and stack, so the output
// does not depend on the order of the capture's ids.
std::vector<Row> rows_of(const Snapshot& s, const StackResolver& resolver, bool split_threads) {
    std::map<std::tuple<uint32_t, int64_t, uint8_t>, size_t> index;
    std::vector<Row> rows;
    for (const LocationAmount& l : s.locations) {
        if (l.count == 0 && l.bytes == 0) continue;
        int64_t thread = split_threads ? int64_t(l.thread) : -1;
        auto [it, fresh] = index.emplace(std::make_tuple(l.node, thread, uint8_t(l.allocator)),
                                         rows.size());
        if (fresh) {
            rows.push_back({l.node, thread, l.allocator, 0, 0, {}, {}});
            resolver.stack_ids(l.node, rows.back().ids);
        }
        rows[it->second].count += l.count;
        rows[it->second].bytes += l.bytes;
    }
    // Every stack is resolved: the resolver's frame table no longer grows, pointers stay valid.
    for (Row& r : rows) {
        r.frames.reserve(r.ids.size());
        for (uint32_t id : r.ids) r.frames.push_back(&resolver.frame_at(id));
        r.ids = {};
    }
    // Stacks compare frame by frame on (function, file, line), in place: copying them into keys
    // on every comparison made sorting a million equal-sized rows take most of a minute.
    auto frame_less = [](const Frame* x, const Frame* y) {
        return std::tie(x->function, x->file, x->line) < std::tie(y->function, y->file, y->line);
    };
    std::sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
        if (a.bytes != b.bytes) return a.bytes > b.bytes;
        if (a.count != b.count) return a.count > b.count;
        if (a.allocator != b.allocator) return a.allocator < b.allocator;
        if (a.thread != b.thread) return a.thread < b.thread;
        return std::lexicographical_compare(a.frames.begin(), a.frames.end(), b.frames.begin(),
                                            b.frames.end(), frame_less);
    });
    return rows;
}

std::string thread_label(const Snapshot& s, int64_t thread) {
    if (thread < 0) return "merged thread";
    const std::string& name =
        size_t(thread) < s.threads.size() ? s.threads[size_t(thread)].name : std::string();
    return name.empty() ? fmt::format("0x{:x}", thread) : fmt::format("0x{:x} ({})", thread, name);
}

// Python's csv.writer (QUOTE_MINIMAL, "\r\n" line ends).
std::string csv_field(const std::string& v) {
    if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
    std::string out = "\"";
    for (char c : v) {
        if (c == '"') out += '"';
        out += c;
    }
    out += '"';
    return out;
}

std::string render_csv(const Snapshot& s, const std::vector<Row>& rows) {
    std::string out = "allocator,num_allocations,size,tid,thread_name,stack_trace\r\n";
    for (const Row& r : rows) {
        std::string stack;
        for (size_t i = 0; i < r.frames.size(); ++i) {
            if (i) stack += '|';
            stack += fmt::format("{};{};{}", r.frames[i]->function, r.frames[i]->file,
                                 r.frames[i]->line);
        }
        out += fmt::format("{},{},{},{},{},{}\r\n", format::allocator_name(r.allocator), r.count,
                           r.bytes, r.thread, csv_field(thread_label(s, r.thread)),
                           csv_field(stack));
    }
    return out;
}

// Python's json.dump without indent: ", " and ": " separators.
std::string render_gprof2dot(const std::vector<Row>& rows) {
    std::map<std::pair<std::string, std::string>, size_t> index;
    std::vector<const Frame*> functions;
    std::string events;
    for (const Row& r : rows) {
        if (r.frames.empty()) continue;
        std::string chain;
        for (const Frame* f : r.frames) {
            auto [it, fresh] = index.emplace(std::make_pair(f->function, f->file), functions.size());
            if (fresh) functions.push_back(f);
            if (!chain.empty()) chain += ", ";
            chain += std::to_string(it->second);
        }
        if (!events.empty()) events += ", ";
        events += fmt::format("{{\"callchain\": [{}], \"cost\": [{}]}}", chain, r.bytes);
    }
    std::string fns;
    for (const Frame* f : functions) {
        if (!fns.empty()) fns += ", ";
        fns += fmt::format("{{\"name\": {}, \"module\": {}}}", JsonWriter::quote(f->function),
                           JsonWriter::quote(f->file));
    }
    return fmt::format(
        "{{\"version\": 0, \"costs\": [{{\"description\": \"Memory\", \"unit\": \"bytes\"}}], "
        "\"events\": [{}], \"functions\": [{}]}}",
        events, fns);
}

std::string render_speedscope(const std::vector<Row>& rows, const format::Header& header,
                              const TransformOptions& o) {
    std::map<std::tuple<std::string, std::string, uint32_t>, size_t> index;
    std::vector<const Frame*> frames;
    // Identical stacks (several allocators or threads) are one sample.
    std::map<std::vector<size_t>, std::pair<uint64_t, uint64_t>> samples;  // -> (bytes, count)
    std::vector<std::vector<size_t>> order;
    for (const Row& r : rows) {
        if (r.frames.empty()) continue;
        std::vector<size_t> sample;
        for (auto f = r.frames.rbegin(); f != r.frames.rend(); ++f) {  // root to leaf
            auto [it, fresh] = index.emplace(
                std::make_tuple((*f)->function, (*f)->file, (*f)->line), frames.size());
            if (fresh) frames.push_back(*f);
            sample.push_back(it->second);
        }
        auto [it, fresh] = samples.emplace(sample, std::make_pair(uint64_t(0), uint64_t(0)));
        if (fresh) order.push_back(sample);
        it->second.first += r.bytes;
        it->second.second += r.count;
    }
    std::string frames_json;
    for (const Frame* f : frames) {
        if (!frames_json.empty()) frames_json += ", ";
        frames_json += "{\"name\": " + JsonWriter::quote(f->function);
        if (!f->file.empty()) frames_json += ", \"file\": " + JsonWriter::quote(f->file);
        if (f->line > 0) frames_json += fmt::format(", \"line\": {}", f->line);
        frames_json += "}";
    }
    auto profile = [&](const char* name, const char* unit, bool bytes) {
        std::string ss, ws;
        uint64_t total = 0;
        for (const auto& sample : order) {
            uint64_t w = bytes ? samples[sample].first : samples[sample].second;
            if (w == 0) continue;
            if (!ss.empty()) ss += ", ";
            if (!ws.empty()) ws += ", ";
            std::string list;
            for (size_t i = 0; i < sample.size(); ++i) list += (i ? ", " : "") + std::to_string(sample[i]);
            ss += "[" + list + "]";
            ws += std::to_string(w);
            total += w;
        }
        return fmt::format(
            "{{\"type\": \"sampled\", \"name\": \"{}\", \"unit\": \"{}\", \"startValue\": 0, "
            "\"endValue\": {}, \"samples\": [{}], \"weights\": [{}]}}",
            name, unit, total, ss, ws);
    };
    return fmt::format(
        "{{\"$schema\": \"https://www.speedscope.app/file-format-schema.json\", \"shared\": "
        "{{\"frames\": [{}]}}, \"profiles\": [{}, {}], \"name\": {}, \"activeProfileIndex\": 0, "
        "\"exporter\": {}}}",
        frames_json, profile("Memory", "bytes", true), profile("Allocations", "none", false),
        JsonWriter::quote(header.command_line.empty() ? "memray" : header.command_line),
        JsonWriter::quote(o.exporter));
}

// --- pprof: protobuf encoding (wire types 0 varint and 2 length-delimited are all it needs) ---

class Proto {
  public:
    void varint(uint64_t v) {
        while (v >= 0x80) {
            m_out += char(uint8_t(v) | 0x80);
            v >>= 7;
        }
        m_out += char(uint8_t(v));
    }
    void field_varint(uint32_t field, uint64_t v) {
        if (v == 0) return;  // proto3: defaults are not written
        varint(uint64_t(field) << 3);
        varint(v);
    }
    void field_bytes(uint32_t field, std::string_view bytes) {
        varint((uint64_t(field) << 3) | 2);
        varint(bytes.size());
        m_out.append(bytes.data(), bytes.size());
    }
    void field_packed(uint32_t field, const std::vector<uint64_t>& values) {
        if (values.empty()) return;
        Proto p;
        for (uint64_t v : values) p.varint(v);
        field_bytes(field, p.str());
    }
    const std::string& str() const { return m_out; }

  private:
    std::string m_out;
};

class StringTable {
  public:
    StringTable() { id(""); }
    uint64_t id(const std::string& s) {
        auto [it, fresh] = m_ids.emplace(s, m_strings.size());
        if (fresh) m_strings.push_back(s);
        return it->second;
    }
    const std::vector<std::string>& strings() const { return m_strings; }

  private:
    std::unordered_map<std::string, uint64_t> m_ids;
    std::vector<std::string> m_strings;
};

std::string gzip(const std::string& data) {
    z_stream z{};
    // 15 + 16: a gzip wrapper around the deflate stream.
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        throw std::runtime_error("zlib: deflateInit2 failed");
    std::string out(deflateBound(&z, uLong(data.size())) + 64, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = uInt(data.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = uInt(out.size());
    int rc = deflate(&z, Z_FINISH);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) throw std::runtime_error("zlib: deflate failed");
    out.resize(z.total_out);
    return out;
}

std::string render_pprof(const Snapshot& s, const std::vector<Row>& rows,
                         const format::Header& header) {
    StringTable strings;
    Proto profile;
    bool temporary = s.kind == SnapshotKind::Temporary;
    const char* objects = temporary ? "alloc_objects" : "inuse_objects";
    const char* space = temporary ? "alloc_space" : "inuse_space";
    auto value_type = [&](const char* type, const char* unit) {
        Proto v;
        v.field_varint(1, strings.id(type));
        v.field_varint(2, strings.id(unit));
        return v.str();
    };
    // Count first, as profile.proto's convention asks.
    profile.field_bytes(1, value_type(objects, "count"));
    profile.field_bytes(1, value_type(space, "bytes"));

    std::map<std::tuple<std::string, std::string, uint32_t>, uint64_t> location_ids;
    std::map<std::pair<std::string, std::string>, uint64_t> function_ids;
    std::string locations, functions;
    auto location_id = [&](const Frame& f) {
        auto key = std::make_tuple(f.function, f.file, f.line);
        auto it = location_ids.find(key);
        if (it != location_ids.end()) return it->second;
        auto [fit, fresh] =
            function_ids.emplace(std::make_pair(f.function, f.file), function_ids.size() + 1);
        if (fresh) {
            Proto fn;
            fn.field_varint(1, fit->second);
            fn.field_varint(2, strings.id(f.function));
            fn.field_varint(3, strings.id(f.function));
            fn.field_varint(4, strings.id(f.file));
            Proto wrap;
            wrap.field_bytes(5, fn.str());
            functions += wrap.str();
        }
        uint64_t id = location_ids.size() + 1;
        location_ids.emplace(key, id);
        Proto line;
        line.field_varint(1, fit->second);
        line.field_varint(2, f.line);
        Proto loc;
        loc.field_varint(1, id);
        loc.field_bytes(4, line.str());
        Proto wrap;
        wrap.field_bytes(4, loc.str());
        locations += wrap.str();
        return id;
    };
    auto label = [&](const char* key, const std::string& value) {
        Proto l;
        l.field_varint(1, strings.id(key));
        l.field_varint(2, strings.id(value));
        return l.str();
    };
    for (const Row& r : rows) {
        Proto sample;
        std::vector<uint64_t> ids;
        for (const Frame* f : r.frames) ids.push_back(location_id(*f));  // leaf first
        if (ids.empty()) ids.push_back(location_id(Frame{"<unknown stack>", "", 0, false}));
        sample.field_packed(1, ids);
        Proto values;
        values.varint(r.count);
        values.varint(r.bytes);
        sample.field_bytes(2, values.str());
        sample.field_bytes(3, label("thread", thread_label(s, r.thread)));
        sample.field_bytes(3, label("allocator", format::allocator_name(r.allocator)));
        profile.field_bytes(2, sample.str());
    }
    std::string out = profile.str() + locations + functions;
    const char* view = s.kind == SnapshotKind::HighWaterMark ? "high-water mark"
                       : s.kind == SnapshotKind::Leaks       ? "leaks (alive at the end)"
                                                             : "temporary allocations";
    Proto tail;
    tail.field_varint(9, header.start_time_unix_ms * 1000000);
    tail.field_varint(10, s.duration_us * 1000);
    tail.field_varint(13, strings.id(fmt::format("memray {}: {}", view, header.command_line)));
    tail.field_varint(14, strings.id(space));
    // The string table is complete only now; its order on the wire does not matter.
    Proto table;
    for (const std::string& str : strings.strings()) table.field_bytes(6, str);
    return gzip(out + table.str() + tail.str());
}

}  // namespace

std::optional<TransformFormat> parse_transform_format(std::string_view name) {
    std::string lower;
    for (char c : name) lower += char(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "gprof2dot") return TransformFormat::Gprof2dot;
    if (lower == "csv") return TransformFormat::Csv;
    if (lower == "speedscope") return TransformFormat::Speedscope;
    if (lower == "pprof") return TransformFormat::Pprof;
    return std::nullopt;
}

const char* transform_format_name(TransformFormat f) {
    switch (f) {
        case TransformFormat::Gprof2dot: return "gprof2dot";
        case TransformFormat::Csv: return "csv";
        case TransformFormat::Speedscope: return "speedscope";
        case TransformFormat::Pprof: return "pprof";
    }
    return "?";
}

const char* transform_suffix(TransformFormat f) {
    switch (f) {
        case TransformFormat::Gprof2dot: return ".json";
        case TransformFormat::Csv: return ".csv";
        case TransformFormat::Speedscope: return ".speedscope.json";
        case TransformFormat::Pprof: return ".pb.gz";
    }
    return "";
}

std::string render_transform(TransformFormat f, const Snapshot& s, const StackResolver& resolver,
                             const format::Header& header, const TransformOptions& o) {
    // pprof keeps threads apart as labels; csv splits only on request; the others merge.
    bool split = f == TransformFormat::Pprof || (f == TransformFormat::Csv && o.split_threads);
    std::vector<Row> rows = rows_of(s, resolver, split);
    switch (f) {
        case TransformFormat::Gprof2dot: return render_gprof2dot(rows);
        case TransformFormat::Csv: return render_csv(s, rows);
        case TransformFormat::Speedscope: return render_speedscope(rows, header, o);
        case TransformFormat::Pprof: return render_pprof(s, rows, header);
    }
    return {};
}

}  // namespace memray::report
