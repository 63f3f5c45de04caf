#include "launch/spawn.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "launch/error.hpp"

extern char** environ;

namespace memray::launch {

namespace {

std::atomic<pid_t> g_child{0};

// A signal the terminal sent (SI_KERNEL) already reached the child, which is in our process
// group; only one sent to us alone is passed on, so it arrives once.
void forward_signal(int sig, siginfo_t* info, void*) {
    pid_t child = g_child.load();
    if (child > 0 && info != nullptr && info->si_code != SI_KERNEL) ::kill(child, sig);
}

void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

// The CLI is single-threaded, so allocating between fork() and exec is safe here.
[[noreturn]] void child_main(ExecSpec& spec, int go_fd, int exec_error_fd) {
    std::string settings;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(go_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        settings.append(buf, static_cast<size_t>(n));
    }
    if (settings.empty()) ::_exit(127);  // the parent gave up (e.g. the output exists)
    if (spec.settings_arg >= 0) {
        // The values arrive separated by NULs, which no argument can hold.
        size_t slot = static_cast<size_t>(spec.settings_arg);
        for (size_t begin = 0; slot < spec.argv.size(); ++slot) {
            size_t end = settings.find('\0', begin);
            spec.argv[slot] = settings.substr(begin, end - begin);
            if (end == std::string::npos) break;
            begin = end + 1;
        }
    } else {
        spec.env.push_back("MEMRAY_SETTINGS=" + settings.substr(0, settings.find('\0')));
    }
    if (spec.output_fd >= 0) {
        int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
        ::dup2(spec.output_fd, STDOUT_FILENO);
        ::dup2(spec.output_fd, STDERR_FILENO);
        ::setpgid(0, 0);
    }
    auto argv = c_strings(spec.argv);
    auto envp = c_strings(spec.env);
    ::execve(spec.path.c_str(), argv.data(), envp.data());
    int err = errno;
    [[maybe_unused]] ssize_t w = ::write(exec_error_fd, &err, sizeof err);
    ::_exit(127);
}

}  // namespace

std::vector<char*> c_strings(std::vector<std::string>& v) {
    std::vector<char*> out;
    for (auto& s : v) out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

std::vector<std::string> environment_with(
    const std::vector<std::pair<std::string, std::string>>& set, const std::vector<std::string>& unset) {
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

SignalForwarding::SignalForwarding() {
    struct sigaction sa {};
    sa.sa_sigaction = forward_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < std::size(k_signals); ++i) ::sigaction(k_signals[i], &sa, &m_old[i]);
}

SignalForwarding::~SignalForwarding() {
    restore();
    g_child.store(0);
}

void SignalForwarding::forward_to(pid_t child) { g_child.store(child); }

void SignalForwarding::restore() const {
    for (size_t i = 0; i < std::size(k_signals); ++i) ::sigaction(k_signals[i], &m_old[i], nullptr);
}

PendingChild::PendingChild(ExecSpec spec) {
    if (::pipe2(m_go, O_CLOEXEC) != 0 || ::pipe2(m_exec_error, O_CLOEXEC) != 0) {
        int err = errno;
        close_fd(m_go[0]), close_fd(m_go[1]);
        throw LaunchError(std::string("pipe: ") + std::strerror(err));
    }
    m_pid = ::fork();
    if (m_pid < 0) {
        int err = errno;
        close_fd(m_go[0]), close_fd(m_go[1]), close_fd(m_exec_error[0]), close_fd(m_exec_error[1]);
        throw LaunchError(std::string("fork: ") + std::strerror(err));
    }
    if (m_pid == 0) {
        m_signals.restore();
        close_fd(m_go[1]);
        close_fd(m_exec_error[0]);
        child_main(spec, m_go[0], m_exec_error[1]);
    }
    m_signals.forward_to(m_pid);
    close_fd(m_go[0]);
    close_fd(m_exec_error[1]);
}

PendingChild::~PendingChild() {
    close_fd(m_go[1]);  // a child still waiting exits without running anything
    if (!m_reaped) {
        int status = 0;
        while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    close_fd(m_exec_error[0]);
}

int PendingChild::start(const std::vector<std::string>& values) {
    std::string settings;
    for (size_t i = 0; i < values.size(); ++i) {
        if (i > 0) settings.push_back('\0');
        settings += values[i];
    }
    // A broken pipe here means the child died before reading; wait() tells how.
    struct sigaction ignore {}, old_pipe {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old_pipe);
    for (size_t done = 0; done < settings.size();) {
        ssize_t n = ::write(m_go[1], settings.data() + done, settings.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<size_t>(n);
    }
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
    close_fd(m_go[1]);

    // The pipe closes on a successful exec (O_CLOEXEC): no errno arrives.
    int exec_errno = 0;
    ssize_t n;
    do {
        n = ::read(m_exec_error[0], &exec_errno, sizeof exec_errno);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof exec_errno)) return 0;
    wait();
    return exec_errno;
}

int PendingChild::wait() {
    int status = 0;
    while (::waitpid(m_pid, &status, 0) < 0) {
        if (errno != EINTR) {
            int err = errno;
            throw LaunchError("waitpid(" + std::to_string(m_pid) + "): " + std::strerror(err));
        }
    }
    m_reaped = true;
    return status;
}

}  // namespace memray::launch
