// The terminal layer in a real pseudo-terminal: each case forks a child on a new pty (forkpty),
// the child opens a session and reports through its exit status, the parent reads the screen
// output and checks the pty's termios after the child is gone.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <string>

#include "tui/terminal.hpp"

using namespace memray::tui;

namespace {

struct Child {
    pid_t pid = -1;
    int master = -1;
    int slave = -1;  // the parent's own handle on the pty: its termios outlive the child
    std::string output;
};

// Runs body in a child whose stdin/stdout/stderr are a new pty; body's return is the exit code.
Child spawn_on_pty(const std::function<int()>& body) {
    Child c;
    struct winsize ws {};
    ws.ws_row = 24;
    ws.ws_col = 80;
    c.pid = forkpty(&c.master, nullptr, nullptr, &ws);
    REQUIRE(c.pid >= 0);
    if (c.pid == 0) {
        setenv("TERM", "xterm", 1);
        int rc = 99;
        try {
            rc = body();
        } catch (...) {
            rc = 98;
        }
        _exit(rc);
    }
    c.slave = open(ptsname(c.master), O_RDWR | O_NOCTTY);
    REQUIRE(c.slave >= 0);
    return c;
}

// Reads the child's output until `until` appears (empty: until the child has exited) or 10 s
// pass. True when the condition was met.
bool read_until(Child& c, const std::string& until) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
        if (!until.empty() && c.output.find(until) != std::string::npos) return true;
        pollfd p{c.master, POLLIN, 0};
        if (poll(&p, 1, 100) > 0) {
            char buf[4096];
            ssize_t n = read(c.master, buf, sizeof buf);
            if (n > 0) c.output.append(buf, size_t(n));
            continue;
        }
        // Nothing to read. The parent's slave keeps the pty open after the child is gone, so
        // the end shows as the child being waitable (WNOWAIT: wait_status reaps it).
        siginfo_t info{};
        if (until.empty() && waitid(P_PID, c.pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == c.pid)
            return true;
    }
    return false;
}

int wait_status(Child& c) {
    read_until(c, "");
    int status = 0;
    REQUIRE(waitpid(c.pid, &status, 0) == c.pid);
    return status;
}

bool cooked(int fd) {
    termios t{};
    if (tcgetattr(fd, &t) != 0) return false;
    return (t.c_lflag & ICANON) && (t.c_lflag & ECHO);
}

void close_child(Child& c) {
    close(c.master);
    close(c.slave);
}

}  // namespace

TEST_CASE("text helpers count and clip UTF-8 by code point") {
    CHECK(text_width("abc") == 3);
    CHECK(text_width("a\u2588b") == 3);
    CHECK(clip_text("abcdef", 3) == "abc");
    CHECK(clip_text("\u2581\u2582\u2583", 2) == "\u2581\u2582");
    CHECK(clip_text("ab", 5) == "ab");
    CHECK(clip_text("ab", 0).empty());
    std::string s;
    append_utf8(s, U'a');
    append_utf8(s, U'\u00e9');
    append_utf8(s, U'\u2588');
    append_utf8(s, U'\U0001F600');
    CHECK(s == "a\u00e9\u2588\U0001F600");
}

