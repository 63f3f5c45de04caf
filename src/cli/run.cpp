// `memray run`: starts a Python script (file, -m module, -c code) or a native program with the
// payload tracking it from launch, waits for it, and exits with its status.
//
// Python: `python3 -c <stub>` runs the bootstrap below, which loads the payload with ctypes and
// starts tracking right before the user's code, so interpreter start-up and finalization stay out
// of the capture. Native: the program is exec'd with the payload in LD_PRELOAD and its settings in
// MEMRAY_SETTINGS; the payload's constructor starts tracking (see src/payload/api.hpp).
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "memray_config.h"

extern char** environ;

namespace memray::cli {

namespace fs = std::filesystem;

namespace {

// Runs inside the target interpreter (3.8-3.13), compiled with the file name "<memray>" so that
// reports can drop every frame from the root up to and including the last "<memray>" frame (the
// one-line "<string>" stub of `python3 -c` sits below it). argv: payload, settings, mode
// (file|module|code), target, script arguments...
constexpr const char* k_bootstrap = R"PY(
import sys


def _memray_fail(message, code=1):
    sys.stderr.write("memray: error: %s\n" % message)
    sys.stderr.flush()
    raise SystemExit(code)


def _memray_join_threads():
    # The interpreter would wait for these during finalization, after tracking stopped; wait here
    # so what they do is in the capture.
    threading = sys.modules.get("threading")
    if threading is None:
        return
    me = threading.current_thread()
    while True:
        pending = [t for t in threading.enumerate()
                   if t is not me and not t.daemon and t.is_alive()]
        if not pending:
            return
        for thread in pending:
            thread.join()


def _memray_name_threads(lib):
    # Python's thread names ("MainThread", "Thread-1 (worker)") are what users know; the OS
    # name of every Python thread is the interpreter's. Hand them to the payload as threads start.
    import ctypes
    import threading
    name_thread = lib.memray_payload_name_thread
    name_thread.argtypes = [ctypes.c_char_p]
    name_thread.restype = None
    name_thread(threading.current_thread().name.encode(errors="replace"))
    original = threading.Thread._bootstrap_inner

    def _bootstrap_inner(self):
        name_thread(self.name.encode(errors="replace"))
        return original(self)

    threading.Thread._bootstrap_inner = _bootstrap_inner


def _memray_run():
    import ctypes
    import os
    import runpy
    import types

    payload, settings, mode, target = sys.argv[1:5]
    args = sys.argv[5:]
    old_main = sys.modules["__main__"]
    modify_path = not sys.flags.isolated and not getattr(sys.flags, "safe_path", False)

