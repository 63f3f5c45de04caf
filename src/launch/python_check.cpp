#include "launch/python_check.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "launch/error.hpp"
#include "launch/launch.hpp"
#include "launch/spawn.hpp"

namespace memray::launch {

namespace {

// The checking run's stderr, where the bootstrap writes "memray: error: ..."; empty when it
// could not run.
std::string run_checks(const std::string& python, const char* mode, const std::string& target) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return {};
    // -S -E: no site, no PYTHON* variables (~15 ms less); an empty payload means "only check".
    std::vector<std::string> args = {python, "-S", "-E", "-c", k_bootstrap_stub, "", "", "",
                                     mode, target};
    std::vector<char*> argv = c_strings(args);
    std::vector<std::string> env =
        environment_with({{"MEMRAY_BOOTSTRAP", std::string(bootstrap_source())}}, {});
    std::vector<char*> envp = c_strings(env);
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], STDERR_FILENO);
        int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
        ::execve(python.c_str(), argv.data(), envp.data());
        ::_exit(127);
    }
    ::close(out[1]);
    std::string text;
    if (pid > 0) {
        char buf[256];
        for (;;) {
            ssize_t n = ::read(out[0], buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            text.append(buf, size_t(n));
        }
        int status;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    ::close(out[0]);
    return text;
}

}  // namespace

void check_python_target(const std::string& python, const char* mode, const std::string& target) {
    std::string text = run_checks(python, mode, target);
    const std::string prefix = "memray: error: ";
    size_t at = text.rfind(prefix);
    if (at == std::string::npos || (at > 0 && text[at - 1] != '\n')) return;
    std::string message = text.substr(at + prefix.size());
    message = message.substr(0, message.find('\n'));
    throw LaunchError(message);
}

}  // namespace memray::launch
