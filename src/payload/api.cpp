#include "payload/api.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "format/records.hpp"
#include "format/settings.hpp"
#include "payload/got_patch.hpp"
#include "payload/hooks.hpp"
#include "payload/lock.hpp"
#include "payload/log.hpp"
#include "payload/native_stack.hpp"
#include "payload/objects.hpp"
#include "payload/python_allocators.hpp"
#include "payload/python_stack.hpp"
#include "payload/sink.hpp"
#include "payload/socket_sink.hpp"
#include "payload/stack_intern.hpp"
#include "payload/state.hpp"
#include "payload/thread_state.hpp"
#include "payload/tracker.hpp"
#include "payload/writer.hpp"

extern "C" {
__attribute__((visibility("default"))) struct memray_payload_status_t memray_payload_status = {
    MEMRAY_STATUS_MAGIC, MEMRAY_STATUS_VERSION, sizeof(memray_payload_status_t),
    MEMRAY_STATE_IDLE, 0, 0, -1, 0, 0, {}, {}, 0};
__attribute__((visibility("default"))) char
    memray_payload_settings_area[MEMRAY_PAYLOAD_SETTINGS_AREA_SIZE] = {};
}

namespace memray::payload {

namespace {

using format::PayloadSettings;

class FailureRecorder final : public Sink {
  public:
    constexpr FailureRecorder() noexcept = default;
    void open(Sink* inner) noexcept {
        m_inner = inner;
        m_errno = 0;
        m_unix_ms = 0;
    }
    int write(const uint8_t* data, size_t len) noexcept override;
    void finish() noexcept override { m_inner->finish(); }
    void abandon_in_child() noexcept override { m_inner->abandon_in_child(); }
    const char* describe() const noexcept override { return m_inner->describe(); }
    bool reconnects() const noexcept override { return m_inner->reconnects(); }
    int error() const noexcept { return m_errno; }  // errno of the first failed write, else 0
    uint64_t unix_ms() const noexcept { return m_unix_ms; }

  private:
    Sink* m_inner = nullptr;
    int m_errno = 0;
    uint64_t m_unix_ms = 0;
};

// Written by the thread holding `session.lock` (memray_payload_start/stop, the control thread),
// except: `session.active` is also read without it (memray_payload_active, start_async's early
// check, the control thread's watch), and start_async writes `async_settings` on the hijacked
// thread before it spawns the control thread, which then owns it and `async_parsed`.
struct ApiState {
    // Reset as a whole in a forked child: no session there, and the lock's holder is gone.
    struct Session {
        Mutex lock;
        std::atomic<bool> active{false};
        pid_t owner_pid = 0;  // the process whose exit finalizes the capture
    } session;
    char last_error[1024] = "";
    char command_line[8192] = {};
    char executable[4096] = {};
    char output_path[4096] = {};
    FileSink file_sink;  // the session's output
    SocketSink socket_sink;  // ... or, in live mode, this
    FailureRecorder output;  // what the writer writes to: one of them, remembering a write error
    // What a forked child needs to continue the session (follow-fork): set by start_locked(),
    // read by the fork handlers while they hold session.lock. Survives the child's reset.
    struct Inherited {
        bool follow_fork = false;
        bool python = false;
        bool native = false;
        WriterOptions writer;  // the session's header fields (pid and times are redone)
    } inherited;
    bool fork_guard_was = false;  // the forking thread's t_in_tracker, under session.lock
    char async_settings[16384] = {};
    PayloadSettings async_parsed;    // control thread only
    PayloadSettings start_settings;  // memray_payload_start: kept off the caller's stack
    PayloadSettings relisten_settings;  // --live-remote: each new viewer's session (relisten_main)
    bool relisten_started = false;
};
constinit ApiState g_api;

// Sits between the writer and the file sink to keep the first write error (errno and wall-clock
// time) for the status: the writer only logs it on the target's stderr, where the user of
// `memray detach` does not look.
uint64_t wall_ms() noexcept {
    timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    return uint64_t(wall.tv_sec) * 1000 + uint64_t(wall.tv_nsec) / 1000000;
}

void set_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void set_error(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_api.last_error, sizeof g_api.last_error, fmt, ap);
    va_end(ap);
}

int FailureRecorder::write(const uint8_t* data, size_t len) noexcept {
    int rc = m_inner->write(data, len);
    if (rc < 0 && m_errno == 0) {
        m_errno = -rc;
        m_unix_ms = wall_ms();
    }
    return rc;
}

// The contract and its parser live in format/settings.hpp; this adds the payload's reporting.
int parse_settings(const char* text, PayloadSettings& out) noexcept {
    char err[sizeof g_api.last_error];
    int unknown = 0;
    int rc = format::parse_settings(text, out, err, sizeof err, &unknown);
    if (rc != 0) {
        set_error("%s", err);
        return rc;
    }
    // A newer tool talking to an older payload that is still loaded: not an error.
    if (unknown) log(LogLevel::Debug, "ignoring %d unknown setting(s)", unknown);
    return 0;
}

void read_command_line(char* out, size_t cap) noexcept {
    out[0] = '\0';
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, out, cap - 1);
    close(fd);
    if (n <= 0) return;
    while (n > 0 && out[n - 1] == '\0') --n;
    for (ssize_t i = 0; i < n; ++i)
        if (out[i] == '\0') out[i] = ' ';
    out[n] = '\0';
}

