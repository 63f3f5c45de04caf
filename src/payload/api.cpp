#include "payload/api.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "format/records.hpp"
#include "payload/hooks.hpp"
#include "payload/log.hpp"
#include "payload/native_stack.hpp"
#include "payload/python_stack.hpp"
#include "payload/thread_state.hpp"
#include "payload/tracker.hpp"
#include "payload/writer.hpp"

namespace memray::payload {

namespace {

struct Settings {
    char output[4096] = {};
    char command[4096] = {};
    bool native = false;
    bool compress = true;
    bool force = false;
    int log_level = int(LogLevel::Warning);
};

pthread_mutex_t g_api_lock = PTHREAD_MUTEX_INITIALIZER;
std::atomic<bool> g_active{false};  // written under g_api_lock
pid_t g_owner_pid = 0;
char g_last_error[1024] = "";
char g_command_line[8192];
char g_executable[4096];
char g_output_path[4096];

void set_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void set_error(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
    va_end(ap);
}

bool parse_bool(const char* v, size_t n, bool& out) noexcept {
    if (n == 1 && (v[0] == '0' || v[0] == '1')) {
        out = v[0] == '1';
        return true;
    }
    return false;
}

// "key=value" lines. Unknown keys are ignored (newer CLI, older payload) with a debug note.
int parse_settings(const char* text, Settings& out) noexcept {
    if (!text) {
        set_error("no settings given");
        return -EINVAL;
    }
    const char* p = text;
    while (*p) {
        const char* line_end = std::strchr(p, '\n');
        if (!line_end) line_end = p + std::strlen(p);
        const char* eq = static_cast<const char*>(std::memchr(p, '=', size_t(line_end - p)));
        if (line_end != p) {
            if (!eq) {
                set_error("malformed setting '%.*s' (expected key=value)", int(line_end - p), p);
                return -EINVAL;
            }
            size_t klen = size_t(eq - p);
            const char* v = eq + 1;
            size_t vlen = size_t(line_end - v);
            auto key_is = [&](const char* k) {
                return std::strlen(k) == klen && std::memcmp(p, k, klen) == 0;
            };
            auto copy_to = [&](char* dst, size_t cap) {
                if (vlen >= cap) return false;
                std::memcpy(dst, v, vlen);
                dst[vlen] = '\0';
                return true;
            };
            bool ok = true;
            if (key_is("output")) ok = copy_to(out.output, sizeof out.output);
            else if (key_is("command")) ok = copy_to(out.command, sizeof out.command);
            else if (key_is("native")) ok = parse_bool(v, vlen, out.native);
            else if (key_is("compress")) ok = parse_bool(v, vlen, out.compress);
            else if (key_is("force")) ok = parse_bool(v, vlen, out.force);
            else if (key_is("log_level")) {
                ok = vlen == 1 && v[0] >= '0' && v[0] <= '3';
                if (ok) out.log_level = v[0] - '0';
            } else {
                log(LogLevel::Debug, "ignoring unknown setting '%.*s'", int(klen), p);
            }
            if (!ok) {
                set_error("invalid value for setting '%.*s': '%.*s'", int(klen), p, int(vlen), v);
                return -EINVAL;
            }
        }
        p = *line_end ? line_end + 1 : line_end;
    }
    if (!out.output[0]) {
        set_error("no output file given (setting 'output')");
        return -EINVAL;
    }
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

// Under g_api_lock.
int start_locked(const char* settings_text) noexcept {
    Settings s;
    int rc = parse_settings(settings_text, s);
    if (rc) return rc;
    set_log_level(LogLevel(s.log_level));
    if (!tracker_init()) {
        set_error("cannot initialise the tracker: %s", strerror(errno));
        return -ENOMEM;
    }

    // Only a file this call created may be removed again on failure: with force the path may
    // be anything the user pointed at (a device such as /dev/full, a file of theirs).
    bool created = true;
    int fd = open(s.output, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
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
    snprintf(g_output_path, sizeof g_output_path, "%s", s.output);
    auto remove_if_ours = [created] {
        struct stat st;
        if (created && lstat(g_output_path, &st) == 0 && S_ISREG(st.st_mode)) unlink(g_output_path);
    };
    auto abandon_file = [&] {
        close(fd);
        remove_if_ours();
    };

    bool python = python_init();
    bool native = s.native || !python;
    native_stack_init();
    tracker_begin_session(python, native);

    if (s.command[0]) snprintf(g_command_line, sizeof g_command_line, "%s", s.command);
    else read_command_line(g_command_line, sizeof g_command_line);
    read_executable(g_executable, sizeof g_executable);

    WriterOptions w;
    w.fd = fd;
    w.path = g_output_path;
    w.compress = s.compress;
    w.flags = (native ? uint32_t(format::k_flag_native) : 0u) |
              (s.compress ? uint32_t(format::k_flag_compressed) : 0u);
    w.command_line = g_command_line;
    w.python_version = python ? python_version_string() : "";
    w.executable = g_executable;
    w.pid = uint64_t(getpid());
    w.start_ns = now_ns();
    timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    w.start_unix_ms = uint64_t(wall.tv_sec) * 1000 + uint64_t(wall.tv_nsec) / 1000000;
    char err[512];
    rc = writer_start(w, err, sizeof err);
    if (rc) {
        set_error("%s", err);
        abandon_file();
        return rc;
    }

    tracker_set_enabled(true);
    rc = install_hooks();
    if (rc) {
        tracker_set_enabled(false);
        uninstall_hooks();
        tracker_wait_quiescent();
        writer_finish();  // closes fd
        remove_if_ours();
        set_error("cannot install the allocator hooks: %s", strerror(-rc));
        return rc < 0 ? rc : -EINVAL;
    }
    g_active = true;
    g_owner_pid = getpid();
    return 0;
}

int stop_locked() noexcept {
    if (!g_active) {
        set_error("tracking is not active");
        return -ENOENT;
    }
    tracker_set_enabled(false);
    uninstall_hooks();
    tracker_wait_quiescent();
    writer_finish();
    g_active = false;
    return 0;
}

void child_after_fork() noexcept {
    // The child never records and never touches the parent's capture (follow-fork comes later).
    tracker_after_fork_child();
    writer_after_fork_child();
    g_active = false;
    g_owner_pid = 0;
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    std::memcpy(&g_api_lock, &fresh, sizeof fresh);
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
    pthread_atfork(nullptr, nullptr, child_after_fork);
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
    // Process exit: finalize the capture (trailer) if this process owns one.
    if (g_owner_pid == getpid()) memray_payload_stop();
}

}  // namespace

}  // namespace memray::payload

using namespace memray::payload;

extern "C" int memray_payload_start(const char* settings) {
    ReentryGuard guard;
    pthread_mutex_lock(&g_api_lock);
    int rc = g_active ? 0 : start_locked(settings);
    pthread_mutex_unlock(&g_api_lock);
    return rc;
}

extern "C" int memray_payload_stop(void) {
    ReentryGuard guard;
    pthread_mutex_lock(&g_api_lock);
    int rc = stop_locked();
    pthread_mutex_unlock(&g_api_lock);
    return rc;
}

extern "C" int memray_payload_active(void) {
    return (g_active && tracking_enabled() && !writer_failed()) ? 1 : 0;
}

extern "C" const char* memray_payload_last_error(void) { return g_last_error; }

extern "C" void memray_payload_name_thread(const char* name) {
    if (name && memray::payload::tracking_enabled()) memray::payload::record_thread_name(0, name);
}
