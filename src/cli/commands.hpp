// One register function per subcommand (one file each). main.cpp wires them up and is the only
// place that turns exceptions into "memray: error: ..." and an exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <stdexcept>
#include <string>

namespace memray::cli {

// A user-facing error: main prints "memray: error: <what>" and exits with `code`.
class UsageError : public std::runtime_error {
  public:
    explicit UsageError(const std::string& what, int code = 1)
        : std::runtime_error(what), m_code(code) {}
    int code() const { return m_code; }

  private:
    int m_code;
};

// Usage mistakes exit with 2 (as argparse does); problems with files and programs exit with 1.
constexpr int k_usage_exit = 2;

// Each registers its subcommand on `app`; the callback runs the command and may throw. A command
// whose success is not simply 0 (run: the program's status) stores its exit status in
// `exit_status`, which main returns; no command exits the process itself.
void register_run(CLI::App& app, int& exit_status);
void register_summary(CLI::App& app);
void register_stats(CLI::App& app);
void register_parse(CLI::App& app);
void register_attach(CLI::App& app);      // attach.cpp
void register_detach(CLI::App& app);      // detach.cpp
void register_flamegraph(CLI::App& app);  // flamegraph.cpp
void register_table(CLI::App& app);       // table.cpp
void register_tree(CLI::App& app);        // tree.cpp
void register_transform(CLI::App& app);   // transform.cpp
void register_live(CLI::App& app);        // live.cpp

// Path of libmemray-payload.so: $MEMRAY_PAYLOAD; else, for the memray of the build tree, the
// payload built with it; else the installed one, found relative to the running binary
// (<bindir>/memray -> <libdir>/memray/libmemray-payload.so). payload_path.cpp.
std::string payload_path();
// payload_path() made absolute, or UsageError "cannot use the payload ..." when it is not readable.
std::string resolve_payload();

}  // namespace memray::cli