void read_executable(char* out, size_t cap) noexcept {
    ssize_t n = readlink("/proc/self/exe", out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
}

template <class Release, class Discard>
int start_session(const PayloadSettings& s, Release release, Discard discard) noexcept;

// A session on the socket sink, whose viewer is connected.
int start_live_session(const PayloadSettings& s) noexcept {
    snprintf(g_api.output_path, sizeof g_api.output_path, "%s", g_api.socket_sink.describe());
    g_api.output.open(&g_api.socket_sink);
    return start_session(s, [] { g_api.socket_sink.finish(); }, [] {});
}

int stop_locked() noexcept;

// Threads of ours run at the nice value of the thread that started them, as a thread the program
// started would. `memray attach` runs the borrowed thread in the real-time class with
// reset-on-fork for its remote call (src/attach, RealTimeBoost), which alone would give the
// control thread, and the writer it starts, nice 0. The value travels as the thread's argument.
constexpr intptr_t k_no_nice = INTPTR_MIN;

void take_spawner_nice(void* arg) noexcept {
    intptr_t nice = reinterpret_cast<intptr_t>(arg);
    if (nice != k_no_nice) setpriority(PRIO_PROCESS, 0, int(nice));  // 0: this thread
}

// --live-remote (docs/live.md): when the viewer goes away the writer fails and tracking stops;
// this thread then ends that session, waits for the next viewer on the port kept open and starts
// a new session for it (a new header, stacks sent afresh). It ends when a session ends any other
// way (the program stops tracking or exits). Polls like the control thread's watch.
void* relisten_main(void* spawner_nice) noexcept {
    take_spawner_nice(spawner_nice);
    t_in_tracker = true;  // nothing this thread does is the program's own allocation
    prctl(PR_SET_NAME, "memray-relisten", 0, 0, 0);
    for (;;) {
        while (g_api.session.active && !writer_failed()) {
            timespec ten_ms{0, 10 * 1000 * 1000};
            nanosleep(&ten_ms, nullptr);
        }
        {
            LockGuard lock(g_api.session.lock);
            if (!g_api.session.active || !writer_failed()) return nullptr;  // ended another way
            stop_locked();
        }
        char err[512];
        if (g_api.socket_sink.accept_next(err, sizeof err) != 0) {
            log(LogLevel::Error, "error: %s", err);
            return nullptr;
        }
        LockGuard lock(g_api.session.lock);
        if (g_api.session.active) return nullptr;  // someone else started tracking meanwhile
        int rc = start_live_session(g_api.relisten_settings);
        if (rc != 0) {
            log(LogLevel::Error, "error: %s", g_api.last_error);
            return nullptr;
        }
        g_api.session.active = true;
        g_api.session.owner_pid = getpid();
        log(LogLevel::Info, "a new live viewer connected; tracking again");
    }
}

// A detached thread of ours (control, relisten), given the caller's nice value (see
// take_spawner_nice). 0 or the error of pthread_create.
int spawn_payload_thread(void* (*main)(void*)) noexcept {
    // The new thread (and the writer it starts) inherit a fully blocked mask: a signal the
    // program expects on its own threads (or reads with signalfd) must never be delivered to us.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);  // this thread's, also while in the real-time class
    void* arg = reinterpret_cast<void*>(errno == 0 ? intptr_t(nice) : k_no_nice);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, main, arg);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return rc;
}

