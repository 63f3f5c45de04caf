#include "inject/injector.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <vector>

#include "attach/tracer.hpp"
#include "inject/elf_symbols.hpp"
#include "payload/api.hpp"
#include "payload/hook_list.hpp"

namespace memray::inject {

namespace {

using clock = std::chrono::steady_clock;
using attach::AttachError;

// How long a safe-point breakpoint may wait for a thread to call malloc/free before the Tracer
// falls back to a thread blocked in a system call (an idle process never allocates).
constexpr std::chrono::milliseconds k_breakpoint_wait{30};
// Scratch page in the target: the dlopen path, the memfd name, the settings.
constexpr uint64_t k_scratch_size = 16384;
constexpr uint64_t k_scratch_path = 0;
constexpr uint64_t k_scratch_name = 1024;
constexpr uint64_t k_scratch_settings = 2048;
// glibc < 2.34: __libc_dlopen_mode needs __RTLD_DLOPEN to behave like dlopen.
constexpr uint64_t k_rtld_dlopen = 0x80000000u;
constexpr const char* k_detach_hint = "no previous memray attach call detected";

std::string errno_text(int err) { return std::strerror(err); }

class Steps {
  public:
    explicit Steps(bool verbose) : m_verbose(verbose), m_start(clock::now()) {}
    double elapsed_ms() const {
        return std::chrono::duration<double, std::milli>(clock::now() - m_start).count();
    }
    template <typename... Args>
    void note(fmt::format_string<Args...> f, Args&&... args) const {
        if (!m_verbose) return;
        std::string line = fmt::format(f, std::forward<Args>(args)...);
        std::fprintf(stderr, "memray: [%7.2f ms] %s\n", elapsed_ms(), line.c_str());
    }

