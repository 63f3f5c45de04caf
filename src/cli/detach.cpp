// `memray detach [-v] <pid>`: asks the payload of a process attached with `memray attach` to stop.
// No ptrace and no stall: the request is a word written into the payload's status, which its
// control thread polls (docs/attach.md).
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "attach/tracer.hpp"
#include "cli/attach_common.hpp"
#include "cli/commands.hpp"
#include "inject/injector.hpp"

namespace memray::cli {

namespace {

struct DetachOptions {
    std::string pid;
    bool verbose = false;
};

void run_detach(const DetachOptions& o) {
    pid_t pid = parse_pid(o.pid);
    CancelOnSignals signals;
    inject::DetachResult r;
    try {
        r = stop_tracking(pid, std::chrono::milliseconds(30000), o.verbose,
                          [&signals] { return signals.cancelled(); });
    } catch (const attach::Interrupted&) {
        // The stop was requested already: the payload finishes the capture on its own.
        throw UsageError(fmt::format("interrupted: process {} is finishing its capture on its own",
                                     pid),
                         130);
    }
    if (o.verbose) std::fprintf(stderr, "memray: capture finalized %.1f ms after the stop request\n", r.stop_ms);
    std::printf("Wrote %s\n", r.output.c_str());
    std::fflush(stdout);
}

}  // namespace

void register_detach(CLI::App& app) {
    auto o = std::make_shared<DetachOptions>();
    auto* sub = app.add_subcommand("detach", "End the tracking started by a previous `memray attach`");
    sub->add_option("pid", o->pid, "Process ID (PID) of the process to detach from")->required();
    sub->add_flag("-v,--verbose", o->verbose, "Print each step with its timing on stderr");
    sub->callback([o] { run_detach(*o); });
}

}  // namespace memray::cli