    # Everything that can fail on the user's input fails here, before tracking starts.
    code = None
    main = None
    if mode == "module":
        if modify_path:
            sys.path[0] = os.getcwd()
        import importlib.util
        top = target.partition(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            _memray_fail("No module named %r" % top)
        sys.argv = ["", *args]  # runpy puts the module's path in argv[0]
    else:
        if mode == "file":
            filename = os.path.abspath(target)
            try:
                with open(filename, "rb") as f:
                    source = f.read()
            except OSError as e:
                _memray_fail("cannot read %s: %s" % (target, e.strerror))
            if modify_path:
                sys.path[0] = os.path.dirname(os.path.realpath(target))
            sys.argv = [target, *args]
        else:
            filename = "<string>"
            source = target
            if modify_path:
                sys.path[0] = ""
            sys.argv = ["-c", *args]
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            import traceback
            traceback.print_exception(type(e), e, None)
            raise SystemExit(1)
        main = types.ModuleType("__main__")
        main.__dict__.update(__builtins__=old_main.__dict__["__builtins__"], __cached__=None)
        if mode == "file":
            import importlib.machinery
            main.__file__ = filename
            main.__loader__ = importlib.machinery.SourceFileLoader("__main__", filename)
        else:
            main.__loader__ = old_main.__dict__.get("__loader__")
        sys.modules["__main__"] = main

    try:
        lib = ctypes.CDLL(payload)
    except OSError as e:
        _memray_fail("cannot load the payload: %s" % e)
    lib.memray_payload_start.argtypes = [ctypes.c_char_p]
    lib.memray_payload_start.restype = ctypes.c_int
    lib.memray_payload_stop.restype = ctypes.c_int
    lib.memray_payload_last_error.restype = ctypes.c_char_p

    if lib.memray_payload_start(settings.encode()) != 0:
        reason = lib.memray_payload_last_error() or b"unknown error"
        _memray_fail("cannot start tracking: %s" % reason.decode(errors="replace"))
    _memray_name_threads(lib)
    status = 0
    try:
        if mode == "module":
            try:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            except ImportError as e:
                # The module itself could not be found (memray treats a nameless error the same).
                if e.name is None or e.name == target or target.startswith(e.name + "."):
                    sys.stderr.write("memray: error: %s\n" % e)
                    status = 1
                else:
                    raise
        else:
            exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:
        # Report it the way the interpreter would, without our own frames.
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == "<memray>":
            tb = tb.tb_next
        e.__traceback__ = tb  # the default hook prints the exception's own traceback
        sys.excepthook(type(e), e, tb)
        status = 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        try:
            _memray_join_threads()
        finally:
            lib.memray_payload_stop()
    if status:
        raise SystemExit(status)


_memray_run()
)PY";

// The `python3 -c` argument: fetches the bootstrap from the environment (keeps `ps` readable) and
// compiles it under its own file name.
constexpr const char* k_bootstrap_stub =
    "import os;exec(compile(os.environ.pop('MEMRAY_BOOTSTRAP'),'<memray>','exec'))";

enum class Mode { Script, Module, Code, Native };

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

struct Target {
    Mode mode = Mode::Script;
    std::string target;              // script path, module name, code, or program as given
    std::vector<std::string> args;   // passed on verbatim
};

std::string errno_text(int err) { return std::strerror(err); }

// execvp's lookup: a name with a slash is used as is, else the first executable match on PATH.
std::optional<std::string> find_program(const std::string& name) {
    if (name.empty()) return std::nullopt;
    if (name.find('/') != std::string::npos) {
        if (::access(name.c_str(), X_OK) == 0) return name;
        return std::nullopt;
    }
    const char* path_env = std::getenv("PATH");
    std::string path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
    size_t begin = 0;
    while (begin <= path.size()) {
        size_t end = path.find(':', begin);
        if (end == std::string::npos) end = path.size();
        std::string dir = path.substr(begin, end - begin);
        if (dir.empty()) dir = ".";
        std::string candidate = dir + "/" + name;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            ::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
        begin = end + 1;
    }
    return std::nullopt;
}

enum class ElfKind { NotElf, Dynamic, Static };

// A program without PT_INTERP is never seen by the dynamic loader, so LD_PRELOAD cannot load the
// payload into it. Only 64-bit little-endian ELF is inspected; anything else is left to exec.
ElfKind elf_kind(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    Elf64_Ehdr eh{};
    if (!in.read(reinterpret_cast<char*>(&eh), sizeof eh)) return ElfKind::NotElf;
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return ElfKind::NotElf;
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr)) {
        return ElfKind::Dynamic;  // let exec and the loader decide
    }
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph{};
        in.seekg(static_cast<std::streamoff>(eh.e_phoff + i * sizeof ph));
        if (!in.read(reinterpret_cast<char*>(&ph), sizeof ph)) return ElfKind::Dynamic;
        if (ph.p_type == PT_INTERP) return ElfKind::Dynamic;
    }
    return ElfKind::Static;
}

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

// Identity of the capture file, to tell afterwards whether this run wrote it. Only a non-empty
// regular file counts: for a device or a pipe (-o /dev/full) there is no telling.
struct FileStamp {
    bool exists = false;
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    struct timespec mtime {};

    static FileStamp of(const std::string& path) {
        FileStamp s;
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return s;
        s.exists = true;
        s.dev = st.st_dev;
        s.ino = st.st_ino;
        s.size = st.st_size;
        s.mtime = st.st_mtim;
        return s;
    }
    bool same_as(const FileStamp& o) const {
        return exists == o.exists && dev == o.dev && ino == o.ino && size == o.size &&
               mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec;
    }
};

