#include "launch/output_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "launch/error.hpp"

namespace memray::launch {

namespace {

[[noreturn]] void refuse_existing(const std::string& shown) {
    throw LaunchError("output file " + shown + " already exists, will not overwrite (use -f to force)");
}

[[noreturn]] void refuse_unwritable(const std::string& shown, const std::string& where, int err) {
    throw LaunchError("cannot write the output file " + shown + ": " + where + std::strerror(err));
}

}  // namespace

void check_output_file(const std::string& shown, const std::string& path, bool force) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) throw LaunchError("output " + shown + " is a directory");
        if (!force) refuse_existing(shown);
    }
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    std::string dir = parent.empty() ? std::string(1, '.') : parent.string();
    if (::access(dir.c_str(), W_OK) != 0) refuse_unwritable(shown, dir + ": ", errno);
}

FileStamp FileStamp::of(const std::string& path) {
    FileStamp s;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return s;
    s.m_exists = true;
    s.m_dev = st.st_dev;
    s.m_ino = st.st_ino;
    s.m_size = st.st_size;
    s.m_mtime = st.st_mtim;
    return s;
}

bool FileStamp::same_as(const FileStamp& o) const {
    return m_exists == o.m_exists && m_dev == o.m_dev && m_ino == o.m_ino && m_size == o.m_size &&
           m_mtime.tv_sec == o.m_mtime.tv_sec && m_mtime.tv_nsec == o.m_mtime.tv_nsec;
}

OutputFile::OutputFile(const std::string& shown, const std::string& path, bool force)
    : m_path(path) {
    check_output_file(shown, path, force);
    // Exclusive first even with force: only then do we know whether the file is ours to remove.
    m_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    m_created = m_fd >= 0;
    if (m_fd < 0 && errno == EEXIST && force)
        m_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (m_fd < 0) {
        int err = errno;
        if (err == EEXIST) refuse_existing(shown);  // appeared since the check
        refuse_unwritable(shown, "", err);
    }
}

OutputFile::~OutputFile() {
    if (m_fd >= 0) ::close(m_fd);
    if (!m_kept && m_created) ::unlink(m_path.c_str());
}

void OutputFile::keep() {
    m_kept = true;
    if (m_fd >= 0) ::close(m_fd);
    m_fd = -1;
}

}  // namespace memray::launch
