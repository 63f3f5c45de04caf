// Tests of src/attach against real target processes (attach_target.c and friends).
// Usage: test-attach SCENARIO TARGET [extra...]; exit 0 pass, 1 fail, 77 skip (with a reason).
#include "attach/tracer.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace memray::attach;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

int g_failures = 0;

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
            ++g_failures;                                                                   \
        }                                                                                   \
    } while (0)

[[noreturn]] void skip(const std::string& why) {
    std::printf("SKIP: %s\n", why.c_str());
    std::exit(77);
}

// Whether this process may ptrace at all (Yama ptrace_scope 3, a seccomp filter or a container
// without CAP_SYS_PTRACE can forbid even tracing our own child): skip rather than fail.
void require_ptrace() {
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    long rc = ptrace(PTRACE_SEIZE, child, nullptr, nullptr);
    int err = errno;
    if (rc == 0) ptrace(PTRACE_DETACH, child, nullptr, nullptr);
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    if (rc != 0) skip(std::string("this process may not use ptrace here: ") + std::strerror(err));
}

[[noreturn]] void fatal(const std::string& why) {
    std::fprintf(stderr, "FATAL: %s\n", why.c_str());
    std::exit(1);
}

int64_t us_since(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count();
}

struct Target {
    pid_t pid = 0;
    int in = -1, out = -1;
    std::string pending;
    std::map<std::string, uint64_t> info;

    Target(const std::string& path, std::vector<std::string> args, bool single_arena = false) {
        int to_child[2], from_child[2];
        if (pipe2(to_child, O_CLOEXEC) || pipe2(from_child, O_CLOEXEC)) fatal("pipe");
        pid = fork();
        if (pid == 0) {
            dup2(to_child[0], 0);
            dup2(from_child[1], 1);
            if (single_arena) setenv("MALLOC_ARENA_MAX", "1", 1);
            std::vector<char*> argv{const_cast<char*>(path.c_str())};
            for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
            argv.push_back(nullptr);
            execv(path.c_str(), argv.data());
            _exit(127);
        }
        close(to_child[0]);
        close(from_child[1]);
        in = to_child[1];
        out = from_child[0];
        std::string line = read_line(5000ms);
        if (line.rfind("info ", 0) != 0) fatal("target did not start: '" + line + "'");
        std::istringstream words(line.substr(5));
        std::string w;
        while (words >> w) {
            auto eq = w.find('=');
            info[w.substr(0, eq)] = std::strtoull(w.c_str() + eq + 1, nullptr, 0);
        }
    }
    ~Target() {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
        close(in);
        close(out);
    }
    uint64_t operator[](const std::string& k) const { return info.at(k); }