void start_relisten(const PayloadSettings& s) noexcept {
    if (g_api.relisten_started) return;
    g_api.relisten_settings = s;
    if (spawn_payload_thread(relisten_main) == 0) g_api.relisten_started = true;
    else log(LogLevel::Warning, "cannot start the thread that waits for another live viewer");
}

// Under g_api.session.lock. `given_fd` >= 0: the output is already open (attach hands it over; the
// caller created the file and removes it on failure); it is closed on every path.
int start_locked(const PayloadSettings& s, int given_fd) noexcept {
    set_log_level(LogLevel(s.log_level));
    if (!tracker_init()) {
        set_error("cannot initialise the tracker: %s", strerror(errno));
        if (given_fd >= 0) close(given_fd);
        return -ENOMEM;
    }

    if (s.live_port) {
        char err[512];
        int rc = g_api.socket_sink.open(s.live_port, s.live_accept_timeout_ms, nullptr,
                                        s.live_reconnect, err, sizeof err);
        if (given_fd >= 0) close(given_fd);
        if (rc != 0) {
            set_error("%s", err);
            return rc;
        }
        rc = start_live_session(s);
        if (rc == 0 && s.live_reconnect) start_relisten(s);
        return rc;
    }
    // Only a file this call created may be removed again on failure: with force the path may
    // be anything the user pointed at (a device such as /dev/full, a file of theirs).
    bool created = given_fd < 0;
    int fd = given_fd;
    if (fd < 0) fd = open(s.output, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST && s.force) {
        created = false;
        fd = open(s.output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST)
            set_error("cannot create %s: file exists (use force=1 to overwrite)", s.output);
        else set_error("cannot create %s: %s", s.output, strerror(e));
        return -e;
    }
    snprintf(g_api.output_path, sizeof g_api.output_path, "%s", s.output);
    auto remove_if_ours = [created] {
        struct stat st;
        if (created && lstat(g_api.output_path, &st) == 0 && S_ISREG(st.st_mode))
            unlink(g_api.output_path);
    };
    g_api.file_sink.open(fd, g_api.output_path);
    g_api.output.open(&g_api.file_sink);
    return start_session(s, [] { g_api.file_sink.finish(); }, remove_if_ours);
}

// The session on g_api.output, once it is open. `release` closes the output when the writer
// could not start; `discard` removes what it left (a file this call created).
template <class Release, class Discard>
int start_session(const PayloadSettings& s, Release release, Discard discard) noexcept {
    bool python = python_init();
    bool native = s.native || !python;
    if (s.trace_python_allocators && !(python && python_allocators_available())) {
        set_error("cannot trace the Python allocators: this process runs no initialized CPython "
                  "interpreter");
        release();
        discard();
        return -ENOTSUP;
    }
    native_stack_init();
    tracker_begin_session(python, native);

    if (s.command[0]) snprintf(g_api.command_line, sizeof g_api.command_line, "%s", s.command);
    else read_command_line(g_api.command_line, sizeof g_api.command_line);
    read_executable(g_api.executable, sizeof g_api.executable);

    WriterOptions w;
    w.sink = &g_api.output;
    w.compress = s.compress;
    w.flags = (native ? uint32_t(format::k_flag_native) : 0u) |
              (s.compress ? uint32_t(format::k_flag_compressed) : 0u) |
              (s.trace_python_allocators ? uint32_t(format::k_flag_python_allocators) : 0u) |
              (s.aggregate ? uint32_t(format::k_flag_aggregated) : 0u);
    w.command_line = g_api.command_line;
    w.python_version = python ? python_version_string() : "";
    w.executable = g_api.executable;
    w.python_allocator = python ? python_allocator_name() : "";
    w.pid = uint64_t(getpid());
    w.start_ns = now_ns();
    w.start_unix_ms = wall_ms();
    g_api.inherited.follow_fork = s.follow_fork;
    g_api.inherited.python = python;
    g_api.inherited.native = native;
    g_api.inherited.writer = w;
    char err[512];
    int rc = writer_start(w, err, sizeof err);
    if (rc) {
        set_error("%s", err);
        release();
        discard();
        return rc;
    }

    tracker_set_enabled(true);
    rc = install_hooks();
    if (rc) {
        tracker_set_enabled(false);
        uninstall_hooks();
        tracker_wait_quiescent();
        writer_finish();  // finishes the sink
        discard();
        set_error("cannot install the allocator hooks: %s", strerror(-rc));
        return rc < 0 ? rc : -EINVAL;
    }
    g_api.session.active = true;
    g_api.session.owner_pid = getpid();
    python_allocators_want(s.trace_python_allocators);
    return 0;
}

