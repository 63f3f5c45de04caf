// Runs the live view (tui::run_live_view) over a scripted live::Source, for the tmux-driven tests
// (test_live_view.py) and the redraw benchmark (bench/bench_live_view.py).
//
//   live-view-double SCRIPT CONTROL_FIFO LOG [FLAMEGRAPH_DIR]
//
// SCRIPT and then every line written to CONTROL_FIFO are commands that change what the source
// reports (one per line, fields separated by tabs):
//   thread INDEX TID NAME             a thread appears
//   row THREAD FUNCTION FILE LINE TOTAL OWN ALLOCATIONS [internal]
//                                     a location's live allocations on a thread ("internal": a
//                                     CPython-internal frame, left out when hiding them)
//   synthetic THREAD COUNT            COUNT distinct locations on a thread (benchmark)
//   churn 0|1                         every poll changes some rows (a busy target)
//   heap BYTES RSS                    a memory sample: heap now, RSS
//   pid PID / cmd TEXT / native 0|1 / dropped N / output PATH
//   status waiting|running|exited|disconnected|failed [TEXT]
//   flamegraph_error TEXT             write_flamegraph fails with TEXT
// LOG gets one line per event the tests check: "pid N", "rows THREAD HIDE", "flamegraph PATH",
// "close", "exit RC".
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "live/source.hpp"
#include "tui/live_view.hpp"

using namespace memray;

namespace {

std::vector<std::string> split_tabs(const std::string& line) {
    std::vector<std::string> out;
    std::string field;
    std::istringstream in(line);
    while (std::getline(in, field, '\t')) out.push_back(field);
    return out;
}

struct ScriptedRow {
    live::Row row;
    bool internal = false;
};

class ScriptedSource : public live::Source {
  public:
    ScriptedSource(const std::string& control, const std::string& log)
        : m_log(log, std::ios::app), m_start(std::chrono::steady_clock::now()) {
        // Read end non-blocking, and a write end of our own so the FIFO never reports EOF
        // between the test's writes.
        m_control = ::open(control.c_str(), O_RDONLY | O_NONBLOCK);
        if (m_control < 0) throw std::runtime_error("cannot open " + control);
        m_keep_open = ::open(control.c_str(), O_WRONLY);
        m_header.pid = int(::getpid());
        m_header.command_line = "live-view-double";
        log_line("pid " + std::to_string(::getpid()));
    }

    void apply(const std::string& line) {
        auto f = split_tabs(line);
        if (f.empty()) return;
        const std::string& cmd = f[0];
        auto arg = [&](size_t i) -> const std::string& {
            static const std::string none;
            return i < f.size() ? f[i] : none;
        };
        auto num = [&](size_t i) { return std::strtoull(arg(i).c_str(), nullptr, 10); };
        if (cmd == "thread") {
            m_header.threads.push_back({uint32_t(num(1)), num(2), arg(3)});
        } else if (cmd == "row") {
            ScriptedRow r;
            r.row.function = arg(2);
            r.row.file = arg(3);
            r.row.line = uint32_t(num(4));
            r.row.total_bytes = num(5);
            r.row.own_bytes = num(6);
            r.row.total_allocations = num(7);
            r.row.own_allocations = r.row.own_bytes ? num(7) : 0;
            r.internal = arg(8) == "internal";
            auto& rows = m_rows[uint32_t(num(1))];
            bool replaced = false;
            for (auto& old : rows) {
                if (old.row.function == r.row.function && old.row.file == r.row.file &&
                    old.row.line == r.row.line) {
                    old = r;
                    replaced = true;
                }
            }
            if (!replaced) rows.push_back(r);
        } else if (cmd == "synthetic") {
            auto& rows = m_rows[uint32_t(num(1))];
            uint64_t count = num(2);
            for (uint64_t i = 0; i < count; ++i) {
                ScriptedRow r;
                r.row.function = "synthetic_function_" + std::to_string(i);
                r.row.file = "/srv/app/module_" + std::to_string(i % 997) + ".py";
                r.row.line = uint32_t(i % 1000 + 1);
                r.row.total_bytes = (i * 7919) % 1000003 + 1;
                r.row.own_bytes = r.row.total_bytes / 2;
                r.row.total_allocations = i % 5000 + 1;
                r.row.own_allocations = r.row.total_allocations / 2;
                rows.push_back(r);
            }
        } else if (cmd == "churn") {
            m_churn = num(1) != 0;
        } else if (cmd == "heap") {
            m_header.heap_bytes = num(1);
            m_header.rss_bytes = num(2);
            m_header.peak_heap_bytes = std::max(m_header.peak_heap_bytes, m_header.heap_bytes);
            ++m_header.samples;
            m_header.history.push_back({elapsed_ms(), m_header.heap_bytes, m_header.rss_bytes});
        } else if (cmd == "pid") {
            m_header.pid = int(num(1));
        } else if (cmd == "cmd") {
            m_header.command_line = arg(1);
        } else if (cmd == "native") {
            m_header.native = num(1) != 0;
        } else if (cmd == "dropped") {
            m_header.dropped_blocks = num(1);
        } else if (cmd == "output") {
            m_header.program_output = arg(1);
        } else if (cmd == "status") {
            static const std::map<std::string, live::Status> k_status = {
                {"waiting", live::Status::Waiting},   {"running", live::Status::Running},
                {"exited", live::Status::Exited},     {"disconnected", live::Status::Disconnected},
                {"failed", live::Status::Failed}};
            auto it = k_status.find(arg(1));
            if (it != k_status.end()) m_header.status = it->second;
            m_header.status_text = arg(2);
        } else if (cmd == "flamegraph_error") {
            m_flamegraph_error = arg(1);
        } else {
            std::cerr << "live-view-double: unknown command: " << line << "\n";
        }
    }

