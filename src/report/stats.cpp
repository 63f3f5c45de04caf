#include "report/stats.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <optional>
#include <regex>
#include <unordered_map>

#include "report/json_writer.hpp"
#include "report/size_format.hpp"

namespace memray::report {

namespace {

constexpr const char* k_unknown_location = "<stack trace unavailable>";

// Python's float floor division (CPython's float_divmod), so histogram buckets match memray's
// bit for bit even where (a - b) / c lands next to an integer.
double py_floordiv(double vx, double wx) {
    double mod = std::fmod(vx, wx);
    double div = (vx - mod) / wx;
    if (mod != 0.0 && ((wx < 0) != (mod < 0))) div -= 1.0;
    if (div != 0.0) {
        double floordiv = std::floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
        return floordiv;
    }
    return std::copysign(0.0, vx / wx);
}

// Python's pathlib-based module naming: "pkg/sub/__init__.py" -> "pkg.sub", "a/b.py" -> "a.b".
std::string path_to_module(std::string rel) {
    auto slash = rel.rfind('/');
    std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
    if (name == "__init__.py") {
        rel = slash == std::string::npos ? "" : rel.substr(0, slash);
    } else {
        auto dot = name.rfind('.');
        if (dot != std::string::npos && dot != 0 && rel.size() >= 3 &&
            rel.compare(rel.size() - 3, 3, ".py") == 0)
            rel.resize(rel.size() - 3);
    }
    std::string out;
    size_t i = 0;
    while (i <= rel.size()) {
        size_t j = rel.find('/', i);
        if (j == std::string::npos) j = rel.size();
        if (j > i) {
            if (!out.empty()) out += '.';
            out.append(rel, i, j - i);
        }
        i = j + 1;
    }
    return out;
}

// Module of a source file: nullopt for the standard library (skipped when looking for the
// module responsible for a stack), else the top-level package name. memray classifies with the
// target's sys.path, which captures do not carry; the standard library and site-packages are
// recognised by their paths, anything else is named after its file.
std::optional<std::string> top_level_module(const std::string& file) {
    if (file.empty()) return std::string("unknown");
    if (file.rfind("<frozen ", 0) == 0) return std::nullopt;
    for (const char* marker : {"/site-packages/", "/dist-packages/"}) {
        auto at = file.find(marker);
        if (at != std::string::npos) {
            std::string mod = path_to_module(file.substr(at + std::strlen(marker)));
            return mod.substr(0, mod.find('.'));
        }
    }
    static const std::regex k_stdlib(R"(/lib/python[0-9]+\.[0-9]+t?/)");
    if (std::regex_search(file, k_stdlib)) return std::nullopt;
    auto slash = file.rfind('/');
    std::string mod = path_to_module(slash == std::string::npos ? file : file.substr(slash + 1));
    std::string top = mod.substr(0, mod.find('.'));
    if (top == "memray") return std::string("<root>");
    return top;
}

// Module per stack, memoised per code object and object file so that a capture with many
// stacks costs one integer walk per stack.
class ModuleIndex {
  public:
    ModuleIndex(const format::Reader& reader, const StackResolver& resolver)
        : m_reader(reader), m_resolver(resolver), m_by_code(reader.codes().size(), k_unset) {}

    const std::string& module_of(uint32_t node) {
        const auto& nodes = m_reader.nodes();
        int python = k_unset, native = k_unset;
        bool has_python = false;
        for (size_t steps = 0; node != 0 && node < nodes.size() && steps < nodes.size();
             ++steps) {
            const format::StackNode& n = nodes[node];
            if (n.kind == format::FrameKind::Python) {
                if (!m_resolver.is_bootstrap(node)) {
                    has_python = true;
                    if (python == k_unset) {
                        int m = code_module(n.code);
                        if (m >= 0) python = m;
                    }
                }
            } else if (native == k_unset) {
                const std::string* path = m_resolver.object_path(n.ip);
                int m = file_module(path ? *path : std::string("???"));
                if (m >= 0) native = m;
            }
            if (python != k_unset) break;
            node = n.parent;
        }
        int chosen = has_python ? python : native;
        if (chosen < 0) return m_root;
        return m_names[size_t(chosen)];
    }