int stop_locked() noexcept {
    if (!g_api.session.active) {
        set_error("tracking is not active");
        return -ENOENT;
    }
    tracker_set_enabled(false);
    uninstall_hooks();
    tracker_wait_quiescent();
    writer_finish();
    g_api.session.active = false;
    return 0;
}

// After start_locked, with the session lock released: taking the GIL can wait for a thread that
// holds it and wants the lock (an exec hook finishing the capture).
int install_python_allocators() noexcept {
    int rc = python_allocators_install();
    if (rc == 0) return 0;
    LockGuard lock(g_api.session.lock);
    if (g_api.session.active) stop_locked();
    set_error("cannot install the Python allocator hooks: %s", strerror(-rc));
    return rc;
}


// --- Attach: the control thread (docs/attach.md).
//
// The hijacked thread only runs memray_payload_start_async(): it claims the status (a CAS on the
// state, never a lock another thread could hold), copies the settings and spawns this thread.
// Everything that can block or take time happens here while the target runs normally.

std::atomic<uint32_t>& status_state() noexcept {
    static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
    return *reinterpret_cast<std::atomic<uint32_t>*>(
        const_cast<uint32_t*>(&memray_payload_status.state));
}

void publish_state(uint32_t state) noexcept { status_state().store(state, std::memory_order_release); }

void publish_failure(int code, const char* text) noexcept {
    memray_payload_status.error_code = code < 0 ? code : -EINVAL;
    snprintf(memray_payload_status.error_text, sizeof memray_payload_status.error_text, "%s", text);
    publish_state(MEMRAY_STATE_FAILED);
}

// The write error that ended tracking, for `memray detach` and `attach --duration` to report
// (state STOPPED with error_code set). Written before the state, which publishes it.
void publish_write_error() noexcept {
    int err = g_api.output.error();
    // No failed write recorded: the writer could not frame a block, which it reports as EOVERFLOW.
    if (err == 0) err = EOVERFLOW;
    memray_payload_status.stopped_unix_ms = g_api.output.error() ? g_api.output.unix_ms() : wall_ms();
    memray_payload_status.error_code = -err;
    snprintf(memray_payload_status.error_text, sizeof memray_payload_status.error_text,
             "cannot write %.900s: %s", memray_payload_status.output, strerror(err));
}

bool session_busy(uint32_t state) noexcept { return memray_payload_state_busy(state) != 0; }

uint64_t monotonic_ms() noexcept { return now_ns() / 1000000u; }

// Receives one descriptor (SCM_RIGHTS) on `sock`, waiting at most `timeout_ms`, and giving up
// early when the CLI (interrupted) writes stop_request. -errno on failure.
int receive_fd(int sock, int timeout_ms, uint64_t generation) noexcept {
    uint64_t deadline = monotonic_ms() + uint64_t(timeout_ms);
    for (;;) {
        uint64_t now = monotonic_ms();
        if (now >= deadline) return -ETIMEDOUT;
        if (memray_payload_status.stop_request == generation) return -ECANCELED;
        pollfd p{sock, POLLIN, 0};
        uint64_t slice = deadline - now < 10 ? deadline - now : 10;
        int n = poll(&p, 1, int(slice));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) continue;
        char byte;
        iovec iov{&byte, 1};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) return -errno;
        if (r == 0) return -EPIPE;  // the CLI went away without sending
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
                c->cmsg_len >= CMSG_LEN(sizeof(int))) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
                return fd;
            }
        }
        return -EBADMSG;  // data without a descriptor
    }
}