// Parses what CLI11 left over: the target and its arguments, verbatim and in order.
Target parse_target(const RunOptions& opt, std::vector<std::string> rest) {
    Target t;
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

// Where the capture goes, as shown to the user (memray's default: next to the script).
std::string display_output(const RunOptions& opt, const Target& t, pid_t pid) {
    if (!opt.output.empty()) return opt.output;
    switch (t.mode) {
        case Mode::Script: {
            fs::path script(t.target);
            std::string name = fmt::format("memray-{}.{}.bin", script.filename().string(), pid);
            return (script.parent_path() / name).string();
        }
        case Mode::Module: return fmt::format("memray-{}.{}.bin", t.target, pid);
        case Mode::Code: return fmt::format("memray-string.{}.bin", pid);
        case Mode::Native:
            return fmt::format("memray-{}.{}.bin", fs::path(t.target).filename().string(), pid);
    }
    return {};
}

// Refuses before the program runs: an existing capture without -f, or a directory we cannot
// write into (the payload would only find out after the program started).
void check_output(const std::string& shown, const std::string& absolute, bool force) {
    struct stat st {};
    if (::stat(absolute.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) throw UsageError(fmt::format("output {} is a directory", shown));
        if (!force) {
            throw UsageError(fmt::format(
                "output file {} already exists, will not overwrite (use -f to force)", shown));
        }
    }
    std::string dir = fs::path(absolute).parent_path().string();
    if (::access(dir.c_str(), W_OK) != 0) {
        int err = errno;
        throw UsageError(fmt::format("cannot write the output file {}: {}: {}", shown, dir,
                                     errno_text(err)));
    }
}

std::string settings_text(const RunOptions& opt, const std::string& output_abs) {
    std::string s;
    s += "output=" + output_abs + "\n";
    s += fmt::format("native={}\n", opt.native ? 1 : 0);
    s += fmt::format("compress={}\n", opt.no_compress ? 0 : 1);
    s += fmt::format("force={}\n", opt.force ? 1 : 0);
    s += "command=" + own_command_line() + "\n";
    if (const char* level = std::getenv("MEMRAY_LOG_LEVEL"); level != nullptr && *level != '\0') {
        s += fmt::format("log_level={}\n", level);
    } else if (opt.quiet) {
        s += "log_level=3\n";
    }
    return s;
}

// What the child will exec. The settings (which name the output, whose default name holds the
// child's pid) are only known after fork(): the parent sends them through a pipe and the child
// puts them in argv[settings_arg] or, if that is negative, in MEMRAY_SETTINGS.
struct Launch {
    std::string path;
    std::vector<std::string> argv;
    std::vector<std::string> env;
    int settings_arg = -1;
};

std::vector<std::string> environment_with(const std::vector<std::pair<std::string, std::string>>& set,
                                          const std::vector<std::string>& unset) {
    std::vector<std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        std::string entry(*e);
        std::string key = entry.substr(0, entry.find('='));
        bool drop = false;
        for (const auto& [k, v] : set) drop = drop || key == k;
        for (const auto& k : unset) drop = drop || key == k;
        if (!drop) env.push_back(std::move(entry));
    }
    for (const auto& [k, v] : set) env.push_back(k + "=" + v);
    return env;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
    std::vector<char*> out;
    for (auto& s : v) out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

std::atomic<pid_t> g_child{0};
constexpr int k_forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

// A signal the terminal sent (SI_KERNEL) already reached the child, which is in our process
// group; only one sent to us alone (kill, a supervisor) is passed on, so it arrives once.
void forward_signal(int sig, siginfo_t* info, void*) {
    pid_t child = g_child.load();
    if (child > 0 && info != nullptr && info->si_code != SI_KERNEL) ::kill(child, sig);
}

class SignalForwarding {
  public:
    SignalForwarding() {
        struct sigaction sa {};
        sa.sa_sigaction = forward_signal;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < std::size(k_forwarded); ++i) ::sigaction(k_forwarded[i], &sa, &m_old[i]);
    }
    ~SignalForwarding() {
        restore();
        g_child.store(0);
    }
    // In the child before exec: the program gets the dispositions memray was started with (an
    // ignored SIGINT, as in a background job, stays ignored).
    void restore() const {
        for (size_t i = 0; i < std::size(k_forwarded); ++i) ::sigaction(k_forwarded[i], &m_old[i], nullptr);
    }
    SignalForwarding(const SignalForwarding&) = delete;
    SignalForwarding& operator=(const SignalForwarding&) = delete;

  private:
    struct sigaction m_old[std::size(k_forwarded)] {};
};

