// The readers of /proc (see proc_files.hpp), and read_maps from tracer.hpp.
#include "attach/proc_files.hpp"

#include "attach/tracer.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace memray::attach {

namespace proc {

namespace {

std::string_view file_name(std::string_view path) {
    size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string path(pid_t pid, const char* leaf) {
    return "/proc/" + std::to_string(pid) + "/" + leaf;
}

bool read_file(const std::string& path, std::string& out, int& err) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        return false;
    }
    out.clear();
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            err = errno;
            ::close(fd);
            return false;
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return true;
}

std::string status_field(const std::string& status, const char* key) {
    const std::string needle = std::string(key) + ":";
    size_t at = 0;
    while (at < status.size()) {
        size_t eol = status.find('\n', at);
        if (eol == std::string::npos) eol = status.size();
        if (status.compare(at, needle.size(), needle) == 0) {
            size_t begin = status.find_first_not_of(" \t", at + needle.size());
            if (begin == std::string::npos || begin > eol) return {};
            return status.substr(begin, eol - begin);
        }
        at = eol + 1;
    }
    return {};
}

std::string stat_fields(const std::string& path) {
    std::string text;
    int err = 0;
    if (!read_file(path, text, err)) return {};
    // comm may contain spaces and parentheses, so the last ')' ends it.
    size_t paren = text.rfind(')');
    if (paren == std::string::npos || paren + 2 >= text.size()) return {};
    return text.substr(paren + 2);
}

std::vector<pid_t> task_ids(pid_t pid) {
    std::vector<pid_t> tids;
    DIR* d = ::opendir(path(pid, "task").c_str());
    if (!d) return tids;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        tids.push_back(std::atoi(e->d_name));
    }
    ::closedir(d);
    return tids;
}

char task_state(pid_t pid, pid_t tid) {
    std::string f = stat_fields(path(pid, "task/") + std::to_string(tid) + "/stat");
    return f.empty() ? 0 : f[0];
}

pid_t task_tracer(pid_t pid, pid_t tid) {
    std::string status;
    int err = 0;
    if (!read_file(path(pid, "task/") + std::to_string(tid) + "/status", status, err)) return -1;
    return static_cast<pid_t>(std::atoi(status_field(status, "TracerPid").c_str()));
}

bool task_signal_pending(pid_t pid, pid_t tid, int sig) {
    std::string status;
    int err = 0;
    if (!read_file(path(pid, "task/") + std::to_string(tid) + "/status", status, err)) return false;
    unsigned long long mask = std::strtoull(status_field(status, "SigPnd").c_str(), nullptr, 16);
    return sig >= 1 && sig <= 64 && (mask >> (sig - 1)) & 1u;
}

pid_t parent_of(pid_t pid) {
    std::string f = stat_fields(path(pid, "stat"));
    if (f.size() < 3) return 0;
    return static_cast<pid_t>(std::atoi(f.c_str() + 2));  // "S PPID ..."
}

bool is_libc(std::string_view path) {
    std::string_view name = file_name(path);
    return name.starts_with("libc.so") || name.starts_with("libc-2.");
}

bool is_loader(std::string_view path) {
    std::string_view name = file_name(path);
    return name.starts_with("ld-linux") || name.starts_with("ld-2.") || name.starts_with("ld-musl");
}

}  // namespace proc

std::vector<Mapping> read_maps(pid_t pid) {
    std::string text;
    int err = 0;
    if (!proc::read_file(proc::path(pid, "maps"), text, err)) {
        if (err == ENOENT || err == ESRCH)
            throw NoSuchProcess("no process with pid " + std::to_string(pid));
        throw AttachError("cannot read /proc/" + std::to_string(pid) + "/maps: " + strerror(err));
    }
    std::vector<Mapping> maps;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        Mapping m;
        char perms[8] = {};
        unsigned long long start, end, offset, inode;
        unsigned int major, minor;
        int consumed = 0;
        if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms,
                        &offset, &major, &minor, &inode, &consumed) < 7)
            continue;
        m.start = start;
        m.end = end;
        m.offset = offset;
        m.perms = perms;
        m.dev_major = major;
        m.dev_minor = minor;
        m.inode = inode;
        if (consumed > 0 && static_cast<size_t>(consumed) <= line.size()) m.path = line.substr(consumed);
        maps.push_back(std::move(m));
    }
    return maps;
}

}  // namespace memray::attach
