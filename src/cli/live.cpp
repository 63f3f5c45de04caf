// `memray live PORT`, and the part of `attach` (without -o) and `run --live` that shows a live
// stream (docs/live.md): the terminal view (src/tui) on a terminal, a plain-text table otherwise.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cli/live_session.hpp"
#include "live/stream_source.hpp"
#include "report/size_format.hpp"
#include "report/symbolizer.hpp"
#include "memray_config.h"
#if MEMRAY_HAVE_TUI
#include "tui/live_view.hpp"
#endif

namespace memray::cli {

namespace {

std::atomic<bool> g_text_stop{false};

// Without a terminal (a pipe, a file, CI): the table as text, once a second and once at the end,
// until the stream ends or SIGINT/SIGTERM.
int print_text_view(live::Source& source) {
    struct sigaction sa {}, old_int {}, old_term {};
    sa.sa_handler = [](int) { g_text_stop.store(true); };
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int);
    ::sigaction(SIGTERM, &sa, &old_term);
    auto last = std::chrono::steady_clock::now() - std::chrono::seconds(2);
    bool ended = false;
    while (!ended) {
        bool stop = g_text_stop.load();
        source.poll(stop ? 0 : 100);
        const live::Header& h = source.header();
        ended = stop || h.status == live::Status::Exited || h.status == live::Status::Disconnected ||
                h.status == live::Status::Failed;
        if (h.status == live::Status::Failed) break;
        if (!ended && std::chrono::steady_clock::now() - last < std::chrono::seconds(1)) continue;
        if (h.status == live::Status::Waiting) continue;
        last = std::chrono::steady_clock::now();
        std::vector<live::Row> rows = source.rows(0, h.native);
        std::sort(rows.begin(), rows.end(), [](const live::Row& a, const live::Row& b) {
            return a.total_bytes > b.total_bytes;
        });
        std::printf("pid %d (%s): heap %s, peak %s, rss %s, %zu thread(s), dropped %llu blocks%s%s\n",
                    h.pid, h.command_line.c_str(), report::size_fmt(h.heap_bytes).c_str(),
                    report::size_fmt(h.peak_heap_bytes).c_str(), report::size_fmt(h.rss_bytes).c_str(),
                    h.threads.size(), static_cast<unsigned long long>(h.dropped_blocks),
                    h.status_text.empty() ? "" : "; ", h.status_text.c_str());
        std::printf("%-40s %-40s %12s %12s %12s\n", "Location", "File", "Total Bytes", "Own Bytes",
                    "Allocations");
        for (size_t i = 0; i < rows.size() && i < 20; ++i) {
            const live::Row& r = rows[i];
            std::string where = r.line ? fmt::format("{}:{}", r.file, r.line) : r.file;
            std::printf("%-40s %-40s %12llu %12llu %12llu\n", r.function.c_str(), where.c_str(),
                        static_cast<unsigned long long>(r.total_bytes),
                        static_cast<unsigned long long>(r.own_bytes),
                        static_cast<unsigned long long>(r.total_allocations));
        }
        std::printf("\n");
        std::fflush(stdout);
    }
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    const live::Header& h = source.header();
    source.close();
    if (h.status == live::Status::Failed) throw UsageError(h.status_text, 1);
    return 0;
}

}  // namespace

int choose_live_port() {
    // As memray does: the kernel picks a free port, which is released for the tracked process to
    // take. Another program could take it in between; the payload then says the port is in use.
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw UsageError(fmt::format("cannot create a socket: {}", std::strerror(errno)));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        int e = errno;
        ::close(fd);
        throw UsageError(fmt::format("cannot find a free port: {}", std::strerror(e)));
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

void check_live_port(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw UsageError(fmt::format("cannot create a socket: {}", std::strerror(errno)));
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as the payload does
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    int e = errno;
    ::close(fd);
    if (rc != 0) throw UsageError(fmt::format("cannot listen on 127.0.0.1:{}: {}", port, std::strerror(e)));
}

int show_live(live::StreamSource& source) {
    if (::isatty(STDIN_FILENO) && ::isatty(STDOUT_FILENO)) {
#if MEMRAY_HAVE_TUI
        tui::LiveViewOptions options;
        int status = tui::run_live_view(source, options);
        const live::Header& h = source.header();
        if (h.status == live::Status::Failed) throw UsageError(h.status_text, 1);
        return status;
#endif
    }
    return print_text_view(source);
}

std::unique_ptr<report::Symbolizer> live_symbolizer() {
    return std::make_unique<report::Symbolizer>(report::SymbolizerOptions{});
}

void register_live(CLI::App& app) {
    auto port = std::make_shared<int>(0);
    auto* sub = app.add_subcommand("live", "Remotely monitor allocations in a text-based interface");
    sub->add_option("port", *port, "Remote port to connect to")->required();
    sub->footer("Connects to a program started with 'memray run --live-remote' (retrying until it "
                "listens) and shows what it holds now.");
    sub->callback([port] {
        if (*port <= 0 || *port >= 65536)
            throw UsageError(fmt::format("Invalid port: {}", *port), k_usage_exit);
        auto symbolizer = live_symbolizer();
        live::StreamOptions o;
        o.port = *port;
        o.symbolizer = symbolizer.get();
        live::StreamSource source(std::move(o));
        show_live(source);
    });
}

}  // namespace memray::cli