TEST_CASE("no terminal: TerminalError") {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        try {
            Terminal t;
        } catch (const TerminalError&) {
            _exit(0);
        } catch (...) {
            _exit(2);
        }
        _exit(1);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("an unknown terminal type: TerminalError, not an exit from inside ncurses") {
    Child c = spawn_on_pty([] {
        setenv("TERM", "no-such-terminal-type", 1);
        try {
            Terminal t;
        } catch (const TerminalError& e) {
            return std::string(e.what()).find("no-such-terminal-type") != std::string::npos ? 0 : 2;
        }
        return 1;
    });
    int status = wait_status(c);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(cooked(c.slave));
    close_child(c);
}

TEST_CASE("a session leaves cooked mode while open and restores it when it ends") {
    Child c = spawn_on_pty([] {
        if (!cooked(STDIN_FILENO)) return 10;
        {
            Terminal t;
            if (cooked(STDIN_FILENO)) return 11;
            if (t.width() != 80 || t.height() != 24) return 12;
            t.put(0, 0, "hello from the session");
            t.present();
            // A second session is refused: the signal handlers are per process.
            try {
                Terminal second;
                return 13;
            } catch (const TerminalError&) {
            }
        }
        return cooked(STDIN_FILENO) ? 0 : 14;
    });
    int status = wait_status(c);
    CHECK(c.output.find("hello from the session") != std::string::npos);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(cooked(c.slave));
    close_child(c);
}

TEST_CASE("an exception out of the view restores the terminal") {
    Child c = spawn_on_pty([] {
        try {
            Terminal t;
            throw std::runtime_error("view failed");
        } catch (const std::runtime_error&) {
        }
        return cooked(STDIN_FILENO) ? 0 : 1;
    });
    int status = wait_status(c);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    close_child(c);
}

TEST_CASE("keys: characters, escape sequences, timeout") {
    Child c = spawn_on_pty([] {
        Terminal t;
        if (t.read_key(50).kind != KeyKind::None) return 10;  // before READY: no key sent yet
        t.put(0, 0, "READY");
        t.present();
        if (!t.read_key(10000).is('q')) return 11;
        if (t.read_key(10000).kind != KeyKind::Up) return 12;
        if (t.read_key(10000).kind != KeyKind::PageDown) return 13;
        if (t.read_key(10000).kind != KeyKind::Enter) return 14;
        Key k = t.read_key(10000);
        if (k.kind != KeyKind::Char || k.ch != U'\u00e9') return 15;
        if (t.read_key(10000).kind != KeyKind::Escape) return 16;
        return 0;
    });
    REQUIRE(read_until(c, "READY"));
    // xterm's keypad-mode sequences: Up = ESC O A, PgDn = ESC [ 6 ~. Esc comes last and alone,
    // so the 25 ms escape delay separates it from a sequence.
    std::string keys = "q\x1bOA\x1b[6~\r\xc3\xa9\x1b";
    REQUIRE(write(c.master, keys.data(), keys.size()) == ssize_t(keys.size()));
    int status = wait_status(c);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    close_child(c);
}

TEST_CASE("SIGTERM, SIGINT and SIGHUP become Key::Interrupt") {
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
        CAPTURE(sig);
        Child c = spawn_on_pty([sig] {
            Terminal t;
            kill(getpid(), sig);
            return t.read_key(10000).kind == KeyKind::Interrupt ? 0 : 1;
        });
        int status = wait_status(c);
        REQUIRE(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        CHECK(cooked(c.slave));
        close_child(c);
    }
}

TEST_CASE("a crash restores the terminal and still dies of its signal") {
    for (int sig : {SIGSEGV, SIGABRT, SIGQUIT}) {
        CAPTURE(sig);
        Child c = spawn_on_pty([sig]() -> int {
            Terminal t;
            t.put(0, 0, "about to crash");
            t.present();
            if (sig == SIGSEGV) {
                volatile int* p = nullptr;
                *p = 1;  // a real fault, not only a raised signal
            }
            if (sig == SIGQUIT) raise(SIGQUIT);
            std::abort();
        });
        int status = wait_status(c);
        REQUIRE(WIFSIGNALED(status));
        CHECK(WTERMSIG(status) == sig);
        CHECK(cooked(c.slave));
        // xterm's exit_ca_mode: the alternate screen was left.
        size_t drawn = c.output.find("about to crash");
        size_t restored = c.output.rfind("\x1b[?1049l");
        REQUIRE(drawn != std::string::npos);
        REQUIRE(restored != std::string::npos);
        CHECK(restored > drawn);
        close_child(c);
    }
}