// Publishes a socket in the status and waits for the output descriptor on it.
int receive_output_fd(const PayloadSettings& s, uint64_t generation) noexcept {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        int e = errno;
        set_error("cannot create the handoff socket: %s", strerror(e));
        return -e;
    }
    memray_payload_status.handoff_fd = sv[1];
    publish_state(MEMRAY_STATE_WAITING_FOR_OUTPUT);
    int fd = receive_fd(sv[0], s.handoff_timeout_ms, generation);
    memray_payload_status.handoff_fd = -1;
    close(sv[0]);
    close(sv[1]);
    if (fd < 0) {
        if (fd == -ETIMEDOUT)
            set_error("no output file received within %d ms", s.handoff_timeout_ms);
        else if (fd == -ECANCELED) set_error("attach cancelled before the output file arrived");
        else set_error("cannot receive the output file: %s", strerror(-fd));
    }
    return fd;
}

// Stops the session when the CLI asks (stop_request == generation) and notices when tracking
// ended another way (exec hook, exit destructor, a write error).
void watch_session(uint64_t generation) noexcept {
    for (;;) {
        timespec ten_ms{0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, nullptr);
        bool requested = memray_payload_status.stop_request == generation;
        bool ended = !g_api.session.active || writer_failed();
        if (!requested && !ended) continue;
        publish_state(MEMRAY_STATE_STOPPING);
        python_allocators_uninstall();
        {
            LockGuard lock(g_api.session.lock);
            if (g_api.session.active) stop_locked();
        }
        if (writer_failed()) publish_write_error();
        publish_state(MEMRAY_STATE_STOPPED);
        return;
    }
}

void* control_main(void* spawner_nice) noexcept {
    take_spawner_nice(spawner_nice);
    t_in_tracker = true;  // nothing this thread does is the program's own allocation
    prctl(PR_SET_NAME, "memray-control", 0, 0, 0);
    memray_payload_status.control_tid = int32_t(syscall(SYS_gettid));
    uint64_t began = now_ns();
    uint64_t received = began;
    uint64_t generation = memray_payload_status.generation;
    PayloadSettings& s = g_api.async_parsed;
    reset_state(s);  // in place: 8 KiB must not land on a small stack
    int rc = parse_settings(g_api.async_settings, s);
    if (rc == 0) {
        snprintf(memray_payload_status.output, sizeof memray_payload_status.output, "%.4095s",
                 s.output);
        int fd = -1;
        if (s.output_fd_handoff) {
            fd = receive_output_fd(s, generation);
            if (fd < 0) rc = fd;
        }
        received = now_ns();
        if (rc == 0) {
            LockGuard lock(g_api.session.lock);
            // A `memray run` session may have begun meanwhile (start_async checked too).
            if (g_api.session.active) {
                set_error("tracking is already active in this process");
                if (fd >= 0) close(fd);
                rc = -EBUSY;
            } else {
                rc = start_locked(s, fd);
            }
        }
        if (rc == 0 && s.trace_python_allocators) {
            publish_state(MEMRAY_STATE_WAITING_FOR_GIL);  // what a timed-out attach reports
            rc = install_python_allocators();
        }
    }
    if (rc != 0) {
        publish_failure(rc, g_api.last_error);
        memray_payload_status.control_tid = 0;
        return nullptr;
    }
    publish_state(MEMRAY_STATE_ACTIVE);
    log(LogLevel::Debug, "tracking started %.2f ms after the control thread began (%.2f ms after the output arrived)",
        double(now_ns() - began) / 1e6, double(now_ns() - received) / 1e6);
    watch_session(generation);
    memray_payload_status.control_tid = 0;
    return nullptr;
}