  private:
    static constexpr int k_unset = -2;
    static constexpr int k_stdlib = -1;

    int code_module(uint32_t code) {
        if (code >= m_by_code.size()) return file_module("");
        if (m_by_code[code] == k_unset) m_by_code[code] = file_module(m_reader.codes()[code].file);
        return m_by_code[code];
    }
    int file_module(const std::string& file) {
        auto it = m_by_file.find(file);
        if (it != m_by_file.end()) return it->second;
        int id = k_stdlib;
        if (auto mod = top_level_module(file)) {
            auto name = m_name_ids.find(*mod);
            if (name == m_name_ids.end()) {
                name = m_name_ids.emplace(*mod, int(m_names.size())).first;
                m_names.push_back(*mod);
            }
            id = name->second;
        }
        m_by_file.emplace(file, id);
        return id;
    }

    const format::Reader& m_reader;
    const StackResolver& m_resolver;
    std::vector<int> m_by_code;
    std::unordered_map<std::string, int> m_by_file;
    std::unordered_map<std::string, int> m_name_ids;
    std::vector<std::string> m_names;
    std::string m_root = "<root>";
};

template <typename T, typename Key>
void take_top(std::vector<T>& v, size_t n, Key key) {
    // Largest first; ties keep their first-seen order.
    std::stable_sort(v.begin(), v.end(), [&](const T& a, const T& b) { return key(a) > key(b); });
    if (v.size() > n) v.resize(n);
}

}  // namespace

std::string module_for_stack(const std::vector<Frame>& frames) {
    for (const Frame& f : frames) {
        if (auto mod = top_level_module(f.file)) return *mod;
    }
    return "<root>";
}

std::string python_allocator_label(const std::string& recorded) {
    if (recorded == "pymalloc" || recorded == "malloc" || recorded == "mimalloc") return recorded;
    if (recorded == "pymalloc_debug") return "pymalloc debug";
    if (recorded == "mimalloc_debug") return "mimalloc debug";
    return "unknown";
}

std::string format_local_time(uint64_t unix_ms) {
    time_t secs = time_t(unix_ms / 1000);
    unsigned micros = unsigned(unix_ms % 1000) * 1000;
    struct tm tm {};
    localtime_r(&secs, &tm);
    std::string out = fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", tm.tm_year + 1900,
                                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (micros) out += fmt::format(".{:06}", micros);
    long off = tm.tm_gmtoff;
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;
    out += fmt::format("{}{:02}:{:02}", sign, off / 3600, (off % 3600) / 60);
    if (off % 60) out += fmt::format(":{:02}", off % 60);
    return out;
}

std::vector<std::pair<uint64_t, uint64_t>> histogram_bins(
    const std::vector<std::pair<uint64_t, uint64_t>>& data, int bins) {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    if (data.empty() || bins <= 0) return out;
    uint64_t min_nonzero = 0, max_size = 0;
    for (const auto& [size, count] : data) {
        if (size != 0 && (min_nonzero == 0 || size < min_nonzero)) min_nonzero = size;
        max_size = std::max(max_size, size);
    }
    if (min_nonzero == 0) min_nonzero = 1;  // only zero-sized allocations
    double low = std::log(double(min_nonzero));
    double high = std::log(double(max_size == 0 ? 1 : max_size));
    if (low == high) low = low / 2;
    double step = (high - low) / bins;
    out.resize(size_t(bins));
    for (int i = 0; i < bins; ++i) out[size_t(i)].first = uint64_t(std::exp(low + step * (i + 1)));
    for (const auto& [size, count] : data) {
        int bucket = 0;
        if (size != 0) {
            if (step == 0.0) {
                bucket = bins - 1;
            } else {
                double b = py_floordiv(std::log(double(size)) - low, step);
                bucket = b >= double(bins - 1) ? bins - 1 : int(b);
            }
        }
        out[size_t(bucket)].second += count;
    }
    return out;
}

std::string draw_histogram(const std::vector<std::pair<uint64_t, uint64_t>>& data, int bins,
                           int scale) {
    if (data.empty()) return "<no data for histogram>";
    auto binned = histogram_bins(data, bins);
    uint64_t max_bin = 0;
    size_t freq_width = 0;
    for (const auto& [upper, count] : binned) {
        max_bin = std::max(max_bin, count);
        freq_width = std::max(freq_width, std::to_string(count).size());
    }
    const size_t size_width = 9;  // ###.###XB
    size_t total_width = 2 + size_width + 2 + freq_width + 1 + size_t(scale);
    uint64_t min_size = data.front().first, max_size = data.back().first;
    std::string out = "min: " + size_fmt(min_size);
    out += "\n\t" + std::string(total_width, '-') + "\n\t";
    for (size_t i = 0; i < binned.size(); ++i) {
        const char* rel = i + 1 == binned.size() ? "<=" : "< ";
        uint64_t bar = max_bin ? uint64_t(std::ceil(double(binned[i].second) / double(max_bin) *
                                                    scale))
                               : 0;
        out += fmt::format("{}{:<{}}:", rel, size_fmt(binned[i].first), size_width);
        out += fmt::format(" {:>{}} ", binned[i].second, freq_width);
        for (uint64_t k = 0; k < bar; ++k) out += "\u2587";
        out += "\n\t";
    }
    out += std::string(total_width, '-');
    out += "\n\tmax: " + size_fmt(max_size);
    return out;
}

Stats compute_stats(const format::Reader& reader, AllocationTracker& tracker,
                    const StackResolver& resolver, size_t num_largest) {
    Stats s;
    s.total_num_allocations = tracker.allocations();
    s.total_bytes_allocated = tracker.total_bytes();
    s.peak_memory = tracker.peak();

    s.count_by_size = tracker.count_by_size();

    const auto& by_alloc = tracker.count_by_allocator();
    for (unsigned a = 1; a <= format::k_allocator_max; ++a) {
        if (by_alloc[a] != 0)
            s.allocator_distribution.emplace_back(format::allocator_name(format::Allocator(a)),
                                                  by_alloc[a]);
    }
    take_top(s.allocator_distribution, s.allocator_distribution.size(),
             [](const auto& p) { return p.second; });

    // Per location (innermost frame) and per module, from the per-stack totals.
    struct Totals {
        uint64_t bytes = 0, count = 0;
    };
    std::vector<std::string> location_names;
    std::vector<Totals> location_totals;
    std::unordered_map<std::string, size_t> location_ids;
    std::vector<ModuleTotal> modules;
    std::unordered_map<std::string, size_t> module_ids;
    ModuleIndex module_index(reader, resolver);
    std::vector<Frame> frames;
    for (uint32_t id = 0; id < tracker.node_count(); ++id) {
        Amount n = tracker.total(id);
        if (n.count == 0) continue;
        // The innermost Python frame, as memray names a location even in native mode (not the
        // allocator's C frames); the innermost frame of a stack without Python frames.
        const Frame* top = nullptr;
        Frame first;
        if (resolver.has_native()) {
            frames = resolver.stack(id);
            for (const Frame& f : frames) {
                if (!f.native) {
                    top = &f;
                    break;
                }
            }
            if (!top && !frames.empty()) top = &frames.front();
        } else if (resolver.top_frame(id, first)) {
            top = &first;
        }
        std::string location = top ? fmt::format("{}:{}:{}", top->function, top->file, top->line)
                                   : std::string(k_unknown_location);
        auto [it, fresh] = location_ids.emplace(location, location_names.size());
        if (fresh) {
            location_names.push_back(location);
            location_totals.push_back({});
        }
        location_totals[it->second].bytes += n.bytes;
        location_totals[it->second].count += n.count;

        const std::string& module = module_index.module_of(id);
        auto [mit, mfresh] = module_ids.emplace(module, modules.size());
        if (mfresh) modules.push_back({module, 0, 0});
        modules[mit->second].num_allocations += n.count;
        modules[mit->second].total_bytes += n.bytes;
    }
    for (size_t i = 0; i < location_names.size(); ++i) {
        s.top_by_size.emplace_back(location_names[i], location_totals[i].bytes);
        s.top_by_count.emplace_back(location_names[i], location_totals[i].count);
    }
    take_top(s.top_by_size, num_largest, [](const auto& p) { return p.second; });
    take_top(s.top_by_count, num_largest, [](const auto& p) { return p.second; });
    s.top_modules_by_size = modules;
    s.top_modules_by_count = modules;
    take_top(s.top_modules_by_size, num_largest, [](const auto& m) { return m.total_bytes; });
    take_top(s.top_modules_by_count, num_largest,
             [](const auto& m) { return m.num_allocations; });

    const format::Header& h = reader.header();
    StatsMetadata& md = s.metadata;
    uint64_t end_us = reader.trailer() ? reader.trailer()->end_time_us : reader.last_time_us();
    md.start_time = format_local_time(h.start_time_unix_ms);
    md.end_time = format_local_time(h.start_time_unix_ms + end_us / 1000);
    md.total_allocations = tracker.allocations() + tracker.deallocations();
    md.total_frames = reader.nodes().empty() ? 0 : reader.nodes().size() - 1;
    md.peak_memory = tracker.peak();
    md.command_line = h.command_line;
    md.pid = h.pid;
    // memray's main_thread_id is its own number of the thread that started tracking, the
    // numbering of its csv `tid` column and of thread labels (0x1): ours is the capture's
    // thread number, of the main thread (the one whose OS thread id is the pid). 0 when the
    // main thread never allocated.
    md.main_thread_id = 0;
    for (size_t t = 1; t < reader.threads().size(); ++t) {
        if (reader.threads()[t].tid == h.pid) {
            md.main_thread_id = t;
            break;
        }
    }
    md.python_allocator = python_allocator_label(h.python_allocator);
    md.has_native_traces = (h.flags & format::k_flag_native) != 0;
    md.trace_python_allocators = (h.flags & format::k_flag_python_allocators) != 0;
    md.file_format = (h.flags & format::k_flag_aggregated) ? 1 : 0;
    return s;
}

std::string render_stats_text(const Stats& s, size_t n, bool color) {
    auto title = [&](const char* icon, const std::string& text) {
        return color ? fmt::format("{} \x1b[1m{}\x1b[0m\n", icon, text)
                     : fmt::format("{} {}\n", icon, text);
    };
    std::string out;
    out += title("📏", "Total allocations:");
    out += fmt::format("\t{}\n\n", s.total_num_allocations);
    out += title("📦", "Total memory allocated:");
    out += fmt::format("\t{}\n\n", size_fmt(s.total_bytes_allocated));
    out += title("📈", "Peak memory usage:");
    out += fmt::format("\t{}\n\n", size_fmt(s.metadata.peak_memory));
    out += title("📊", "Histogram of allocation size:");
    out += fmt::format("\t{}\n\n", draw_histogram(s.count_by_size, 10, 25));
    out += title("📂", "Allocator type distribution:");
    for (const auto& [name, count] : s.allocator_distribution)
        out += fmt::format("\t {}: {}\n", name, count);
    out += "\n";
    out += title("🥇", fmt::format("Top {} largest allocating locations (by size):", n));
    for (const auto& [loc, size] : s.top_by_size)
        out += fmt::format("\t- {} -> {}\n", loc, size_fmt(size));
    out += "\n";
    out += title("🥇", fmt::format("Top {} largest allocating locations (by number of "
                                   "allocations):",
                                   n));
    for (const auto& [loc, count] : s.top_by_count) out += fmt::format("\t- {} -> {}\n", loc, count);
    const std::pair<const std::vector<ModuleTotal>*, const char*> module_sections[] = {
        {&s.top_modules_by_size, "by size"},
        {&s.top_modules_by_count, "by number of allocations"},
    };
    for (const auto& [modules, label] : module_sections) {
        if (modules->empty()) continue;
        out += "\n";
        out += title("🥇", fmt::format("Top {} allocating modules ({}):", n, label));
        for (const ModuleTotal& m : *modules)
            out += fmt::format("\t- {}: {} total | {} allocations\n", m.module,
                               size_fmt(m.total_bytes), m.num_allocations);
    }
    return out;
}

std::string render_stats_json(const Stats& s) {
    JsonWriter w;
    w.begin_object();
    w.key("total_num_allocations");
    w.value(s.total_num_allocations);
    w.key("total_bytes_allocated");
    w.value(s.total_bytes_allocated);
    w.key("allocation_size_histogram");
    w.begin_array();
    auto bins = histogram_bins(s.count_by_size, 10);
    uint64_t start = 0;
    for (size_t i = 0; i < bins.size(); ++i) {
        // Upper bounds are exclusive except the last one's.
        uint64_t adjust = i + 1 == bins.size() ? 0 : 1;
        w.begin_object();
        w.key("min_bytes");
        w.value(start);
        w.key("max_bytes");
        w.value(int64_t(bins[i].first) - int64_t(adjust));
        w.key("count");
        w.value(bins[i].second);
        w.end_object();
        start = bins[i].first;
    }
    w.end_array();
    w.key("allocator_type_distribution");
    w.begin_object();
    for (const auto& [name, count] : s.allocator_distribution) {
        w.key(name);
        w.value(count);
    }
    w.end_object();
    auto locations = [&](const char* key, const auto& list, const char* field) {
        w.key(key);
        w.begin_array();
        for (const auto& [loc, v] : list) {
            w.begin_object();
            w.key("location");
            w.value(loc);
            w.key(field);
            w.value(v);
            w.end_object();
        }
        w.end_array();
    };
    locations("top_allocations_by_size", s.top_by_size, "size");
    locations("top_allocations_by_count", s.top_by_count, "count");
    auto modules = [&](const char* key, const std::vector<ModuleTotal>& list) {
        w.key(key);
        w.begin_array();
        for (const ModuleTotal& m : list) {
            w.begin_object();
            w.key("module");
            w.value(m.module);
            w.key("num_allocations");
            w.value(m.num_allocations);
            w.key("total_bytes");
            w.value(m.total_bytes);
            w.end_object();
        }
        w.end_array();
    };
    modules("top_modules_by_allocation_size", s.top_modules_by_size);
    modules("top_modules_by_allocation_count", s.top_modules_by_count);
    const StatsMetadata& md = s.metadata;
    w.key("metadata");
    w.begin_object();
    w.key("start_time");
    w.value(md.start_time);
    w.key("end_time");
    w.value(md.end_time);
    w.key("total_allocations");
    w.value(md.total_allocations);
    w.key("total_frames");
    w.value(md.total_frames);
    w.key("peak_memory");
    w.value(md.peak_memory);
    w.key("command_line");
    w.value(md.command_line);
    w.key("pid");
    w.value(md.pid);
    w.key("main_thread_id");
    w.value(md.main_thread_id);
    w.key("python_allocator");
    w.value(md.python_allocator);
    w.key("has_native_traces");
    w.value(md.has_native_traces);
    w.key("trace_python_allocators");
    w.value(md.trace_python_allocators);
    w.key("file_format");
    w.value(int64_t(md.file_format));
    w.end_object();
    w.end_object();
    return w.str();
}

}  // namespace memray::report