    bool poll(int timeout_ms) override {
        m_header.duration_ms = elapsed_ms();
        pollfd p{m_control, POLLIN, 0};
        bool changed = false;
        if (m_churn) {
            // A busy target: some locations change on every poll.
            for (auto& [thread, rows] : m_rows)
                for (size_t i = m_churn_pos % 7; i < rows.size(); i += 7) ++rows[i].row.total_allocations;
            ++m_churn_pos;
            changed = true;
        }
        if (::poll(&p, 1, changed ? 0 : timeout_ms) <= 0) return changed;
        char buf[65536];
        ssize_t n = ::read(m_control, buf, sizeof buf);
        if (n <= 0) return changed;
        m_pending.append(buf, size_t(n));
        size_t nl;
        while ((nl = m_pending.find('\n')) != std::string::npos) {
            apply(m_pending.substr(0, nl));
            m_pending.erase(0, nl + 1);
        }
        return true;
    }

    const live::Header& header() const override { return m_header; }

    std::vector<live::Row> rows(uint32_t thread_index, bool hide_internal) override {
        log_line("rows " + std::to_string(thread_index) + " " + (hide_internal ? "1" : "0"));
        std::vector<live::Row> out;
        if (thread_index != 0) {
            for (const auto& r : m_rows[thread_index])
                if (!(hide_internal && r.internal)) out.push_back(r.row);
            return out;
        }
        // All threads merged: one row per location, summed.
        std::map<std::tuple<std::string, std::string, uint32_t>, size_t> at;
        for (const auto& [thread, rows] : m_rows) {
            for (const auto& r : rows) {
                if (hide_internal && r.internal) continue;
                auto key = std::make_tuple(r.row.function, r.row.file, r.row.line);
                auto [it, fresh] = at.emplace(key, out.size());
                if (fresh) {
                    out.push_back(r.row);
                    continue;
                }
                live::Row& sum = out[it->second];
                sum.total_bytes += r.row.total_bytes;
                sum.own_bytes += r.row.own_bytes;
                sum.total_allocations += r.row.total_allocations;
                sum.own_allocations += r.row.own_allocations;
            }
        }
        return out;
    }

    void write_flamegraph(const std::string& path) override {
        log_line("flamegraph " + path);
        if (!m_flamegraph_error.empty()) throw std::runtime_error(m_flamegraph_error);
        std::ofstream out(path);
        out << "<!doctype html><title>live-view-double flame graph</title>\n";
        if (!out) throw std::runtime_error("cannot write " + path);
    }

    void close() override {
        if (m_closed) return;
        m_closed = true;
        log_line("close");
    }

    void log_line(const std::string& line) {
        m_log << line << std::endl;
    }

  private:
    uint64_t elapsed_ms() const {
        return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - m_start)
                            .count());
    }

    std::ofstream m_log;
    std::chrono::steady_clock::time_point m_start;
    int m_control = -1;
    int m_keep_open = -1;
    std::string m_pending;
    live::Header m_header;
    std::map<uint32_t, std::vector<ScriptedRow>> m_rows;
    std::string m_flamegraph_error;
    bool m_churn = false;
    size_t m_churn_pos = 0;
    bool m_closed = false;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::cerr << "usage: live-view-double SCRIPT CONTROL_FIFO LOG [FLAMEGRAPH_DIR]\n";
        return 2;
    }
    try {
        ScriptedSource source(argv[2], argv[3]);
        std::ifstream script(argv[1]);
        for (std::string line; std::getline(script, line);) source.apply(line);
        tui::LiveViewOptions options;
        if (argc > 4) options.flamegraph_dir = argv[4];
        int rc = tui::run_live_view(source, options);
        source.log_line("exit " + std::to_string(rc));
        return rc;
    } catch (const std::exception& e) {
        std::cerr << "live-view-double: error: " << e.what() << "\n";
        return 1;
    }
}