  private:
    bool m_verbose;
    clock::time_point m_start;
};

std::string read_comm(pid_t pid) {
    std::ifstream in(fmt::format("/proc/{}/comm", pid));
    std::string comm;
    std::getline(in, comm);
    return comm;
}

std::string basename_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

struct LibcFunctions {
    std::string path;
    uint64_t dlopen = 0;
    bool libc_dlopen_mode = false;  // dlopen is __libc_dlopen_mode (glibc < 2.34)
    uint64_t dlerror = 0;           // 0 when libc has none (glibc < 2.34)
    uint64_t malloc = 0;
    uint64_t free = 0;
};

bool is_glibc_name(const std::string& base) {
    return base == "libc.so.6" || (base.rfind("libc-2.", 0) == 0 && base.size() > 10 &&
                                   base.compare(base.size() - 3, 3, ".so") == 0);
}

LibcFunctions find_libc(pid_t pid, const std::vector<attach::Mapping>& maps) {
    const attach::Mapping* libc = nullptr;
    bool musl = false;
    for (const auto& m : maps) {
        std::string base = basename_of(m.path);
        if (base.rfind("ld-musl", 0) == 0 || base.rfind("libc.musl", 0) == 0) musl = true;
        if (m.offset == 0 && is_glibc_name(base) && libc == nullptr) libc = &m;
    }
    if (libc == nullptr) {
        if (musl) {
            throw AttachError(fmt::format(
                "process {} uses musl libc: memray attach supports glibc programs only", pid));
        }
        throw AttachError(fmt::format(
            "process {} has no glibc mapped (statically linked?): memray can only attach to "
            "dynamically linked glibc programs",
            pid));
    }
    std::string file = mapped_file_path(pid, *libc);
    // malloc and free are the safe points (inject()); named by the payload's hook list, the one
    // place that spells the allocator functions.
    const char* malloc_name = payload::hook_name(payload::HookId::malloc);
    const char* free_name = payload::hook_name(payload::HookId::free);
    auto syms = read_dynamic_symbols(
        file, {"dlopen", "__libc_dlopen_mode", "dlerror", malloc_name, free_name});
    uint64_t bias = libc->start - syms.first_load_vaddr;
    auto get = [&](const char* name) -> uint64_t {
        auto it = syms.values.find(name);
        return it == syms.values.end() ? 0 : bias + it->second;
    };
    LibcFunctions f;
    f.path = libc->path;
    f.dlopen = get("dlopen");
    if (f.dlopen == 0) {
        f.dlopen = get("__libc_dlopen_mode");
        f.libc_dlopen_mode = f.dlopen != 0;
    }
    f.dlerror = get("dlerror");
    f.malloc = get(malloc_name);
    f.free = get(free_name);
    if (f.dlopen == 0 || f.malloc == 0 || f.free == 0) {
        throw AttachError(fmt::format("cannot find dlopen, malloc and free in {} of process {}",
                                      libc->path, pid));
    }
    return f;
}

// Entry points of CPython's object allocator, as extra safe points: in a Python program small
// objects come from pymalloc and rarely reach malloc, so libc's entries alone often leave the
// breakpoint wait to time out. At PyObject_Malloc's entry a thread holds the GIL but no allocator
// or loader lock, which is what dlopen and start_async need (the Tracer still checks the stack).
// Looked up in libpython, or in the executable when libpython is linked into it (Debian's).
std::vector<uint64_t> find_python_entries(pid_t pid, const std::vector<attach::Mapping>& maps,
                                          const std::string& exe) {
    const attach::Mapping* holder = nullptr;
    for (const auto& m : maps) {
        if (m.offset == 0 && basename_of(m.path).rfind("libpython3", 0) == 0) {
            holder = &m;
            break;
        }
    }
    if (holder == nullptr) {
        for (const auto& m : maps) {
            if (m.offset == 0 && m.path == exe) {
                holder = &m;
                break;
            }
        }
    }
    if (holder == nullptr) return {};
    std::vector<uint64_t> out;
    try {
        auto syms = read_dynamic_symbols(mapped_file_path(pid, *holder),
                                         {"PyObject_Malloc", "PyObject_Free"});
        uint64_t bias = holder->start - syms.first_load_vaddr;
        for (const auto& [name, value] : syms.values) out.push_back(bias + value);
    } catch (const AttachError&) {
        // Only an optimisation: malloc and free remain.
    }
    return out;
}

bool same_file(const std::string& a, const std::string& b) {
    struct stat sa {}, sb {};
    return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

std::vector<char> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw AttachError(fmt::format("cannot read the payload {}: {}", path, errno_text(errno)));
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool syscall_failed(int64_t rc) { return rc < 0 && rc > -4096; }

// A NUL-terminated string of the target (dlerror's text).
std::string read_remote_string(const attach::Tracer& tracer, uint64_t address, size_t max) {
    std::string out;
    char chunk[64];
    while (out.size() < max) {
        // Never cross a page boundary in one read: the next page may not be mapped.
        size_t to_page = 4096 - (address % 4096);
        size_t n = std::min(sizeof chunk, to_page);
        try {
            tracer.read_memory(address, chunk, n);
        } catch (const AttachError&) {
            break;
        }
        size_t len = ::strnlen(chunk, n);
        out.append(chunk, len);
        if (len < n) break;
        address += n;
    }
    return out;
}

struct Injection {
    bool loaded_now = false;
    bool via_memfd = false;
    int start_rc = 0;
    pid_t tid = 0;
    double stopped_ms = 0;
};

// Everything that needs a stopped thread. The Tracer's destructor restores and detaches.
Injection inject(const AttachOptions& o, const attach::ProcessInfo& info,
                 const LibcFunctions& libc, const std::vector<uint64_t>& extra_entries,
                 std::optional<LoadedPayload> loaded, const std::string& settings,
                 const Steps& steps) {
    pid_t pid = o.pid;
    Injection result;

    // How the target will see the payload: our path if it is the same file in its mount
    // namespace, else a memfd created in the target and filled from here.
    std::string payload_abs = o.payload_path;
    bool use_path = info.same_mount_namespace &&
                    same_file(payload_abs, fmt::format("/proc/{}/root{}", pid, payload_abs));
    std::vector<char> payload_bytes;
    if (!loaded && !use_path) payload_bytes = read_file(payload_abs);
    if (settings.size() + 1 > k_scratch_size - k_scratch_settings)
        throw AttachError("the settings for the payload are too long");

    attach::Tracer::Options topt;
    topt.timeout = o.timeout;
    topt.cancelled = o.cancelled;
    topt.verbose = o.verbose;
    attach::Tracer tracer(pid, topt);
    steps.note("seized {} threads of process {}", tracer.threads().size(), pid);

    // A re-attach to a payload with a settings area: the settings go there now, while every
    // thread runs, and the borrowed thread only runs start_async (one round trip, not three).
    bool use_area = loaded && loaded->settings_area_address != 0 &&
                    settings.size() < MEMRAY_PAYLOAD_SETTINGS_AREA_SIZE;
    if (use_area)
        tracer.write_memory(loaded->settings_area_address, settings.c_str(), settings.size() + 1);

    std::vector<uint64_t> entries = {libc.malloc, libc.free};
    entries.insert(entries.end(), extra_entries.begin(), extra_entries.end());
    pid_t tid = tracer.stop_at_safe_point(entries, k_breakpoint_wait);
    auto stopped_at = clock::now();
    result.tid = tid;
    steps.note("thread {} stopped at a safe point", tid);
    auto finish = [&] {
        tracer.resume(tid);
        result.stopped_ms =
            std::chrono::duration<double, std::milli>(clock::now() - stopped_at).count();
        steps.note("thread {} resumed after {:.2f} ms", tid, result.stopped_ms);
        return result;
    };

    if (use_area) {
        steps.note("payload already loaded in process {} ({}); settings in its settings area",
                   pid, loaded->mapped_as);
        uint64_t rc = tracer.call(tid, loaded->start_async_address, {loaded->settings_area_address},
                                  o.timeout);
        result.start_rc = int32_t(uint32_t(rc));
        steps.note("memray_payload_start_async returned {}", result.start_rc);
        return finish();
    }

    int64_t scratch = tracer.syscall(
        tid, SYS_mmap,
        {0, k_scratch_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, ~0ull, 0},
        o.timeout);
    if (syscall_failed(scratch)) {
        throw AttachError(fmt::format("cannot map a scratch page in process {}: {}", pid,
                                      errno_text(int(-scratch))));
    }
    uint64_t base = uint64_t(scratch);
    int64_t memfd = -1;
    auto cleanup = [&] {
        // Best effort: also runs after a failed call (the Tracer restored the thread's state).
        try {
            if (memfd >= 0) tracer.syscall(tid, SYS_close, {uint64_t(memfd)}, o.timeout);
            tracer.syscall(tid, SYS_munmap, {base, k_scratch_size}, o.timeout);
        } catch (const AttachError&) {
        }
    };
    try {
        if (!loaded) {
            std::string dl_path = payload_abs;
            if (!use_path) {
                tracer.write_memory(base + k_scratch_name, k_payload_name,
                                    std::strlen(k_payload_name) + 1);
                memfd = tracer.syscall(tid, SYS_memfd_create, {base + k_scratch_name, MFD_CLOEXEC},
                                       o.timeout);
                if (syscall_failed(memfd)) {
                    int err = int(-memfd);
                    memfd = -1;
                    throw AttachError(fmt::format("memfd_create in process {}: {}", pid, errno_text(err)));
                }
                std::string fd_path = fmt::format("/proc/{}/fd/{}", pid, memfd);
                int out = ::open(fd_path.c_str(), O_WRONLY | O_CLOEXEC);
                if (out < 0) {
                    throw AttachError(fmt::format("cannot open {}: {}", fd_path, errno_text(errno)));
                }
                size_t done = 0;
                while (done < payload_bytes.size()) {
                    ssize_t n = ::write(out, payload_bytes.data() + done, payload_bytes.size() - done);
                    if (n < 0 && errno == EINTR) continue;
                    if (n <= 0) {
                        int err = n < 0 ? errno : EIO;
                        ::close(out);
                        throw AttachError(fmt::format("cannot write the payload into {}: {}", fd_path,
                                                      errno_text(err)));
                    }
                    done += size_t(n);
                }
                ::close(out);
                dl_path = fmt::format("/proc/self/fd/{}", memfd);
                result.via_memfd = true;
                steps.note("payload copied into memfd {} of process {} ({} bytes)", memfd, pid,
                           payload_bytes.size());
            }
            if (dl_path.size() >= k_scratch_name - k_scratch_path)
                throw AttachError("the payload path is too long: " + dl_path);
            tracer.write_memory(base + k_scratch_path, dl_path.c_str(), dl_path.size() + 1);
            uint64_t mode = RTLD_NOW | (libc.libc_dlopen_mode ? k_rtld_dlopen : 0);
            uint64_t handle = tracer.call(tid, libc.dlopen, {base + k_scratch_path, mode}, o.timeout);
            if (handle == 0) {
                std::string why = "no reason given";
                if (libc.dlerror != 0) {
                    uint64_t text = tracer.call(tid, libc.dlerror, {}, o.timeout);
                    if (text != 0) why = read_remote_string(tracer, text, 1000);
                }
                throw PayloadFailed(fmt::format("cannot load the memray payload into process {}: {}",
                                                pid, why));
            }
            steps.note("dlopen({}) returned {:#x}", dl_path, handle);
            result.loaded_now = true;
            loaded = find_loaded_payload(pid);
            if (!loaded) {
                throw PayloadFailed(fmt::format(
                    "the memray payload was loaded into process {} but is not in its maps", pid));
            }
        } else {
            steps.note("payload already loaded in process {} ({})", pid, loaded->mapped_as);
        }
        tracer.write_memory(base + k_scratch_settings, settings.c_str(), settings.size() + 1);
        uint64_t rc = tracer.call(tid, loaded->start_async_address, {base + k_scratch_settings},
                                  o.timeout);
        result.start_rc = int32_t(uint32_t(rc));
        steps.note("memray_payload_start_async returned {}", result.start_rc);
    } catch (...) {
        cleanup();
        throw;
    }
    cleanup();
    return finish();
}

// True when `pid` no longer runs (gone, or a zombie waiting for its parent).
bool process_gone(pid_t pid) {
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    std::string line;
    if (!std::getline(in, line)) return true;
    auto paren = line.rfind(')');
    if (paren == std::string::npos || paren + 2 >= line.size()) return false;
    char state = line[paren + 2];
    return state == 'Z' || state == 'X';
}

AttachResult attach_steps(const AttachOptions& o);

}  // namespace

AttachResult attach_payload(const AttachOptions& o) {
    try {
        return attach_steps(o);
    } catch (const attach::NoSuchProcess&) {
        throw;
    } catch (const AttachError&) {
        // Whatever step noticed it first (a read, a wait, a call), the user's answer is the same.
        if (process_gone(o.pid))
            throw attach::NoSuchProcess(fmt::format("process {} exited during attach", o.pid));
        throw;
    }
}

namespace {

AttachResult attach_steps(const AttachOptions& o) {
    Steps steps(o.verbose);
    pid_t pid = o.pid;
    attach::ProcessInfo info = attach::inspect_process(pid);
    auto maps = attach::read_maps(pid);
    LibcFunctions libc = find_libc(pid, maps);
    steps.note("process {} ({}): glibc {}, dlopen at {:#x}{}", pid, info.exe, libc.path, libc.dlopen,
               libc.libc_dlopen_mode ? " (__libc_dlopen_mode)" : "");

    std::optional<LoadedPayload> loaded = find_loaded_payload(pid, maps);
    uint64_t generation = 0;
    if (loaded) {
        PayloadStatus s = read_status(pid, loaded->status_address);
        if (s.busy()) {
            throw AlreadyAttached(fmt::format(
                "process {} is already being tracked by memray (writing {}): run 'memray detach {}' "
                "first",
                pid, s.output.empty() ? std::string("?") : s.output, pid));
        }
        generation = s.generation;
    }

    format::PayloadSettings handoff = o.settings;
    // No descriptor: a live session (settings.live_port), whose payload opens its own socket.
    handoff.output_fd_handoff = o.output_fd >= 0;
    handoff.handoff_timeout_ms = static_cast<int>(o.timeout.count());
    std::string settings = format::settings_text(handoff);

    std::vector<uint64_t> python_entries = find_python_entries(pid, maps, info.exe);
    if (!python_entries.empty()) steps.note("CPython allocator entries used as safe points too");
    Injection inj = inject(o, info, libc, python_entries, loaded, settings, steps);
    if (inj.start_rc == -EBUSY) {
        throw AlreadyAttached(fmt::format(
            "process {} is already being tracked by memray: run 'memray detach {}' first", pid, pid));
    }
    if (inj.start_rc != 0) {
        throw PayloadFailed(fmt::format("memray could not start tracking in process {}: {}", pid,
                                        errno_text(-inj.start_rc)));
    }
    if (!loaded) loaded = find_loaded_payload(pid);
    if (!loaded) throw PayloadFailed(fmt::format("the memray payload vanished from process {}", pid));
    uint64_t expected = generation + 1;

    auto ours = [expected](const PayloadStatus& s) { return s.generation == expected; };
    try {
        PayloadStatus s = wait_for_status(
            pid, loaded->status_address,
            [&](const PayloadStatus& s) {
                return ours(s) && s.state != MEMRAY_STATE_STARTING;
            },
            o.timeout, "the start of memray's control thread", o.cancelled);
        if (s.state == MEMRAY_STATE_WAITING_FOR_OUTPUT) {
            send_fd(pid, s.handoff_fd, o.output_fd);
            steps.note("output file handed to process {} (its fd {})", pid, s.handoff_fd);
        }
        // Then the session begins; with --trace-python-allocators it also waits for the GIL.
        auto starting = [](uint32_t state) {
            return state == MEMRAY_STATE_WAITING_FOR_OUTPUT || state == MEMRAY_STATE_WAITING_FOR_GIL;
        };
        if (ours(s) && starting(s.state)) {
            s = wait_for_status(
                pid, loaded->status_address,
                [&](const PayloadStatus& s) { return ours(s) && !starting(s.state); },
                o.timeout, "the start of tracking", o.cancelled);
        }
        if (s.state == MEMRAY_STATE_FAILED || !ours(s)) {
            throw PayloadFailed(fmt::format("memray could not start tracking in process {}: {}", pid,
                                            s.error_text.empty() ? "unknown error" : s.error_text));
        }
        if (s.state != MEMRAY_STATE_ACTIVE) {
            throw PayloadFailed(fmt::format("tracking in process {} ended right after it began ({})",
                                            pid, state_name(s.state)));
        }
    } catch (const attach::Interrupted&) {
        // Tracking may be about to start: make sure it stops again (the control thread gives up
        // waiting for the output on its own).
        try {
            write_stop_request(pid, loaded->status_address, expected);
        } catch (const AttachError&) {
        }
        throw;
    } catch (const attach::CallTimeout&) {
        // The same when the start is slow rather than interrupted (--trace-python-allocators
        // waits for the GIL, which a thread may hold for long): it must not begin unwatched.
        try {
            write_stop_request(pid, loaded->status_address, expected);
        } catch (const AttachError&) {
        }
        throw;
    }
    AttachResult r;
    r.generation = expected;
    r.command = read_comm(pid);
    r.hijacked_tid = inj.tid;
    r.loaded_now = inj.loaded_now;
    r.via_memfd = inj.via_memfd;
    r.stopped_ms = inj.stopped_ms;
    r.active_ms = steps.elapsed_ms();
    steps.note("tracking active (generation {})", expected);
    return r;
}

}  // namespace

namespace {

// A thread that is stopped (by a signal: state T, or by a debugger: state t) cannot run the
// payload's control thread's work; which one of `tids` is, and how.
struct StoppedThread {
    pid_t tid = 0;
    char state = 0;
};
StoppedThread first_stopped(pid_t pid, std::initializer_list<pid_t> tids) {
    for (pid_t tid : tids) {
        if (tid <= 0) continue;
        char state = attach::thread_state(pid, tid);
        if (state == 'T' || state == 't') return {tid, state};
    }
    return {};
}

std::string stopped_text(pid_t pid, const StoppedThread& s) {
    std::string who = s.tid == pid ? fmt::format("process {}", pid)
                                   : fmt::format("memray's control thread {} in process {}", s.tid, pid);
    return fmt::format("{} is stopped ({})", who,
                       s.state == 'T' ? "state T" : "state t: a debugger holds it");
}

std::string resume_hint(pid_t pid, const StoppedThread& s) {
    return s.state == 'T' ? fmt::format("kill -CONT {}", pid) : "let the debugger continue it";
}

}  // namespace

DetachResult detach_payload(pid_t pid, std::chrono::milliseconds timeout, bool verbose,
                            const std::function<bool()>& cancelled) {
    Steps steps(verbose);
    if (::kill(pid, 0) != 0 && errno == ESRCH)
        throw attach::NoSuchProcess(fmt::format("no process with pid {}: check the pid (ps -p {})", pid, pid));
    // Reading the payload's status needs the same rights as attach: say so in attach's words.
    try {
        attach::check_trace_permission(pid, "detach from");
    } catch (const attach::NoSuchProcess&) {
        throw attach::NoSuchProcess(fmt::format("no process with pid {}: check the pid (ps -p {})", pid, pid));
    }
    std::vector<attach::Mapping> maps;
    try {
        maps = attach::read_maps(pid);
    } catch (const attach::NoSuchProcess&) {
        throw attach::NoSuchProcess(fmt::format("no process with pid {}: check the pid (ps -p {})", pid, pid));
    }
    auto loaded = find_loaded_payload(pid, maps);
    if (!loaded) throw NotAttached(fmt::format("{} (process {})", k_detach_hint, pid));
    PayloadStatus s = read_status(pid, loaded->status_address);
    steps.note("payload state in process {}: {} (generation {})", pid, state_name(s.state),
               s.generation);
    if (!s.busy()) throw NotAttached(fmt::format("{} (process {})", k_detach_hint, pid));
    // A stopped process cannot finish its capture: say what to do instead of waiting for it.
    StoppedThread stopped = first_stopped(pid, {pid});
    if (stopped.tid != 0) {
        throw AttachError(fmt::format("{}: resume it first ({}), then run 'memray detach {}' again; "
                                      "tracking goes on until then",
                                      stopped_text(pid, stopped), resume_hint(pid, stopped), pid));
    }
    uint64_t generation = s.generation;
    write_stop_request(pid, loaded->status_address, generation);
    double requested = steps.elapsed_ms();
    steps.note("stop requested");
    std::string output = s.output;
    auto last_look = clock::now();
    auto give_up = [&] {
        if (cancelled && cancelled()) return true;
        // Stopped after the request was written (or only the control thread is): the request
        // stays, and the payload acts on it when it runs again.
        if (clock::now() - last_look < std::chrono::milliseconds(10)) return false;
        last_look = clock::now();
        StoppedThread now = first_stopped(pid, {pid, pid_t(s.control_tid)});
        if (now.tid == 0) return false;
        throw AttachError(fmt::format(
            "{}: the stop request is left in place; tracking ends and {} is written when it "
            "resumes ({})",
            stopped_text(pid, now), output.empty() ? std::string("the capture") : output,
            resume_hint(pid, now)));
    };
    s = wait_for_status(
        pid, loaded->status_address,
        [&](const PayloadStatus& st) {
            return st.generation != generation || st.state == MEMRAY_STATE_STOPPED ||
                   st.state == MEMRAY_STATE_FAILED;
        },
        timeout, "the end of tracking", give_up);
    DetachResult r;
    r.output = s.output;
    r.error_text = s.error_text;
    r.stop_ms = steps.elapsed_ms() - requested;
    steps.note("capture finalized ({})", state_name(s.state));
    return r;
}

}  // namespace memray::inject
