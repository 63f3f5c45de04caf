// `memray attach [-o FILE] [-f] [--native] [--follow-fork] [--compress-on-exit | --no-compress]
//                [--duration SECONDS] [--method M] [-v] <pid>`
//
// The CLI creates the capture file itself (so a relative path means the CLI's directory, also for
// a target in another mount namespace) and hands the open descriptor to the target; see
// docs/attach.md for the whole protocol.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "attach/tracer.hpp"
#include "cli/attach_common.hpp"
#include "cli/commands.hpp"
#include "cli/live_session.hpp"
#include "format/settings.hpp"
#include "inject/injector.hpp"
#include "launch/launch.hpp"
#include "launch/output_file.hpp"
#include "report/allocation_tracker.hpp"
#include "report/capture.hpp"
#include "report/size_format.hpp"

namespace memray::cli {

namespace fs = std::filesystem;

namespace {

constexpr std::chrono::milliseconds k_attach_timeout{5000};
constexpr std::chrono::milliseconds k_detach_timeout{30000};

struct AttachOptions {
    std::string pid;
    std::string output;
    bool force = false;
    bool native = false;
    bool compress_on_exit = false;  // the default; memray's spelling of it
    bool no_compress = false;
    double duration = 0;
    bool verbose = false;
    std::string method;  // memray's choice of debugger; we inject ourselves
    bool aggregate = false;
    bool follow_fork = false;
    bool trace_python_allocators = false;
};

// The one-line summary after --duration, read with the report code.
void print_capture_summary(const std::string& path) {
    try {
        auto reader = report::open_capture(path);
        if (reader->aggregated()) {
            while (reader->next() != format::Reader::Item::End) {
            }
            const format::CheckpointFields& t = reader->aggregate().totals;
            std::printf("Wrote %s: %llu allocations (%s allocated), peak memory %s\n",
                        path.c_str(), static_cast<unsigned long long>(t.allocations),
                        report::size_fmt(t.total_bytes).c_str(),
                        report::size_fmt(t.peak_bytes).c_str());
            std::fflush(stdout);
            return;
        }
        report::AllocationTracker tracker(false, false);  // no size histogram, no per-stack totals
        report::track_capture(*reader, tracker);
        std::printf("Wrote %s: %llu allocations (%s allocated), peak memory %s\n", path.c_str(),
                    static_cast<unsigned long long>(tracker.allocations()),
                    report::size_fmt(tracker.total_bytes()).c_str(),
                    report::size_fmt(tracker.peak()).c_str());
    } catch (const std::exception& e) {
        std::printf("Wrote %s\n", path.c_str());
        std::fprintf(stderr, "memray: warning: cannot summarize %s: %s\n", path.c_str(), e.what());
    }
    std::fflush(stdout);
}

// Without -o (docs/live.md): the target streams to us on a free loopback port and the view shows
// it; quitting the view stops tracking as `memray detach` does, the target runs on.
void run_attach_live(const AttachOptions& o, pid_t pid) {
    if (o.duration != 0)
        throw UsageError("--duration needs -o FILE (the live view runs until you quit it)",
                         k_usage_exit);
    int port = choose_live_port();
    auto symbolizer = live_symbolizer();
    inject::AttachOptions a;
    a.pid = pid;
    a.payload_path = resolve_payload();
    format::set_setting(a.settings.output, fmt::format("the live view on 127.0.0.1:{}", port));
    a.settings.native = o.native;
    a.settings.compress = !o.no_compress;
    a.settings.trace_python_allocators = o.trace_python_allocators;
    a.settings.log_level = launch::log_level_from_environment(false);
    a.settings.live_port = port;
    a.settings.live_accept_timeout_ms = int(k_attach_timeout.count());
    a.timeout = k_attach_timeout;
    a.verbose = o.verbose;

    std::atomic<bool> attached{false};
    live::StreamOptions so;
    so.port = port;
    so.symbolizer = symbolizer.get();
    so.connect_timeout_ms = int(k_attach_timeout.count());
    so.on_close = [pid, &attached] {
        if (!attached.load()) return;
        try {
            inject::detach_payload(pid, k_detach_timeout, false);
        } catch (const std::exception&) {
            // Gone, or tracking already ended (the process exited or exec'd): nothing to restore.
        }
    };
    // Connecting (with retries) while the payload starts listening: attach returns once the
    // payload took the viewer, so both must run at once.
    live::StreamSource source(std::move(so));
    inject::AttachResult r;
    {
        CancelOnSignals signals;
        a.cancelled = [&signals] { return signals.cancelled(); };
        try {
            r = inject::attach_payload(a);
        } catch (const attach::Interrupted&) {
            throw UsageError(
                fmt::format("interrupted: process {} was left running without memray", pid), 130);
        }
    }
    attached.store(true);
    if (o.verbose) {
        std::fprintf(stderr, "memray: live tracking active %.1f ms after the start of attach (port %d)\n",
                     r.active_ms, port);
    }
    show_live(source);
}

void run_attach(const AttachOptions& o) {
    if (o.aggregate && o.output.empty())
        throw UsageError("Can't use aggregated mode without an output file.", k_usage_exit);
    // Without -o, attach means memray's live view: memray's refusal, checked first.
    if (o.output.empty() && o.follow_fork)
        throw UsageError("--follow-fork cannot be used with the live TUI", k_usage_exit);
    if (o.output.empty()) {
        run_attach_live(o, parse_pid(o.pid));
        return;
    }
    if (o.duration < 0 || std::isnan(o.duration))
        throw UsageError("--duration must be a positive number of seconds", k_usage_exit);
    pid_t pid = parse_pid(o.pid);
    if (!o.method.empty()) {
        std::fprintf(stderr, "memray: note: --method %s ignored: memray attaches without a debugger\n",
                     o.method.c_str());
    }

    std::string payload = resolve_payload();
    std::string output_abs = fs::absolute(o.output).lexically_normal().string();

    CancelOnSignals signals;
    inject::AttachOptions a;
    a.pid = pid;
    a.payload_path = payload;
    // The output is only named (messages, detach): the payload writes to the descriptor handed
    // over, which is why force does not concern it.
    format::set_setting(a.settings.output, output_abs);
    a.settings.native = o.native;
    a.settings.compress = !o.no_compress;
    a.settings.follow_fork = o.follow_fork;
    a.settings.trace_python_allocators = o.trace_python_allocators;
    a.settings.aggregate = o.aggregate;
    a.settings.log_level = launch::log_level_from_environment(false);
    launch::OutputFile file(o.output, output_abs, o.force);
    a.output_fd = file.fd();
    a.timeout = k_attach_timeout;
    a.verbose = o.verbose;
    a.cancelled = [&signals] { return signals.cancelled(); };

    inject::AttachResult r;
    try {
        r = inject::attach_payload(a);
    } catch (const attach::Interrupted&) {
        throw UsageError(fmt::format("interrupted: process {} was left running without memray", pid),
                         130);
    }
    if (signals.cancelled()) {
        // Ctrl-C arrived after the last point the attach steps looked: undo the session, so an
        // interrupted attach never leaves tracking running.
        try {
            inject::detach_payload(pid, k_detach_timeout, false);
        } catch (const attach::AttachError&) {
        }
        throw UsageError(fmt::format("interrupted: process {} was left running without memray", pid),
                         130);
    }
    file.keep();
    if (o.verbose) {
        std::fprintf(stderr,
                     "memray: tracking active %.1f ms after the start of attach; thread %d was "
                     "stopped for %.2f ms (%s%s)\n",
                     r.active_ms, r.hijacked_tid, r.stopped_ms,
                     r.loaded_now ? "payload loaded" : "payload already loaded",
                     r.via_memfd ? " through a memfd" : "");
    }

    if (o.duration == 0) {
        std::printf("Tracking allocations in process %d (%s) to %s; run 'memray detach %d' to stop\n",
                    pid, r.command.c_str(), o.output.c_str(), pid);
        std::fflush(stdout);
        return;
    }

    std::printf("Tracking allocations in process %d (%s) to %s for %g s (Ctrl-C to stop early)\n",
                pid, r.command.c_str(), o.output.c_str(), o.duration);
    std::fflush(stdout);
    auto until = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                     std::chrono::duration<double>(o.duration));
    bool exited = false;
    // Watching the status too: a write error (disk full) ends tracking early, and is reported
    // when it happens rather than when the duration is over.
    std::optional<inject::LoadedPayload> loaded = inject::find_loaded_payload(pid);
    while (std::chrono::steady_clock::now() < until && !signals.cancelled()) {
        if (::kill(pid, 0) != 0 && errno == ESRCH) {
            exited = true;
            break;
        }
        try {
            if (loaded && !inject::read_status(pid, loaded->status_address).busy()) break;
        } catch (const attach::NoSuchProcess&) {
            exited = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!exited) {
        try {
            // A second Ctrl-C must not abandon the stop half way: the capture is nearly done.
            // A write error that ended tracking is thrown from here (exit 1, no summary).
            stop_tracking(pid, k_detach_timeout, o.verbose);
        } catch (const attach::NoSuchProcess&) {
            exited = true;
        } catch (const inject::NotAttached&) {
            exited = true;  // tracking ended on its own (exec, or the capture was finalized)
        }
    }
    if (exited) std::printf("Process %d ended tracking before the duration was over\n", pid);
    print_capture_summary(output_abs);
}

}  // namespace

void register_attach(CLI::App& app) {
    auto o = std::make_shared<AttachOptions>();
    auto* sub = app.add_subcommand("attach", "Begin tracking allocations in an already-started process");
    sub->add_option("pid", o->pid, "Process ID (PID) of the process to attach to")->required();
    sub->add_option("-o,--output", o->output,
                    "Capture allocations into the given file instead of starting a live tracking "
                    "session");
    sub->add_flag("-f,--force", o->force, "Overwrite the output file if it exists");
    sub->add_flag("--native", o->native, "Record native (C/C++) stack frames as well");
    auto* coe = sub->add_flag("--compress-on-exit", o->compress_on_exit,
                              "Compress the capture with lz4 (the default; blocks are compressed "
                              "while recording)");
    auto* nc = sub->add_flag("--no-compress", o->no_compress, "Write uncompressed blocks");
    coe->excludes(nc);
    nc->excludes(coe);
    sub->add_option("--duration", o->duration,
                    "Track for this many seconds, then detach and summarize the capture");
    sub->add_option("--method", o->method,
                    "Accepted for compatibility with memray and ignored: no debugger is needed")
        ->check(CLI::IsMember({"auto", "sys.remote_exec", "gdb", "lldb"}));
    sub->add_flag("-v,--verbose", o->verbose, "Print each step with its timing on stderr");
    sub->add_flag("--aggregate", o->aggregate,
                  "Write per-location peak and leak tables instead of every allocation "
                  "(a much smaller file; checkpointed every second)");
    sub->add_flag("--follow-fork", o->follow_fork,
                  "Record children forked after the attach, each into <output>.<child pid>");
    sub->add_flag("--trace-python-allocators", o->trace_python_allocators,
                  "Record every allocation of Python's object and memory allocators (pymalloc) "
                  "as PYMALLOC_* events, from now until the detach");
    sub->footer("Without -o: the live view until you quit it (q), which stops tracking. With -o: "
                "stop tracking with 'memray detach PID'. The target keeps running either way.");
    sub->callback([o] { run_attach(*o); });
}

}  // namespace memray::cli
