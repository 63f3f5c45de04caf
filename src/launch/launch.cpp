#include "launch/launch.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "launch/error.hpp"
#include "launch/output_file.hpp"
#include "launch/program.hpp"
#include "launch/python_check.hpp"
#include "launch/spawn.hpp"

namespace memray::launch {

namespace fs = std::filesystem;

namespace {

std::string errno_text(int err) { return std::strerror(err); }

struct FdGuard {
    int fd = -1;
    ~FdGuard() {
        if (fd >= 0) ::close(fd);
    }
};

// The command line stored in the capture header: the memray invocation itself.
std::string own_command_line() {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string out;
    for (char c : raw) out.push_back(c == '\0' || c == '\n' ? ' ' : c);
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
}

std::string shell_quote(const std::string& s) {
    if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789@%_+=:,./-") == std::string::npos) {
        return s;
    }
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "'\\''";
        else out.push_back(c);
    }
    return out + "'";
}

// How this memray was invoked (memray suggests `<python> -m memray` for the same reason: the
// example commands must work as printed, also from a build tree).
std::string own_invocation() {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::string argv0;
    std::getline(in, argv0, '\0');
    return argv0.find('/') != std::string::npos ? shell_quote(argv0) : "memray";
}

void print_success(const std::string& shown) {
    std::string file = shell_quote(shown);
    std::string memray = own_invocation();
    std::printf(
        "[memray] Successfully generated profile results.\n\n"
        "You can now generate reports from the stored allocation records.\n"
        "Some example commands to generate reports:\n\n"
        "%s summary %s\n"
        "%s stats %s\n",
        memray.c_str(), file.c_str(), memray.c_str(), file.c_str());
    std::fflush(stdout);
}

// Where the capture goes, as shown to the user (memray's default: next to the script).
std::string display_output(const LaunchRequest& r, pid_t pid) {
    if (!r.output.empty()) return r.output;
    std::string suffix = "." + std::to_string(pid) + ".bin";
    switch (r.mode) {
        case Mode::Script: {
            fs::path script(r.target);
            return (script.parent_path() / ("memray-" + script.filename().string() + suffix)).string();
        }
        case Mode::Module: return "memray-" + r.target + suffix;
        case Mode::Code: return "memray-string" + suffix;
        case Mode::Native: return "memray-" + fs::path(r.target).filename().string() + suffix;
    }
    return {};
}

ExecSpec native_spec(const LaunchRequest& r) {
    auto program = find_program(r.target);
    if (!program) throw LaunchError("program not found or not executable: " + r.target);
    if (elf_kind(*program) == ElfKind::Static) {
        throw LaunchError(*program +
                          " is statically linked: memray can only track dynamically linked programs");
    }
    ExecSpec spec;
    spec.path = *program;
    spec.argv.push_back(r.target);
    spec.argv.insert(spec.argv.end(), r.args.begin(), r.args.end());
    const char* preload = std::getenv("LD_PRELOAD");
    std::string value = r.payload;
    if (preload != nullptr && *preload != '\0') value += std::string(":") + preload;
    // A stale MEMRAY_SETTINGS of the caller must not shadow the one the child adds.
    spec.env = environment_with({{"LD_PRELOAD", value}}, {"MEMRAY_SETTINGS"});
    return spec;
}

ExecSpec python_spec(const LaunchRequest& r) {
    std::string python_name = r.python.empty() ? "python3" : r.python;
    auto python = find_program(python_name);
    if (!python) {
        throw LaunchError("Python interpreter not found or not executable: " + python_name +
                          (r.python.empty() ? " (use --python PATH)" : ""));
    }
    if (r.mode == Mode::Script) {
        struct stat st {};
        if (::stat(r.target.c_str(), &st) != 0 || ::access(r.target.c_str(), R_OK) != 0) {
            int err = errno;
            throw LaunchError("cannot open script " + r.target + ": " + errno_text(err));
        }
        if (S_ISDIR(st.st_mode)) throw LaunchError(r.target + " is a directory");
        if (elf_kind(r.target) != ElfKind::NotElf) {
            throw LaunchError(r.target + " is a native program, not a Python script: use 'memray run -- " +
                              r.target + "'");
        }
    }
    const char* mode = r.mode == Mode::Script ? "file" : r.mode == Mode::Module ? "module" : "code";
    // The bootstrap checks the interpreter and the target itself, before it prints the banner;
    // the live view takes the terminal and the program's output first, so it checks apart.
    if (r.while_running) check_python_target(*python, mode, r.target);
    ExecSpec spec;
    spec.path = *python;
    // argv[0] is the resolved path so that sys.executable is exactly this interpreter; the
    // settings and the banner take the empty slots after the payload.
    spec.argv = {*python, "-c", k_bootstrap_stub, r.payload, "", "", mode, r.target};
    spec.settings_arg = 4;
    spec.argv.insert(spec.argv.end(), r.args.begin(), r.args.end());
    // Tracking starts in the bootstrap, not when ctypes loads the payload.
    spec.env = environment_with({{"MEMRAY_BOOTSTRAP", std::string(bootstrap_source())}},
                                {"MEMRAY_SETTINGS"});
    return spec;
}