    std::string read_line(std::chrono::milliseconds timeout) {
        auto deadline = Clock::now() + timeout;
        for (;;) {
            auto nl = pending.find('\n');
            if (nl != std::string::npos) {
                std::string line = pending.substr(0, nl);
                pending.erase(0, nl + 1);
                return line;
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return "<timeout>";
            pollfd p{out, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
            char buf[4096];
            ssize_t n = read(out, buf, sizeof buf);
            if (n <= 0) return "<eof>";
            pending.append(buf, static_cast<size_t>(n));
        }
    }
    void send(const std::string& line) {
        std::string l = line + "\n";
        if (write(in, l.data(), l.size()) != static_cast<ssize_t>(l.size())) fatal("write to target");
    }
    std::string ask(const std::string& line) {
        send(line);
        return read_line(5000ms);
    }
    long stat(const std::string& key) {
        std::string s = ask("stats");
        auto at = s.find(" " + key + "=");
        if (at == std::string::npos) fatal("no " + key + " in '" + s + "'");
        return std::strtol(s.c_str() + at + key.size() + 2, nullptr, 10);
    }
    bool alive() const { return kill(pid, 0) == 0 && waitpid(pid, nullptr, WNOHANG) == 0; }
};

Tracer::Options options() {
    Tracer::Options o;
    o.timeout = 5000ms;
    o.verbose = std::getenv("ATTACH_VERBOSE") != nullptr;
    return o;
}

void expect_echo(Target& t, const std::string& word) {
    std::string reply = t.ask("echo " + word);
    if (reply != "echo " + word + " xmm=ok") std::fprintf(stderr, "echo reply: '%s'\n", reply.c_str());
    CHECK(reply == "echo " + word + " xmm=ok");
}

// Waits (up to 5 s) until thread `tid` of `pid` sleeps in system call `number`: the target
// announces a thread before the thread reaches its call, so a test that needs it blocked must
// see it there first (/proc/PID/task/TID/syscall starts with the number while it is inside).
bool wait_in_syscall(pid_t pid, pid_t tid, long number) {
    std::string path = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/syscall";
    auto deadline = Clock::now() + 5s;
    while (Clock::now() < deadline) {
        FILE* f = std::fopen(path.c_str(), "r");
        long nr = -2;
        if (f) {
            if (std::fscanf(f, "%ld", &nr) != 1) nr = -2;
            std::fclose(f);
        }
        if (nr == number) return true;
        usleep(1000);
    }
    return false;
}

// 1. call a function with six arguments; the target carries on; syscall() works.
int scenario_call(const std::string& exe) {
    Target t(exe, {});
    auto start = Clock::now();
    {
        Tracer tracer(t.pid, options());
        auto constructed = us_since(start);
        pid_t tid = tracer.stop_at_safe_point({t["malloc"], t["free"]}, 20ms);
        auto stopped = us_since(start);
        auto c0 = Clock::now();
        uint64_t r = tracer.call(tid, t["add6"], {1, 2, 3, 4, 5, 6}, 1000ms);
        auto call_us = us_since(c0);
        CHECK(r == 1 + 2 * 2 + 3 * 3 + 4 * 4 + 5 * 5 + 6 * 6);
        CHECK(tracer.call(tid, t["set_flag"], {uint64_t(-7)}, 1000ms) == uint64_t(-14));
        CHECK(static_cast<pid_t>(tracer.syscall(tid, SYS_getpid, {}, 1000ms)) == t.pid);
        CHECK(static_cast<pid_t>(tracer.syscall(tid, SYS_gettid, {}, 1000ms)) == tid);
        int64_t page = tracer.syscall(tid, SYS_mmap, {0, 4096, PROT_READ | PROT_WRITE,
                                                     MAP_PRIVATE | MAP_ANONYMOUS, uint64_t(-1), 0}, 1000ms);
        CHECK(page > 0 && (page & 4095) == 0);
        const char text[] = "hello from the tracer";
        tracer.write_memory(page, text, sizeof text);
        char back[sizeof text] = {};
        tracer.read_memory(page, back, sizeof back);
        CHECK(std::memcmp(back, text, sizeof text) == 0);
        CHECK(tracer.syscall(tid, SYS_munmap, {uint64_t(page), 4096}, 1000ms) == 0);
        CHECK(tracer.syscall(tid, SYS_close, {uint64_t(100000)}, 1000ms) == -EBADF);
        tracer.resume(tid);
        std::printf("construct %lld us, stop_at_safe_point %lld us (%s, stack check %lld us), call %lld us\n",
                    (long long)constructed, (long long)(stopped - constructed),
                    tracer.stats().from_breakpoint ? "breakpoint" : "fallback",
                    (long long)tracer.stats().unwind_us, (long long)call_us);
    }
    expect_echo(t, "after-detach");
    CHECK(t.stat("flag") == -7);
    CHECK(t.stat("calls") == 1);
    CHECK(t.alive());
    return 0;
}

// 2. a thread blocked in read() on a pipe, with live xmm values, borrowed for a call that
//    clobbers every vector register; data written while attached arrives after detach.
int scenario_blocked(const std::string& exe) {
    Target t(exe, {});
    pid_t reader = static_cast<pid_t>(t["reader"]);
    for (int round = 0; round < 3; ++round) {
        CHECK(wait_in_syscall(t.pid, reader, SYS_read));
        Tracer tracer(t.pid, options());
        tracer.interrupt_all();
        Registers before = tracer.registers(reader);
        CHECK(static_cast<int64_t>(before.orig_rax) == SYS_read);
        CHECK(tracer.call(reader, t["clobber"], {}, 1000ms) == 42);
        CHECK(tracer.call(reader, t["add6"], {1, 1, 1, 1, 1, 1}, 1000ms) == 21);
        Registers after = tracer.registers(reader);
        CHECK(after.rip == before.rip && after.rsp == before.rsp && after.orig_rax == before.orig_rax);
        if (round == 1) t.send("echo while-attached");  // arrives at the pipe while stopped
        tracer.resume_all();
        if (round == 1) {
            // Read before the next round: until the reader has answered, it may still be on its
            // way out of the read() that /proc shows it in, and round 2 would stop it elsewhere.
            std::string reply = t.read_line(5000ms);
            CHECK(reply == "echo while-attached xmm=ok");
        }
        if (round == 2) {
            // Destructor path: the borrowed thread is still stopped with a call behind it.
            tracer.interrupt_all();
            CHECK(tracer.call(reader, t["clobber"], {}, 1000ms) == 42);
        }
    }
    expect_echo(t, "after-detach");
    CHECK(t.stat("calls") == 3);
    CHECK(t.alive());
    return 0;
}

// 3. cycles of stop_at_safe_point + allocate/free on a single-arena target whose threads hammer
//    malloc (busy) or that sleeps in nanosleep/poll (idle: the fallback path).
int scenario_cycles(const std::string& exe, bool busy, int cycles) {
    Target t(exe, busy ? std::vector<std::string>{"--hammer", "4"} : std::vector<std::string>{"--idle", "3"}, true);
    usleep(50000);
    CHECK(t.ask("reset") == "reset");
    long hammer_before = t.stat("hammer");
    int64_t max_construct = 0, max_stop = 0, max_call = 0, max_total = 0, sum_stop = 0;
    int64_t max_unwind = 0, max_detach = 0;
    int from_breakpoint = 0;
    auto cycles_start = Clock::now();
    for (int i = 0; i < cycles; ++i) {
        auto start = Clock::now();
        auto owned = std::make_unique<Tracer>(t.pid, options());
        Tracer& tracer = *owned;
        int64_t construct = us_since(start);
        auto s0 = Clock::now();
        pid_t tid = tracer.stop_at_safe_point({t["malloc"], t["free"]}, 20ms);
        int64_t stop = us_since(s0);
        from_breakpoint += tracer.stats().from_breakpoint;
        max_unwind = std::max(max_unwind, tracer.stats().unwind_us);
        Registers regs = tracer.registers(tid);
        if (tracer.stats().from_breakpoint) CHECK(regs.rip == t["malloc"] || regs.rip == t["free"]);
        else CHECK(static_cast<int64_t>(regs.orig_rax) >= 0);
        auto c0 = Clock::now();
        uint64_t p = tracer.call(tid, t["alloc"], {100}, 2000ms);
        int64_t call = us_since(c0);
        CHECK(p != 0);
        unsigned char bytes[100];
        tracer.read_memory(p, bytes, sizeof bytes);
        CHECK(bytes[0] == 0xAB && bytes[99] == 0xAB);
        uint64_t q = tracer.call(tid, t["malloc"], {4000}, 2000ms);
        CHECK(q != 0);
        tracer.call(tid, t["free"], {q}, 2000ms);
        tracer.resume(tid);
        auto d0 = Clock::now();
        owned.reset();
        max_detach = std::max(max_detach, us_since(d0));
        max_construct = std::max(max_construct, construct);
        max_stop = std::max(max_stop, stop);
        sum_stop += stop;
        max_call = std::max(max_call, call);
        max_total = std::max(max_total, us_since(start));
    }
    usleep(20000);
    long gap = t.stat("maxgap");
    // The same time without any tracer: the heartbeat's gaps from CPU contention alone.
    auto elapsed = us_since(cycles_start);
    CHECK(t.ask("reset") == "reset");
    usleep(static_cast<useconds_t>(elapsed));
    long baseline_gap = t.stat("maxgap");
    std::string check = t.ask("check");
    CHECK(check == "check kept=" + std::to_string(cycles) + " bad=0");
    if (busy) CHECK(t.stat("hammer") > hammer_before);
    if (busy) CHECK(from_breakpoint > cycles / 2);
    else CHECK(from_breakpoint == 0);
    expect_echo(t, "after-cycles");
    CHECK(t.alive());
    std::printf("%s: %d cycles, %d via breakpoint; max construct %lld us, stop_at_safe_point avg %lld "
                "max %lld us (max stack check %lld us), max call %lld us, max detach %lld us, max cycle %lld us; "
                "target's longest heartbeat gap %ld us (%ld us in the same time without tracer)\n",
                busy ? "busy" : "idle", cycles, from_breakpoint, (long long)max_construct,
                (long long)(sum_stop / cycles), (long long)max_stop, (long long)max_unwind,
                (long long)max_call, (long long)max_detach, (long long)max_total, gap, baseline_gap);
    return 0;
}

// 4. signals sent during attach cycles are all delivered (RT signals are queued, so exact).
int scenario_signals_real(const std::string& exe) {
    Target t(exe, {"--hammer", "2"}, true);
    const int rt_count = 300, usr1_every = 7;
    int usr1_count = 0;
    for (int i = 0; i < rt_count; ++i) usr1_count += i % usr1_every == 0;
    pid_t sender = fork();
    if (sender == 0) {
        for (int i = 0; i < rt_count; ++i) {
            kill(t.pid, SIGRTMIN + 1);
            if (i % usr1_every == 0) {
                kill(t.pid, SIGUSR1);
            }
            usleep(1000);
        }
        _exit(0);
    }
    int cycles = 0;
    while (waitpid(sender, nullptr, WNOHANG) == 0) {
        Tracer tracer(t.pid, options());
        pid_t tid = tracer.stop_at_safe_point({t["malloc"], t["free"]}, 10ms);
        CHECK(tracer.call(tid, t["add6"], {1, 0, 0, 0, 0, 0}, 1000ms) == 1);
        if (cycles % 2) tracer.resume(tid);  // else the destructor resumes it
        ++cycles;
    }
    usleep(50000);
    long rt = t.stat("rt"), usr1 = t.stat("usr1");
    std::printf("signals: %d attach cycles while sending; rt %ld/%d, usr1 %ld/%d\n", cycles, rt,
                rt_count, usr1, usr1_count);
    CHECK(cycles > 3);
    CHECK(rt == rt_count);
    // SIGUSR1 is not queued: two pending at once merge even without a tracer, so only spaced
    // ones are counted exactly (7 ms apart, above our stall).
    CHECK(usr1 == usr1_count);
    CHECK(t.alive());
    return 0;
}

// 5. a call that faults and a call that blocks: typed errors, target restored and running.
int scenario_crash(const std::string& exe) {
    Target t(exe, {});
    {
        Tracer tracer(t.pid, options());
        pid_t tid = tracer.stop_at_safe_point({t["malloc"], t["free"]}, 10ms);
        Registers before = tracer.registers(tid);
        bool crashed = false;
        try {
            tracer.call(tid, t["crash"], {}, 1000ms);
        } catch (const CallCrashed& e) {
            crashed = true;
            std::printf("CallCrashed: %s\n", e.what());
            CHECK(std::strstr(e.what(), "Segmentation") != nullptr);
        }
        CHECK(crashed);
        bool timed_out = false;
        auto c0 = Clock::now();
        try {
            tracer.call(tid, t["block"], {}, 200ms);
        } catch (const CallTimeout& e) {
            timed_out = true;
            std::printf("CallTimeout after %lld us: %s\n", (long long)us_since(c0), e.what());
        }
        CHECK(timed_out);
        bool wild = false;
        try {
            tracer.call(tid, 0x10, {}, 1000ms);  // jumps to an unmapped address
        } catch (const CallCrashed&) {
            wild = true;
        }
        CHECK(wild);
        // The thread is still usable and its saved state intact.
        CHECK(tracer.call(tid, t["add6"], {0, 0, 0, 0, 0, 1}, 1000ms) == 6);
        Registers after = tracer.registers(tid);
        CHECK(after.rip == before.rip && after.rsp == before.rsp);
    }
    usleep(20000);
    expect_echo(t, "after-crash");
    CHECK(t.stat("calls") == 1);
    CHECK(t.alive());
    return 0;
}

// Waits (bounded) for our child `pid` to be reaped and returns its status. A thread left traced
// by a Tracer keeps the leader a zombie forever: report that instead of hanging.
bool reap_within(pid_t pid, std::chrono::milliseconds limit, int& status) {
    auto deadline = Clock::now() + limit;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return true;
        if (r < 0) {
            std::fprintf(stderr, "waitpid(%d): %s (was its exit status taken by the tracer?)\n", pid,
                         std::strerror(errno));
            return false;
        }
        if (Clock::now() >= deadline) break;
        usleep(2000);
    }
    std::fprintf(stderr, "process %d not reapable after %lld ms; its threads:\n", pid,
                 (long long)limit.count());
    std::string cmd = "grep -H -E 'State|TracerPid' /proc/" + std::to_string(pid) + "/task/*/status >&2";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "(no /proc entries)\n");
    return false;
}

