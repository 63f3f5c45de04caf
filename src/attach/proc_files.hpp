// Private to src/attach: the readers of /proc. Each reads a file or a directory and never stops
// the target; what the contents mean for attaching is decided by the callers (process.cpp for
// the pre-flight checks, the Tracer for its threads).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

namespace memray::attach::proc {

// "/proc/PID/<leaf>".
std::string path(pid_t pid, const char* leaf);

// The whole file into `out`; false with `err` = errno when it cannot be opened or read.
bool read_file(const std::string& path, std::string& out, int& err);

// The value of "Key:" in a /proc status text, leading blanks dropped; "" if absent.
std::string status_field(const std::string& status, const char* key);

// The fields of a /proc stat file after "(comm) ", "" when it cannot be read.
std::string stat_fields(const std::string& path);

// The thread ids in /proc/PID/task (empty when the process is gone).
std::vector<pid_t> task_ids(pid_t pid);

// State letter of thread `tid` of `pid` (0 if it is gone).
char task_state(pid_t pid, pid_t tid);

// TracerPid of thread `tid` of `pid` (0 when untraced, -1 when it is gone).
pid_t task_tracer(pid_t pid, pid_t tid);

// True if `sig` is pending for the thread itself (SigPnd: a fault or trap it raised).
bool task_signal_pending(pid_t pid, pid_t tid, int sig);

// The parent of `pid` (0 if it cannot be read).
pid_t parent_of(pid_t pid);

// What a mapped file is, by its file name: glibc's libc, or the dynamic loader.
bool is_libc(std::string_view path);
bool is_loader(std::string_view path);

}  // namespace memray::attach::proc
