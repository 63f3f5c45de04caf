// The rules for the capture file a tool is about to write: `memray run` (the payload creates the
// file), `memray attach` (the tool creates it and hands the descriptor over), later the Python
// Tracker. One place refuses an existing file without force, a directory, a directory that cannot
// be written, and removes again only a file this run created; one wording for all of them.
// (The reporters' "File already exists, will not overwrite: PATH" is memray's reporter wording
// and lives in src/report/output_path.hpp.)
//
// `shown` is the path as the user gave it (used in messages), `path` the one to use.
#pragma once

#include <sys/types.h>

#include <ctime>
#include <string>

namespace memray::launch {

// Throws LaunchError unless the capture may be written at `path`: it does not exist (or `force`),
// it is not a directory, and its directory is writable. Before the program starts, so that a
// mistake costs nothing (the payload would only find out once the program runs).
void check_output_file(const std::string& shown, const std::string& path, bool force);

// Identity of a capture file, to tell afterwards whether this run wrote it (when something else,
// the payload, creates it). Only a non-empty regular file counts: for a device or a pipe
// (-o /dev/full) there is no telling.
class FileStamp {
  public:
    static FileStamp of(const std::string& path);
    bool exists() const { return m_exists; }
    bool same_as(const FileStamp& other) const;

  private:
    bool m_exists = false;
    dev_t m_dev = 0;
    ino_t m_ino = 0;
    off_t m_size = 0;
    struct timespec m_mtime {};
};

// A capture file this process opens for writing itself (attach hands the descriptor on). Checked
// with check_output_file, then created exclusively, or truncated with `force`. Removed again when
// destroyed before keep(), but only if this object created it: with force the path may be the
// user's (a device such as /dev/full, a file of theirs). Throws LaunchError.
class OutputFile {
  public:
    OutputFile(const std::string& shown, const std::string& path, bool force);
    ~OutputFile();
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;

    int fd() const { return m_fd; }
    bool created() const { return m_created; }
    // Someone else owns the file now (the target has its own copy of the descriptor): close
    // ours and leave the file alone.
    void keep();

  private:
    std::string m_path;
    int m_fd = -1;
    bool m_created = false;
    bool m_kept = false;
};

}  // namespace memray::launch