// A process that exits while a Tracer is attached (exit_group from a remote call or another
// thread, SIGKILL while a thread is held or inside a call, exit before/while attaching): the
// Tracer reports NoSuchProcess "process N exited during attach", never hangs, and leaves
// nothing traced, so the parent (this test) reaps the process with its real exit status.
int scenario_exit(const std::string& exe) {
    enum Kind { QuitAfter, QuitBefore, ExitInCall, KillInCall, KillWhileHeld, QuitWhileHeld, Kinds };
    const char* names[] = {"quit-after", "quit-before", "exit-in-call", "kill-in-call",
                           "kill-while-held", "quit-while-held"};
    int ok[Kinds] = {}, gone[Kinds] = {};
    for (int i = 0; i < 4 * Kinds; ++i) {
        Kind kind = static_cast<Kind>(i % Kinds);
        Target t(exe, {"--idle", "2"});
        pid_t pid = t.pid;
        bool quit_sent = false;
        bool expect_gone = kind == ExitInCall || kind == KillInCall;
        int want_exit = kind == ExitInCall ? 7 : 0;  // -1: killed by SIGKILL
        if (kind == KillInCall || kind == KillWhileHeld) want_exit = -1;
        pid_t killer = 0;
        if (kind == QuitBefore) {
            t.send("quit");  // the process exits while we attach
            quit_sent = true;
            usleep(static_cast<useconds_t>(i / Kinds * 150));  // vary the point it dies at
        } else {
            usleep(20000);
        }
        auto t0 = Clock::now();
        try {
            Tracer tracer(pid, options());
            pid_t tid = tracer.stop_at_safe_point({t["malloc"], t["free"]}, 5ms);
            switch (kind) {
            case QuitAfter:
            case QuitBefore:
                CHECK(tracer.call(tid, t["add6"], {1, 1, 1, 1, 1, 1}, 500ms) == 21);
                if (kind == QuitAfter) {
                    tracer.resume(tid);
                    t.send("quit");
                    quit_sent = true;
                }
                break;
            case ExitInCall:
                tracer.call(tid, t["exit"], {7}, 2000ms);
                break;
            case KillInCall:
                killer = fork();
                if (killer == 0) {
                    usleep(50000);
                    kill(pid, SIGKILL);
                    _exit(0);
                }
                t0 = Clock::now();
                tracer.call(tid, t["block"], {}, 3000ms);
                break;
            case KillWhileHeld:
                kill(pid, SIGKILL);
                usleep(20000);
                break;  // only the destructor sees it
            case QuitWhileHeld:
                t.send("quit");  // unless `tid` is the reader, the process exits now
                quit_sent = true;
                usleep(20000);
                CHECK(tracer.call(tid, t["add6"], {1, 1, 1, 1, 1, 1}, 500ms) == 21);
                break;
            default:
                break;
            }
            CHECK(!expect_gone);
            ++ok[kind];
        } catch (const NoSuchProcess& e) {
            ++gone[kind];
            std::string want = "process " + std::to_string(pid) + " exited during attach";
            bool right = std::string(e.what()) == want;
            if (!right) std::fprintf(stderr, "%s: NoSuchProcess '%s'\n", names[kind], e.what());
            CHECK(right);
            CHECK(kind != QuitAfter);  // that process only exits after the Tracer is gone
            if (kind == KillInCall) CHECK(us_since(t0) < 2500000);  // not the call's timeout
        } catch (const AttachError& e) {
            std::fprintf(stderr, "%s: unexpected %s\n", names[kind], e.what());
            CHECK(false);
        }
        if (!quit_sent && want_exit >= 0 && kind != ExitInCall) t.send("quit");
        if (killer > 0) waitpid(killer, nullptr, 0);
        int status = 0;
        bool reaped = reap_within(pid, 10000ms, status);
        if (!reaped) fatal(std::string(names[kind]) + ": the target could not be reaped");
        t.pid = 0;
        bool right = want_exit >= 0 ? WIFEXITED(status) && WEXITSTATUS(status) == want_exit
                                    : WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        if (!right) std::fprintf(stderr, "%s: target status 0x%x\n", names[kind], status);
        CHECK(right);
    }
    std::printf("exit race (attached before exit / saw the process go):");
    for (int k = 0; k < Kinds; ++k) std::printf(" %s %d/%d", names[k], ok[k], gone[k]);
    std::printf("\n");
    try {
        Tracer tracer(999999999, options());
        CHECK(false);
    } catch (const NoSuchProcess& e) {
        std::printf("NoSuchProcess: %s\n", e.what());
    }
    return 0;
}

