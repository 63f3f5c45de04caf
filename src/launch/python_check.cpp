#include "launch/python_check.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "launch/error.hpp"

namespace memray::launch {

namespace {

// Runs under any Python (2.x included, so that it can say which version it is): prints
// "MAJOR.MINOR", then "invalid" when argv[2] (a file when argv[1] is "file", else code) does not
// parse. Parsing, not compiling, is memray's test (ast.parse): `return` at module level passes.
// compile() with PyCF_ONLY_AST (0x400) is what ast.parse calls, without importing ast, and the
// interpreter runs with -S -E (no site, no PYTHON* variables): the probe takes ~15 ms less.
constexpr const char* k_probe =
    "import sys\n"
    "sys.stdout.write('%d.%d\\n' % sys.version_info[:2])\n"
    "sys.stdout.flush()\n"
    "if sys.version_info >= (3, 8):\n"
    "    try:\n"
    "        if sys.argv[1] == 'file':\n"
    "            f = open(sys.argv[2], 'rb')\n"
    "            source = f.read()\n"
    "            f.close()\n"
    "        else:\n"
    "            source = sys.argv[2].encode('utf-8', 'surrogateescape')\n"
    "        compile(source, '<unknown>', 'exec', 0x400)\n"
    "    except (SyntaxError, ValueError):\n"
    "        sys.stdout.write('invalid\\n')\n";

// The probe's stdout; empty when it could not run.
std::string run_probe(const std::string& python, const std::string& target, bool is_file) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return {};
    std::vector<std::string> args = {python, "-S", "-E", "-c", k_probe, is_file ? "file" : "code",
                                     target};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], STDOUT_FILENO);
        int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (devnull >= 0) ::dup2(devnull, STDERR_FILENO);  // a broken interpreter's noise
        ::execv(python.c_str(), argv.data());
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

void check_python_target(const std::string& python, const std::string& target, bool is_file) {
    std::string text = run_probe(python, target, is_file);
    int major = 0, minor = 0;
    if (std::sscanf(text.c_str(), "%d.%d", &major, &minor) != 2) return;
    if (major != 3 || minor < k_oldest_python_minor || minor > k_newest_python_minor) {
        throw LaunchError("unsupported Python " + std::to_string(major) + "." +
                          std::to_string(minor) + " (" + python + "): memray tracks Python 3." +
                          std::to_string(k_oldest_python_minor) + " to 3." +
                          std::to_string(k_newest_python_minor) +
                          "; choose another interpreter with --python");
    }
    if (text.find("\ninvalid") != std::string::npos)
        throw LaunchError("Only valid Python files or commands can be executed under memray");
}

}  // namespace memray::launch
