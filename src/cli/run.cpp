// `memray run`: the options. The launcher stage (src/launch) starts the program, tracks it and
// returns its exit status, which main exits with.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "cli/commands.hpp"
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
    // Options of memray that arrive with later work.
    bool aggregate = false;
    bool follow_fork = false;
    bool trace_python_allocators = false;
    bool live = false;
    bool live_remote = false;
    int live_port = 0;
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

void reject_planned(const RunOptions& opt) {
    reject_planned_option(opt.aggregate, "aggregate");
    reject_planned_option(opt.follow_fork, "follow-fork");
    reject_planned_option(opt.trace_python_allocators, "trace-python-allocators");
    reject_planned_option(opt.live, "live");
    reject_planned_option(opt.live_remote, "live-remote");
    reject_planned_option(opt.live_port != 0, "live-port");
}

int run_command(const RunOptions& opt, const std::vector<std::string>& rest) {
    reject_planned(opt);
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
    r.settings.native = opt.native;
    r.settings.compress = !opt.no_compress;
    r.settings.force = opt.force;
    r.settings.log_level = launch::log_level_from_environment(opt.quiet);
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
                              "Compress the capture with lz4 (the default)");
    auto* nc = sub->add_flag("--no-compress", opt->no_compress, "Write uncompressed blocks");
    coe->excludes(nc);
    nc->excludes(coe);
    sub->add_flag("--buffered-file-io", opt->buffered_file_io,
                  "Accepted for compatibility with memray; has no effect");
    sub->add_option("--python", opt->python,
                    "Python interpreter for scripts, modules and -c (default: python3 on PATH)");
    sub->add_flag("-m", opt->module, "Run a library module as a script (ends memray's options)");
    sub->add_flag("-c", opt->code, "Run the code given as a string (ends memray's options)");
    sub->add_flag("--aggregate", opt->aggregate, "Not supported yet");
    sub->add_flag("--follow-fork", opt->follow_fork, "Not supported yet");
    sub->add_flag("--trace-python-allocators", opt->trace_python_allocators, "Not supported yet");
    sub->add_flag("--live", opt->live, "Not supported yet");
    sub->add_flag("--live-remote", opt->live_remote, "Not supported yet");
    sub->add_option("-p,--live-port", opt->live_port, "Not supported yet");
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