template <typename E>
std::string expect_error(pid_t pid) {
    try {
        inspect_process(pid);
    } catch (const E& e) {
        return e.what();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "wrong exception type: %s\n", e.what());
        ++g_failures;
        return e.what();
    }
    std::fprintf(stderr, "inspect_process(%d) did not throw\n", pid);
    ++g_failures;
    return {};
}

// 6. pre-flight errors.
int scenario_inspect(const std::string& exe) {
    Target t(exe, {});
    ProcessInfo info = inspect_process(t.pid);
    CHECK(info.pid == t.pid && info.elf64 && info.tracer == 0 && info.same_mount_namespace);
    CHECK(info.exe == exe || info.exe.find("attach_target") != std::string::npos);

    std::string msg = expect_error<NoSuchProcess>(999999999);
    std::printf("nonexistent: %s\n", msg.c_str());
    CHECK(msg.find("no process with pid 999999999") != std::string::npos);

    msg = expect_error<AttachError>(static_cast<pid_t>(t["reader"]));
    std::printf("thread id: %s\n", msg.c_str());
    CHECK(msg.find("is a thread of process " + std::to_string(t.pid)) != std::string::npos);

    kill(t.pid, SIGSTOP);
    usleep(20000);
    msg = expect_error<AttachError>(t.pid);
    std::printf("stopped: %s\n", msg.c_str());
    CHECK(msg.find("stopped") != std::string::npos && msg.find("kill -CONT") != std::string::npos);
    kill(t.pid, SIGCONT);

    // Another tracer (a helper process that seizes the target).
    int ready[2];
    if (pipe(ready)) fatal("pipe");
    pid_t helper = fork();
    if (helper == 0) {
        if (ptrace(PTRACE_SEIZE, t.pid, nullptr, nullptr) != 0) _exit(2);
        char c = 1;
        if (write(ready[1], &c, 1) != 1) _exit(3);
        pause();
        _exit(0);
    }
    char c = 0;
    CHECK(read(ready[0], &c, 1) == 1 && c == 1);
    msg = expect_error<NotPermitted>(t.pid);
    std::printf("traced: %s\n", msg.c_str());
    CHECK(msg.find("already traced by process " + std::to_string(helper)) != std::string::npos);
    CHECK(msg.find("(test-attach)") != std::string::npos);
    bool seize_refused = false;
    try {
        Tracer tracer(t.pid, options());
    } catch (const NotPermitted&) {
        seize_refused = true;
    }
    CHECK(seize_refused);
    kill(helper, SIGKILL);
    waitpid(helper, nullptr, 0);
    usleep(10000);
    expect_echo(t, "after-inspect");
    return 0;
}