// What start() sends: a Python target's bootstrap prints the banner once its checks pass (a
// refused run prints nothing else); for a native program it is printed here.
std::vector<std::string> with_banner(const LaunchRequest& r, const std::string& settings,
                                     const std::string& banner) {
    if (r.mode != Mode::Native) return {settings, banner};
    if (!banner.empty()) {
        std::printf("%s\n", banner.c_str());
        std::fflush(stdout);
    }
    return {settings};
}

// The live modes: no capture file; the program streams to a viewer (docs/live.md).
int run_live(const LaunchRequest& r, ExecSpec spec) {
    std::string path = spec.path;
    std::fflush(stdout);
    std::fflush(stderr);
    PendingChild child(std::move(spec));
    format::PayloadSettings settings = r.settings;
    std::string text;
    try {
        format::set_setting(settings.command, own_command_line());
        text = format::settings_text(settings);
    } catch (const std::logic_error& e) {
        throw LaunchError(std::string("cannot pass the settings to the payload: ") + e.what());
    }
    std::string banner;
    if (!r.while_running && !r.quiet) {
        banner = "Run '" + r.live_command + " live " + std::to_string(settings.live_port) +
                 "' in another shell to see live results";
    }
    if (int err = child.start(with_banner(r, text, banner)); err != 0)
        throw LaunchError("cannot execute " + path + ": " + errno_text(err));
    bool ended_by_us = false;
    if (r.while_running) {
        r.while_running(child.pid());
        // Still running? (WNOWAIT: an ended program stays for child.wait() to reap.)
        siginfo_t info{};
        if (::waitid(P_PID, id_t(child.pid()), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == 0) {
            ::kill(child.pid(), SIGTERM);
            ended_by_us = true;
        }
    }
    int status = child.wait();
    if (ended_by_us) return 0;
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        if (!r.quiet) {
            std::fprintf(stderr, "memray: %s was killed by signal %d (%s)\n", r.target.c_str(), sig,
                         strsignal(sig));
        }
        return 128 + sig;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

}  // namespace

int log_level_from_environment(bool quiet) {
    const char* level = std::getenv("MEMRAY_LOG_LEVEL");
    if (level == nullptr || *level == '\0')
        return quiet ? 3 : format::PayloadSettings::k_default_log_level;
    if (level[0] < '0' || level[0] > '3' || level[1] != '\0') {
        throw LaunchError(std::string("MEMRAY_LOG_LEVEL must be 0 (debug) to 3 (errors only), not '") +
                          level + "'");
    }
    return level[0] - '0';
}

int run_tracked(const LaunchRequest& r) {
    ExecSpec spec = r.mode == Mode::Native ? native_spec(r) : python_spec(r);
    std::string path = spec.path;
    bool live = r.settings.live_port != 0;
    FdGuard program_output;
    if (!r.program_output.empty()) {
        program_output.fd = ::open(r.program_output.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (program_output.fd < 0) {
            int err = errno;
            throw LaunchError("cannot create " + r.program_output + ": " + errno_text(err));
        }
        spec.output_fd = program_output.fd;
    }
    if (live) return run_live(r, std::move(spec));

    std::fflush(stdout);
    std::fflush(stderr);
    PendingChild child(std::move(spec));

    // Until start() the child waits; an exception below lets it exit without running anything.
    std::string shown = display_output(r, child.pid());
    std::string output_abs = fs::absolute(shown).lexically_normal().string();
    check_output_file(shown, output_abs, r.settings.force);
    format::PayloadSettings settings = r.settings;
    std::string text;
    try {
        format::set_setting(settings.output, output_abs);
        format::set_setting(settings.command, own_command_line());
        text = format::settings_text(settings);
    } catch (const std::logic_error& e) {  // length_error, invalid_argument
        throw LaunchError(std::string("cannot pass the settings to the payload: ") + e.what());
    }
    FileStamp before = FileStamp::of(output_abs);
    std::string banner = r.quiet ? "" : "Writing profile results into " + shown;
    if (int err = child.start(with_banner(r, text, banner)); err != 0)
        throw LaunchError("cannot execute " + path + ": " + errno_text(err));
    int status = child.wait();

    // memray prints this even when the script failed: the capture is still worth reading.
    FileStamp after = FileStamp::of(output_abs);
    if (after.exists() && !after.same_as(before) && !r.quiet) print_success(shown);
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        if (!r.quiet) {
            std::fprintf(stderr, "memray: %s was killed by signal %d (%s)\n", r.target.c_str(), sig,
                         strsignal(sig));
        }
        std::fflush(stdout);
        return 128 + sig;
    }
    // The program's own failure, not memray's: no "memray: error:" line, just its status.
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

}  // namespace memray::launch
