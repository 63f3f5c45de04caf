// Pre-flight checks (inspect_process): what /proc says about a process decides, before anything
// touches it, whether attach can go ahead, and with which one-line error if not.
#include "attach/tracer.hpp"

#include "attach/proc_files.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace memray::attach {

namespace {

std::string comm_of(pid_t pid) {
    std::string comm;
    int err = 0;
    if (!proc::read_file(proc::path(pid, "comm"), comm, err)) return "?";
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    return comm;
}

bool have_cap_sys_ptrace() {
    std::string status;
    int err = 0;
    if (!proc::read_file("/proc/self/status", status, err)) return geteuid() == 0;
    std::string caps = proc::status_field(status, "CapEff");
    unsigned long long mask = std::strtoull(caps.c_str(), nullptr, 16);
    return (mask >> 19) & 1;  // CAP_SYS_PTRACE
}

std::string permission_hint(pid_t pid) {
    std::string scope;
    int err = 0;
    std::string hint = "run as root or with CAP_SYS_PTRACE";
    if (proc::read_file("/proc/sys/kernel/yama/ptrace_scope", scope, err)) {
        int value = std::atoi(scope.c_str());
        if (value == 3) return "ptrace is disabled on this machine (/proc/sys/kernel/yama/ptrace_scope is 3)";
        if (value >= 1)
            hint += ", or set /proc/sys/kernel/yama/ptrace_scope to 0 (it is " +
                    std::to_string(value) + ")";
    }
    (void)pid;
    return hint;
}

}  // namespace

void check_trace_permission(pid_t pid, const std::string& action) {
    // Opening /proc/PID/mem runs the kernel's ptrace access check (uid, capabilities, YAMA)
    // without attaching, so it predicts exactly whether PTRACE_SEIZE (and process_vm_readv)
    // will be allowed.
    int mem = ::open(proc::path(pid, "mem").c_str(), O_RDONLY | O_CLOEXEC);
    if (mem >= 0) {
        ::close(mem);
        return;
    }
    int e = errno;
    if (e == ENOENT || e == ESRCH) throw NoSuchProcess("no process with pid " + std::to_string(pid));
    if (e != EACCES && e != EPERM)
        throw AttachError("cannot open /proc/" + std::to_string(pid) + "/mem: " + strerror(e));
    std::string status, why;
    int err = 0;
    if (proc::read_file(proc::path(pid, "status"), status, err)) {
        auto uid = static_cast<uid_t>(std::strtoul(proc::status_field(status, "Uid").c_str(), nullptr, 10));
        if (uid != getuid() && !have_cap_sys_ptrace())
            why = " (it belongs to uid " + std::to_string(uid) + ")";
    }
    throw NotPermitted("not permitted to " + action + " process " + std::to_string(pid) + why + ": " +
                       permission_hint(pid));
}

char thread_state(pid_t pid, pid_t tid) { return proc::task_state(pid, tid); }

ProcessInfo inspect_process(pid_t pid) {
    const std::string who = "process " + std::to_string(pid);
    if (pid <= 0) throw NoSuchProcess("invalid pid " + std::to_string(pid));
    ProcessInfo info;
    info.pid = pid;

    std::string status;
    int err = 0;
    if (!proc::read_file(proc::path(pid, "status"), status, err)) {
        if (err == ENOENT || err == ESRCH)
            throw NoSuchProcess("no process with pid " + std::to_string(pid) +
                                ": check the pid (ps -p " + std::to_string(pid) + ")");
        throw AttachError("cannot read /proc/" + std::to_string(pid) + "/status: " + strerror(err));
    }
    // A thread id of another process also has a /proc entry; attach wants the process.
    pid_t tgid = std::atoi(proc::status_field(status, "Tgid").c_str());
    if (tgid != 0 && tgid != pid)
        throw AttachError(std::to_string(pid) + " is a thread of process " + std::to_string(tgid) +
                          ": use pid " + std::to_string(tgid));

    std::string state = proc::status_field(status, "State");
    info.state = state.empty() ? '?' : state[0];
    info.tracer = std::atoi(proc::status_field(status, "TracerPid").c_str());
    info.uid =
        static_cast<uid_t>(std::strtoul(proc::status_field(status, "Uid").c_str(), nullptr, 10));
    info.seccomp = std::atoi(proc::status_field(status, "Seccomp").c_str());
    {
        std::istringstream ns(proc::status_field(status, "NSpid"));
        pid_t last = pid, v;
        while (ns >> v) last = v;
        info.pid_in_namespace = last;
    }

    if (info.state == 'Z' || info.state == 'X')
        throw NoSuchProcess(who + " is exiting (state " + std::string(1, info.state) +
                            "): nothing to attach to");
    if (info.tracer != 0 && info.tracer != getpid())
        throw NotPermitted(who + " is already traced by process " + std::to_string(info.tracer) +
                           " (" + comm_of(info.tracer) + "): detach that debugger first");
    if (info.state == 'T' || info.state == 't')
        throw AttachError(who + " is stopped (state " + std::string(1, info.state) +
                          "): resume it first with kill -CONT " + std::to_string(pid));

    check_trace_permission(pid, "trace");

    char exe[4096];
    ssize_t n = ::readlink(proc::path(pid, "exe").c_str(), exe, sizeof exe - 1);
    if (n > 0) info.exe.assign(exe, static_cast<size_t>(n));

    // ELF class from the executable as the target sees it (works across mount namespaces).
    int fd = ::open(proc::path(pid, "exe").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        unsigned char ident[EI_NIDENT] = {};
        if (::pread(fd, ident, sizeof ident, 0) == EI_NIDENT && std::memcmp(ident, ELFMAG, SELFMAG) == 0)
            info.elf64 = ident[EI_CLASS] == ELFCLASS64;
        ::close(fd);
    }
    if (!info.elf64)
        throw AttachError(who + " (" + info.exe + ") is a 32-bit program: 32-bit processes are not supported");

    struct stat self_ns{}, target_ns{};
    if (::stat("/proc/self/ns/mnt", &self_ns) == 0 && ::stat(proc::path(pid, "ns/mnt").c_str(), &target_ns) == 0)
        info.same_mount_namespace = self_ns.st_ino == target_ns.st_ino && self_ns.st_dev == target_ns.st_dev;

    bool libc = false;
    for (const Mapping& m : read_maps(pid)) {
        if (proc::is_libc(m.path)) {
            libc = true;
            break;
        }
    }
    if (!libc)
        throw AttachError(who + " (" + info.exe +
                          ") is statically linked or not using glibc: cannot load the profiler");
    return info;
}

}  // namespace memray::attach