// Runs inspect_process as the current user and prints the result (used under setpriv).
int scenario_inspect_one(pid_t pid) {
    try {
        inspect_process(pid);
        std::printf("ok\n");
    } catch (const NotPermitted& e) {
        std::printf("NotPermitted: %s\n", e.what());
    } catch (const std::exception& e) {
        std::printf("other: %s\n", e.what());
    }
    return 0;
}

int scenario_permission(const std::string& exe, const std::string& self) {
    if (geteuid() != 0) skip("needs root to run the check as another user");
    if (access("/usr/bin/setpriv", X_OK) != 0) skip("setpriv not installed");
    Target t(exe, {});
    std::string cmd = "/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups " + self +
                      " inspect-one " + std::to_string(t.pid);
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) skip("popen failed");
    char buf[1024] = {};
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    int status = pclose(p);
    std::string out(buf, n);
    if (status != 0 && out.empty()) skip("could not run as nobody: " + cmd);
    std::printf("as nobody: %s", out.c_str());
    CHECK(out.rfind("NotPermitted: not permitted to trace process " + std::to_string(t.pid), 0) == 0);
    CHECK(out.find("CAP_SYS_PTRACE") != std::string::npos);
    CHECK(t.alive());
    return 0;
}

// A target built 32-bit or static (meson builds them when the toolchain can).
int scenario_refuse(const std::string& what, const std::string& exe, const std::string& expected) {
    if (exe == "none") skip("no " + what + " build of the target (toolchain lacks support)");
    // The child reports a failed exec through a close-on-exec pipe; EOF means the exec happened,
    // so there is no need to sleep and hope. A kernel without IA32 emulation refuses the exec.
    int report[2];
    if (pipe2(report, O_CLOEXEC)) fatal("pipe");
    pid_t child = fork();
    if (child == 0) {
        execl(exe.c_str(), exe.c_str(), nullptr);
        int err = errno;
        (void)!write(report[1], &err, sizeof err);
        _exit(127);
    }
    close(report[1]);
    int exec_errno = 0;
    ssize_t got = read(report[0], &exec_errno, sizeof exec_errno);
    close(report[0]);
    if (got == sizeof exec_errno) {
        waitpid(child, nullptr, 0);
        skip("this machine cannot run the " + what + " target: " + std::strerror(exec_errno));
    }
    std::string msg = expect_error<AttachError>(child);
    std::printf("%s: %s\n", what.c_str(), msg.c_str());
    CHECK(msg.find(expected) != std::string::npos);
    CHECK(kill(child, 0) == 0);
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) fatal("usage: test-attach SCENARIO TARGET");
    std::string scenario = argv[1], exe = argv[2];
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (scenario != "inspect-one") require_ptrace();
    try {
        if (scenario == "call") scenario_call(exe);
        else if (scenario == "blocked") scenario_blocked(exe);
        else if (scenario == "busy") scenario_cycles(exe, true, argc > 3 ? std::atoi(argv[3]) : 50);
        else if (scenario == "idle") scenario_cycles(exe, false, argc > 3 ? std::atoi(argv[3]) : 20);
        else if (scenario == "signals") scenario_signals_real(exe);
        else if (scenario == "crash") scenario_crash(exe);
        else if (scenario == "exit") scenario_exit(exe);
        else if (scenario == "inspect") scenario_inspect(exe);
        else if (scenario == "inspect-one") scenario_inspect_one(static_cast<pid_t>(std::atoi(argv[2])));
        else if (scenario == "permission") scenario_permission(exe, argv[0]);
        else if (scenario == "32bit") scenario_refuse("32-bit", exe, "32-bit processes are not supported");
        else if (scenario == "static")
            scenario_refuse("static", exe, "statically linked or not using glibc: cannot load the profiler");
        else fatal("unknown scenario " + scenario);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "unexpected exception: %s\n", e.what());
        return 1;
    }
    if (g_failures) std::fprintf(stderr, "%d check(s) failed\n", g_failures);
    return g_failures ? 1 : 0;
}