int start_async(const char* settings) noexcept {
    if (!settings) return -EINVAL;
    uint32_t state = status_state().load(std::memory_order_acquire);
    if (session_busy(state) || g_api.session.active) return -EBUSY;
    if (!status_state().compare_exchange_strong(state, MEMRAY_STATE_STARTING,
                                                std::memory_order_acq_rel)) {
        return -EBUSY;
    }
    size_t n = std::strlen(settings);
    if (n >= sizeof g_api.async_settings) {
        publish_failure(-E2BIG, "settings too long");
        return -E2BIG;
    }
    std::memcpy(g_api.async_settings, settings, n + 1);
    memray_payload_status.error_code = 0;
    memray_payload_status.error_text[0] = '\0';
    memray_payload_status.stopped_unix_ms = 0;
    memray_payload_status.output[0] = '\0';
    memray_payload_status.handoff_fd = -1;
    memray_payload_status.generation = memray_payload_status.generation + 1;

    int rc = spawn_payload_thread(control_main);
    if (rc != 0) {
        char text[128];
        snprintf(text, sizeof text, "cannot start the control thread: %s", strerror(rc));
        publish_failure(-rc, text);
        return -rc;
    }
    return 0;
}

// --- Fork (docs/architecture.md, "Fork"). One set of handlers for every lock of the payload,
// taken in one order: session.lock (start/stop hold it while they take the others), then the
// tracker's fork gate (no thread inside a record, and none starting one), the GOT
// patch mutex (start, stop and the dlopen hooks), the loader's list lock (objects.hpp: walks,
// loads and unloads), the intern lock (recording threads, the writer). Holding them across
// fork() means no other thread is half way through a session change, a patch, a change or walk
// of the list of objects or a new stack node at the instant the child's memory is copied.

// The forking thread records nothing from here until our parent/child handler ran: in the child
// its ring has no writer to drain it until the session is redone, and a handler of another
// library running before ours could otherwise fill it and wait for room forever.
void before_fork() noexcept {
    g_api.session.lock.lock();
    tracker_fork_gate_close();
    got::lock_for_fork();
    objects_lock_for_fork();
    intern_lock_for_fork();
    g_api.fork_guard_was = t_in_tracker;
    t_in_tracker = true;
}

void parent_after_fork() noexcept {
    t_in_tracker = g_api.fork_guard_was;
    intern_unlock_after_fork_parent();
    objects_unlock_after_fork_parent();
    got::unlock_after_fork_parent();
    tracker_fork_gate_open();
    g_api.session.lock.unlock();
}

// The control thread does not exist in a forked child; neither does its session.
void control_after_fork_child() noexcept {
    uint32_t state = status_state().load(std::memory_order_relaxed);
    if (session_busy(state)) publish_state(MEMRAY_STATE_STOPPED);
    memray_payload_status.control_tid = 0;
    memray_payload_status.handoff_fd = -1;
}

// memray's naming: the parent's output with a trailing ".<parent pid>" dropped, then
// ".<child pid>" (a grandchild of out.bin writes out.bin.<its pid>, not out.bin.<child>.<its pid>).
// False when the name does not fit.
bool child_output_path(const char* parent_path, long parent_pid, long child_pid, char* out,
                       size_t cap) noexcept {
    char suffix[32];
    int slen = snprintf(suffix, sizeof suffix, ".%ld", parent_pid);
    size_t len = std::strlen(parent_path);
    size_t stem = len;
    if (slen > 0 && len > size_t(slen) && std::memcmp(parent_path + len - size_t(slen), suffix,
                                                      size_t(slen)) == 0) {
        stem = len - size_t(slen);
    }
    int n = snprintf(out, cap, "%.*s.%ld", int(stem), parent_path, child_pid);
    return n > 0 && size_t(n) < cap;
}

