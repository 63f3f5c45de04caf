// `memray run`: the options. The launcher stage (src/launch) starts the program, tracks it and
// returns its exit status, which main exits with.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <memory>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/live_session.hpp"
#include "launch/launch.hpp"

namespace memray::cli {

namespace {

using launch::Mode;

struct RunOptions {
    std::string output;
    bool force = false;
    bool native = false;
    bool quiet = false;
    bool compress_on_exit = false;
    bool no_compress = false;
    bool buffered_file_io = false;
    std::string python;
    bool module = false;
    bool code = false;
    bool follow_fork = false;
    bool live = false;
    bool live_remote = false;
    int live_port = -1;  // -1: not given
    bool aggregate = false;
    bool trace_python_allocators = false;
    // Declared as a positional so that CLI11 hands the target and everything after it over
    // verbatim (see register_run); never filled.
    std::vector<std::string> target_placeholder;
};

// Parses what CLI11 left over: the target and its arguments, verbatim and in order.
launch::LaunchRequest parse_target(const RunOptions& opt, std::vector<std::string> rest) {
    launch::LaunchRequest t;
    if (opt.module && opt.code) throw UsageError("-m and -c cannot be used together", k_usage_exit);
    bool dashdash = !rest.empty() && rest.front() == "--";
    if (dashdash) rest.erase(rest.begin());
    if (opt.module || opt.code) {
        t.mode = opt.module ? Mode::Module : Mode::Code;
        if (rest.empty()) {
            throw UsageError(opt.module ? "-m needs a module name" : "-c needs the code to run",
                             k_usage_exit);
        }
    } else if (dashdash) {
        t.mode = Mode::Native;
        if (rest.empty()) throw UsageError("no program given after '--'", k_usage_exit);
    } else {
        t.mode = Mode::Script;
        if (rest.empty()) {
            throw UsageError(
                "nothing to run: give a script (memray run script.py), -m module, -c code, "
                "or a program after '--' (memray run -- program)",
                k_usage_exit);
        }
        if (rest.front().size() > 1 && rest.front()[0] == '-') {
            throw UsageError(fmt::format("unknown option '{}' (see memray run --help)", rest.front()),
                             k_usage_exit);
        }
    }
    t.target = rest.front();
    t.args.assign(rest.begin() + 1, rest.end());
    return t;
}

void reject_combinations(const RunOptions& opt) {
    // memray's errors for combinations the live modes refuse.
    bool live = opt.live || opt.live_remote;
    if (opt.live_port >= 0 && !opt.live_remote)
        throw UsageError("The --live-port argument requires --live-remote", k_usage_exit);
    if (opt.follow_fork && live)
        throw UsageError("--follow-fork cannot be used with the live TUI", k_usage_exit);
    if (opt.aggregate && live)
        throw UsageError("--aggregate cannot be used with the live TUI", k_usage_exit);
    if (opt.buffered_file_io && live)
        throw UsageError("--buffered-file-io cannot be used with --live/--live-remote", k_usage_exit);
    // memray's argparse group: one destination.
    if (opt.live && opt.live_remote)
        throw UsageError("argument --live-remote: not allowed with argument --live", k_usage_exit);
    if (live && !opt.output.empty())
        throw UsageError(fmt::format("argument {}: not allowed with argument -o/--output",
                                     opt.live ? "--live" : "--live-remote"),
                         k_usage_exit);
    if (opt.live_port == 0 || opt.live_port >= 65536)
        throw UsageError(fmt::format("Invalid port: {}", opt.live_port), 1);
}

// How this memray was invoked, for the --live-remote message (the command must work as shown).
std::string own_invocation() {
    char buf[4096];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    std::string argv0;
    if (FILE* f = std::fopen("/proc/self/cmdline", "rb")) {
        int c;
        while ((c = std::fgetc(f)) != EOF && c != 0) argv0.push_back(char(c));
        std::fclose(f);
    }
    if (argv0.find('/') == std::string::npos || n <= 0) return "memray";
    return argv0;
}

// run --live: the view in the foreground while the program runs; its output goes to a file.
int run_live_view(launch::LaunchRequest& r) {
    int port = choose_live_port();
    r.settings.live_port = port;
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/memray-live-XXXXXX";
    std::vector<char> dir(pattern.begin(), pattern.end());
    dir.push_back('\0');
    if (!::mkdtemp(dir.data()))
        throw UsageError(fmt::format("cannot create a directory for the program's output: {}",
                                     std::strerror(errno)));
    r.program_output = std::string(dir.data()) + "/output.txt";
    auto symbolizer = live_symbolizer();
    int view_status = 0;
    r.while_running = [&](pid_t) {
        live::StreamOptions o;
        o.port = port;
        o.program_output = r.program_output;
        o.symbolizer = symbolizer.get();
        live::StreamSource source(std::move(o));
        view_status = show_live(source);
    };
    int status = launch::run_tracked(r);
    std::printf("The program's output is in %s\n", r.program_output.c_str());
    std::fflush(stdout);
    return view_status ? view_status : status;
}

int run_command(const RunOptions& opt, const std::vector<std::string>& rest) {
    reject_combinations(opt);
    launch::LaunchRequest r = parse_target(opt, rest);
    if (!opt.python.empty() && r.mode == Mode::Native) {
        throw UsageError("--python applies to Python scripts, not to a program after '--'",
                         k_usage_exit);
    }
    if (r.mode == Mode::Code && ::access(r.target.c_str(), F_OK) == 0)
        throw UsageError("remove the option -c to run a file", k_usage_exit);
    r.payload = resolve_payload();
    r.python = opt.python;
    r.output = opt.output;
    r.quiet = opt.quiet;
    if (opt.trace_python_allocators && r.mode == Mode::Native) {
        throw UsageError("--trace-python-allocators applies to Python scripts, not to a program "
                         "after '--'", k_usage_exit);
    }
    r.settings.native = opt.native;
    r.settings.trace_python_allocators = opt.trace_python_allocators;
    r.settings.compress = !opt.no_compress;
    r.settings.force = opt.force;
    r.settings.follow_fork = opt.follow_fork;
    r.settings.aggregate = opt.aggregate;
    r.settings.log_level = launch::log_level_from_environment(opt.quiet);
    if (opt.live) return run_live_view(r);
    if (opt.live_remote) {
        r.settings.live_port = opt.live_port > 0 ? opt.live_port : choose_live_port();
        check_live_port(r.settings.live_port);
        r.settings.live_reconnect = true;
        r.live_command = own_invocation();
    }
    return launch::run_tracked(r);
}

}  // namespace

void register_run(CLI::App& app, int& exit_status) {
    auto opt = std::make_shared<RunOptions>();
    auto* sub = app.add_subcommand("run", "Run a Python script or a native program and track its memory");
    sub->add_option("-o,--output", opt->output,
                    "Output file (default: memray-<name>.<pid>.bin, next to the script)");
    sub->add_flag("-f,--force", opt->force, "Overwrite the output file if it exists");
    sub->add_flag("--native", opt->native, "Record native (C/C++) stack frames as well");
    sub->add_flag("-q,--quiet", opt->quiet, "Do not print tracking-specific output");
    auto* coe = sub->add_flag("--compress-on-exit", opt->compress_on_exit,
                              "Compress the capture with lz4 (the default; blocks are compressed "
                              "while recording)");
    auto* nc = sub->add_flag("--no-compress", opt->no_compress, "Write uncompressed blocks");
    coe->excludes(nc);
    nc->excludes(coe);
    sub->add_flag("--buffered-file-io", opt->buffered_file_io,
                  "Accepted for compatibility with memray; has no effect");
    sub->add_option("--python", opt->python,
                    "Python interpreter for scripts, modules and -c (default: python3 on PATH)");
    sub->add_flag("-m", opt->module, "Run a library module as a script (ends memray's options)");
    sub->add_flag("-c", opt->code, "Run the code given as a string (ends memray's options)");
    sub->add_flag("--aggregate", opt->aggregate,
                  "Write per-location peak and leak tables instead of every allocation "
                  "(a much smaller file; checkpointed every second)");
    sub->add_flag("--follow-fork", opt->follow_fork,
                  "Record forked children too, each into <output>.<child pid>");
    sub->add_flag("--trace-python-allocators", opt->trace_python_allocators,
                  "Record every allocation of Python's object and memory allocators (pymalloc) "
                  "as PYMALLOC_* events, so reports show individual Python objects");
    sub->add_flag("--live", opt->live,
                  "Start a live tracking session and show it in the terminal (the program's "
                  "output goes to a file, named when the view closes)");
    sub->add_flag("--live-remote", opt->live_remote,
                  "Start a live tracking session and wait until 'memray live PORT' connects");
    sub->add_option("-p,--live-port", opt->live_port,
                    "Port for --live-remote (default: a free port, printed)");
    // With prefix_command, CLI11 leaves the first positional and everything after it (options
    // of the target included) in remaining(). Declaring a positional that refuses every value
    // (validate_positionals) makes a leading "--" land there too instead of going to the parent.
    sub->add_option("target", opt->target_placeholder,
                    "script.py | -m module | -c code | -- program, followed by its arguments")
        ->check(CLI::Validator([](std::string&) { return std::string("taken verbatim"); }, ""));
    sub->validate_positionals();
    sub->prefix_command();
    sub->footer(
        "Usage forms:\n"
        "  memray run [options] script.py [args...]\n"
        "  memray run [options] -m module [args...]\n"
        "  memray run [options] -c code [args...]\n"
        "  memray run [options] -- program [args...]   (any dynamically linked program)");
    sub->callback([opt, sub, &exit_status] { exit_status = run_command(*opt, sub->remaining()); });
}

}  // namespace memray::cli