class Pipe {
  public:
    Pipe() {
        if (::pipe2(m_fd, O_CLOEXEC) != 0) {
            int err = errno;
            throw std::runtime_error("pipe: " + errno_text(err));
        }
    }
    ~Pipe() { close_read(), close_write(); }
    Pipe(const Pipe&) = delete;
    Pipe& operator=(const Pipe&) = delete;
    int read_end() const { return m_fd[0]; }
    int write_end() const { return m_fd[1]; }
    void close_read() { close_fd(m_fd[0]); }
    void close_write() { close_fd(m_fd[1]); }

  private:
    static void close_fd(int& fd) {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
    int m_fd[2] = {-1, -1};
};

// The CLI is single-threaded, so allocating between fork() and exec is safe here.
[[noreturn]] void child_main(Launch& launch, const SignalForwarding& signals, Pipe& go,
                             Pipe& exec_error) {
    signals.restore();
    go.close_write();
    exec_error.close_read();
    std::string settings;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(go.read_end(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        settings.append(buf, static_cast<size_t>(n));
    }
    if (settings.empty()) ::_exit(127);  // the parent refused to go on (e.g. the output exists)
    if (launch.settings_arg >= 0) {
        launch.argv[static_cast<size_t>(launch.settings_arg)] = settings;
    } else {
        launch.env.push_back("MEMRAY_SETTINGS=" + settings);
    }
    auto argv = c_strings(launch.argv);
    auto envp = c_strings(launch.env);
    ::execve(launch.path.c_str(), argv.data(), envp.data());
    int err = errno;
    [[maybe_unused]] ssize_t w = ::write(exec_error.write_end(), &err, sizeof err);
    ::_exit(127);
}

int wait_for(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            int err = errno;
            throw std::runtime_error(fmt::format("waitpid({}): {}", pid, errno_text(err)));
        }
    }
    return status;
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

void run_command(const RunOptions& opt, const std::vector<std::string>& rest) {
    reject_planned(opt);
    Target t = parse_target(opt, rest);
    if (!opt.python.empty() && t.mode == Mode::Native) {
        throw UsageError("--python applies to Python scripts, not to a program after '--'",
                         k_usage_exit);
    }

    std::string payload = payload_path();
    if (::access(payload.c_str(), R_OK) != 0) {
        int err = errno;
        throw UsageError(fmt::format("cannot use the payload {}: {} (set MEMRAY_PAYLOAD to its path)",
                                     payload, errno_text(err)));
    }
    payload = fs::absolute(payload).lexically_normal().string();

    Launch launch;
    std::vector<std::pair<std::string, std::string>> env_set;
    std::vector<std::string> env_unset;
    if (t.mode == Mode::Native) {
        auto program = find_program(t.target);
        if (!program) {
            throw UsageError(fmt::format("program not found or not executable: {}", t.target));
        }
        if (elf_kind(*program) == ElfKind::Static) {
            throw UsageError(fmt::format(
                "{} is statically linked: memray can only track dynamically linked programs",
                *program));
        }
        launch.path = *program;
        launch.argv.push_back(t.target);
        launch.argv.insert(launch.argv.end(), t.args.begin(), t.args.end());
        const char* preload = std::getenv("LD_PRELOAD");
        std::string value = payload;
        if (preload != nullptr && *preload != '\0') value += std::string(":") + preload;
        env_set.emplace_back("LD_PRELOAD", value);
    } else {
        std::string python_name = opt.python.empty() ? "python3" : opt.python;
        auto python = find_program(python_name);
        if (!python) {
            throw UsageError(fmt::format("Python interpreter not found or not executable: {}{}",
                                         python_name, opt.python.empty() ? " (use --python PATH)" : ""));
        }
        if (t.mode == Mode::Script) {
            struct stat st {};
            if (::stat(t.target.c_str(), &st) != 0 || ::access(t.target.c_str(), R_OK) != 0) {
                int err = errno;
                throw UsageError(fmt::format("cannot open script {}: {}", t.target, errno_text(err)));
            }
            if (S_ISDIR(st.st_mode)) throw UsageError(fmt::format("{} is a directory", t.target));
            if (elf_kind(t.target) != ElfKind::NotElf) {
                throw UsageError(fmt::format(
                    "{} is a native program, not a Python script: use 'memray run -- {}'", t.target,
                    t.target));
            }
        }
        if (t.mode == Mode::Code && ::access(t.target.c_str(), F_OK) == 0) {
            throw UsageError("remove the option -c to run a file", k_usage_exit);
        }
        launch.path = *python;
        const char* mode = t.mode == Mode::Script ? "file" : t.mode == Mode::Module ? "module" : "code";
        // argv[0] is the resolved path so that sys.executable is exactly this interpreter.
        launch.argv = {*python, "-c", k_bootstrap_stub, payload, "", mode, t.target};
        launch.settings_arg = 4;
        launch.argv.insert(launch.argv.end(), t.args.begin(), t.args.end());
        env_set.emplace_back("MEMRAY_BOOTSTRAP", k_bootstrap);
        // Tracking starts in the bootstrap, not when ctypes loads the payload.
        env_unset.push_back("MEMRAY_SETTINGS");
    }

    launch.env = environment_with(env_set, env_unset);

    std::fflush(stdout);
    std::fflush(stderr);
    SignalForwarding forwarding;
    Pipe go;
    Pipe exec_error;
    pid_t pid = ::fork();
    if (pid < 0) {
        int err = errno;
        throw std::runtime_error("fork: " + errno_text(err));
    }
    if (pid == 0) child_main(launch, forwarding, go, exec_error);
    g_child.store(pid);
    go.close_read();
    exec_error.close_write();

    std::string shown = display_output(opt, t, pid);
    std::string output_abs = fs::absolute(shown).lexically_normal().string();
    try {
        check_output(shown, output_abs, opt.force);
    } catch (...) {
        go.close_write();  // the child exits without running anything
        wait_for(pid);
        throw;
    }
    std::string settings = settings_text(opt, output_abs);
    FileStamp before = FileStamp::of(output_abs);
    if (!opt.quiet) {
        std::printf("Writing profile results into %s\n", shown.c_str());
        std::fflush(stdout);
    }

    // A broken pipe here means the child died before reading; waitpid below tells how.
    struct sigaction ignore {}, old_pipe {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old_pipe);
    for (size_t done = 0; done < settings.size();) {
        ssize_t n = ::write(go.write_end(), settings.data() + done, settings.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<size_t>(n);
    }
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
    go.close_write();

    int exec_errno = 0;
    ssize_t n;
    do {
        n = ::read(exec_error.read_end(), &exec_errno, sizeof exec_errno);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof exec_errno)) {
        wait_for(pid);
        throw UsageError(fmt::format("cannot execute {}: {}", launch.path, errno_text(exec_errno)));
    }

    int status = wait_for(pid);
    // memray prints this even when the script failed: the capture is still worth reading.
    FileStamp after = FileStamp::of(output_abs);
    if (after.exists && !after.same_as(before) && !opt.quiet) print_success(shown);
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        if (!opt.quiet) {
            std::fprintf(stderr, "memray: %s was killed by signal %d (%s)\n", t.target.c_str(), sig,
                         strsignal(sig));
        }
        std::fflush(stdout);
        std::exit(128 + sig);
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (code != 0) {
        // The program's own failure, not memray's: no "memray: error:" line, just its status.
        std::fflush(stdout);
        std::exit(code);
    }
}

}  // namespace

void register_run(CLI::App& app) {
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
    sub->callback([opt, sub] { run_command(*opt, sub->remaining()); });
}

std::string payload_path() {
    if (const char* env = std::getenv("MEMRAY_PAYLOAD"); env != nullptr && *env != '\0') return env;
    if (::access(MEMRAY_PAYLOAD_BUILD, F_OK) == 0) return MEMRAY_PAYLOAD_BUILD;
    return MEMRAY_PAYLOAD_INSTALLED;
}

}  // namespace memray::cli
