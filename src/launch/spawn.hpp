// Starting the child process: fork now, exec once the parent has sent the settings. The settings
// name the output, whose default name holds the child's pid, so they exist only after fork().
// Signals sent to memray alone are forwarded to the child while it runs.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <iterator>
#include <string>
#include <vector>

namespace memray::launch {

// What the child execs. The values start() sends (the settings, then for a Python target the
// banner) go into argv[settings_arg], argv[settings_arg + 1], ... or, if settings_arg is
// negative, the settings alone into MEMRAY_SETTINGS in `env`.
struct ExecSpec {
    std::string path;
    std::vector<std::string> argv;
    std::vector<std::string> env;  // "KEY=value"
    int settings_arg = -1;
    // >= 0: the program's stdout and stderr go to this descriptor, its stdin is /dev/null, and it
    // runs in a process group of its own (run --live: the terminal belongs to the view).
    int output_fd = -1;
};

// execve's form of `v`: pointers into its strings, then a null.
std::vector<char*> c_strings(std::vector<std::string>& v);

// This process's environment with the `set` keys replaced or added and the `unset` keys removed.
std::vector<std::string> environment_with(
    const std::vector<std::pair<std::string, std::string>>& set, const std::vector<std::string>& unset);

// While alive: SIGINT, SIGTERM, SIGHUP, SIGQUIT sent to memray alone (kill, a supervisor) go on
// to the child. Restores the previous dispositions when destroyed.
class SignalForwarding {
  public:
    SignalForwarding();
    ~SignalForwarding();
    SignalForwarding(const SignalForwarding&) = delete;
    SignalForwarding& operator=(const SignalForwarding&) = delete;
    void forward_to(pid_t child);
    // In the child before exec: the program gets the dispositions memray was started with (an
    // ignored SIGINT, as in a background job, stays ignored).
    void restore() const;

  private:
    static constexpr int k_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    struct sigaction m_old[std::size(k_signals)] {};
};

// A forked child waiting for its settings. Throws LaunchError when fork or pipe fail. Destroyed
// before start(), the child exits without running anything and is reaped.
class PendingChild {
  public:
    explicit PendingChild(ExecSpec spec);
    ~PendingChild();
    PendingChild(const PendingChild&) = delete;
    PendingChild& operator=(const PendingChild&) = delete;

    pid_t pid() const { return m_pid; }
    // Sends the settings (and the values after them, see ExecSpec) and lets the child exec.
    // Returns 0, or the errno of a failed exec (the child is reaped then).
    int start(const std::vector<std::string>& values);
    // The child's wait status, once it has ended.
    int wait();

  private:
    SignalForwarding m_signals;
    int m_go[2] = {-1, -1};          // settings, parent -> child; closed empty = give up
    int m_exec_error[2] = {-1, -1};  // a failed exec's errno, child -> parent
    pid_t m_pid = -1;
    bool m_reaped = false;
};

}  // namespace memray::launch