// follow-fork, in the child: a new capture with the parent's options, written by a new writer
// thread. The slots the parent patched are patched here too (the memory is a copy), so only the
// tracker, the writer and the output are new. On failure the child just does not record.
bool continue_in_child(pid_t parent_pid) noexcept {
    char path[sizeof g_api.output_path];
    if (!child_output_path(g_api.output_path, long(parent_pid), long(getpid()), path,
                           sizeof path)) {
        log(LogLevel::Error, "error: follow-fork: the child's capture name is too long; "
                             "process %ld is not tracked", long(getpid()));
        return false;
    }
    // As memray: a capture left by an earlier process with the same pid is overwritten.
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        log(LogLevel::Error, "error: follow-fork: cannot create %s: %s; process %ld is not tracked",
            path, strerror(errno), long(getpid()));
        return false;
    }
    snprintf(g_api.output_path, sizeof g_api.output_path, "%s", path);
    g_api.file_sink.open(fd, g_api.output_path);
    g_api.output.open(&g_api.file_sink);
    tracker_begin_session(g_api.inherited.python, g_api.inherited.native);
    WriterOptions w = g_api.inherited.writer;
    w.sink = &g_api.output;
    w.pid = uint64_t(getpid());
    w.start_ns = now_ns();
    w.start_unix_ms = wall_ms();
    g_api.inherited.writer = w;
    char err[512];
    if (writer_start(w, err, sizeof err) != 0) {
        log(LogLevel::Error, "error: follow-fork: %s; process %ld is not tracked", err,
            long(getpid()));
        g_api.file_sink.finish();
        return false;
    }
    hooks_adopt_in_child();
    g_api.session.active = true;
    g_api.session.owner_pid = getpid();
    tracker_set_enabled(true);
    return true;
}

// follow-fork of an attach session: the child's session answers `memray detach <child pid>`
// like the parent's does, through a control thread of its own that only watches.
void* child_control_main(void* spawner_nice) noexcept {
    take_spawner_nice(spawner_nice);
    t_in_tracker = true;
    prctl(PR_SET_NAME, "memray-control", 0, 0, 0);
    memray_payload_status.control_tid = int32_t(syscall(SYS_gettid));
    watch_session(memray_payload_status.generation);
    memray_payload_status.control_tid = 0;
    return nullptr;
}

void control_continue_in_child() noexcept {
    snprintf(memray_payload_status.output, sizeof memray_payload_status.output, "%s",
             g_api.output_path);
    memray_payload_status.error_code = 0;
    memray_payload_status.error_text[0] = '\0';
    memray_payload_status.stopped_unix_ms = 0;
    publish_state(MEMRAY_STATE_ACTIVE);
    if (spawn_payload_thread(child_control_main) != 0) {
        // Still recording, finalized at exit or exec; only `memray detach` cannot reach it.
        publish_state(MEMRAY_STATE_STOPPED);
        log(LogLevel::Warning, "warning: follow-fork: process %ld cannot be detached from",
            long(getpid()));
    }
}

void child_after_fork() noexcept {
    // t_in_tracker is still set (before_fork): what the child's new session allocates is not
    // the program's.
    bool guard_was = g_api.fork_guard_was;
    // Read before the resets: the handlers held session.lock, so this is the session as of fork.
    bool follow = g_api.session.active && g_api.inherited.follow_fork && tracking_enabled() &&
                  !writer_failed();
    pid_t parent = g_api.session.owner_pid;
    bool attached = status_state().load(std::memory_order_relaxed) == MEMRAY_STATE_ACTIVE;
    got::reset_after_fork_child();
    objects_after_fork_child();
    tracker_after_fork_child();  // also resets the intern lock
    writer_after_fork_child();   // the parent's output is let go of unwritten
    g_api.socket_sink.abandon_in_child();  // also the port kept open for another viewer
    g_api.relisten_started = false;
    reset_state(g_api.session);
    control_after_fork_child();
    if (follow && continue_in_child(parent) && attached) control_continue_in_child();
    t_in_tracker = guard_was;
}

// Drops the payload from LD_PRELOAD (entries separated by ':' or ' ') so that programs the
// target starts are not tracked, and MEMRAY_SETTINGS with it.
void remove_self_from_environment() noexcept {
    unsetenv("MEMRAY_SETTINGS");
    const char* preload = getenv("LD_PRELOAD");
    if (!preload) return;
    Dl_info info;
    const char* self = nullptr;
    if (dladdr(reinterpret_cast<void*>(&remove_self_from_environment), &info) && info.dli_fname)
        self = info.dli_fname;
    const char* self_base = self ? std::strrchr(self, '/') : nullptr;
    self_base = self_base ? self_base + 1 : (self ? self : "libmemray-payload.so");
    size_t base_len = std::strlen(self_base);

    char kept[8192];
    size_t k = 0;
    const char* p = preload;
    while (*p) {
        while (*p == ':' || *p == ' ') ++p;
        const char* start = p;
        while (*p && *p != ':' && *p != ' ') ++p;
        size_t len = size_t(p - start);
        if (!len) continue;
        const char* slash = static_cast<const char*>(memrchr(start, '/', len));
        const char* base = slash ? slash + 1 : start;
        size_t blen = size_t(start + len - base);
        bool is_self = (blen == base_len && std::memcmp(base, self_base, blen) == 0);
        if (is_self) continue;
        if (k + len + 2 >= sizeof kept) break;
        if (k) kept[k++] = ':';
        std::memcpy(kept + k, start, len);
        k += len;
    }
    kept[k] = '\0';
    if (k) setenv("LD_PRELOAD", kept, 1);
    else unsetenv("LD_PRELOAD");
}

__attribute__((constructor)) void on_load() {
    objects_init();
    pthread_atfork(before_fork, parent_after_fork, child_after_fork);
    const char* env = getenv("MEMRAY_SETTINGS");
    if (!env || !*env) return;
    // Copy first: the environment is edited before tracking starts, so that the edit's own
    // allocations are not in the capture.
    static char settings[16384];
    snprintf(settings, sizeof settings, "%s", env);
    remove_self_from_environment();
    if (memray_payload_start(settings) != 0)
        log(LogLevel::Error, "error: %s", memray_payload_last_error());
}

__attribute__((destructor)) void on_unload() {
    // Process exit: finalize the capture (trailer) if this process owns one. The Python
    // allocators are left alone: the interpreter is gone or going.
    if (g_api.session.owner_pid == getpid()) {
        ReentryGuard guard;
        LockGuard lock(g_api.session.lock);
        stop_locked();
    }
}

int start(const char* settings, bool exclusive) noexcept {
    bool python_allocators = false;
    {
        LockGuard lock(g_api.session.lock);
        if (exclusive && session_busy(status_state().load(std::memory_order_acquire))) {
            set_error("a `memray attach` session is running in this process");
            return -EBUSY;
        }
        if (g_api.session.active) {
            if (!exclusive) return 0;
            set_error("tracking is already active in this process");
            return -EBUSY;
        }
        PayloadSettings& s = g_api.start_settings;
        reset_state(s);  // in place: 8 KiB must not land on a small stack
        int rc = parse_settings(settings, s);
        if (rc == 0) rc = start_locked(s, -1);
        if (rc != 0) return rc;
        python_allocators = s.trace_python_allocators;
    }
    return python_allocators ? install_python_allocators() : 0;
}

int stop_session(bool restore_python_allocators) noexcept {
    // Before the lock, like the install: the GIL first, then the lock, everywhere.
    if (restore_python_allocators) python_allocators_uninstall();
    LockGuard lock(g_api.session.lock);
    return stop_locked();
}

}  // namespace

int stop_before_exit() noexcept {
    ReentryGuard guard;
    return stop_session(false);
}

}  // namespace memray::payload

using namespace memray::payload;

extern "C" int memray_payload_start(const char* settings) {
    ReentryGuard guard;
    return memray::payload::start(settings, false);
}

extern "C" int memray_payload_start_exclusive(const char* settings) {
    ReentryGuard guard;
    return memray::payload::start(settings, true);
}

extern "C" int memray_payload_stop(void) {
    ReentryGuard guard;
    return stop_session(true);
}

extern "C" int memray_payload_active(void) {
    return (g_api.session.active && tracking_enabled() && !writer_failed()) ? 1 : 0;
}

extern "C" const char* memray_payload_last_error(void) { return g_api.last_error; }

extern "C" void memray_payload_name_thread(const char* name) {
    if (name && memray::payload::tracking_enabled()) memray::payload::record_thread_name(0, name);
}

extern "C" void memray_payload_python_root(const void* code) {
    memray::payload::python_set_root(code);
}

extern "C" int memray_payload_start_async(const char* settings) {
    ReentryGuard guard;
    return memray::payload::start_async(settings);
}
