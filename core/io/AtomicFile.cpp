#include "core/io/AtomicFile.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace flowscope::core {
namespace {

std::string describeErrno(int error) { return std::strerror(error); }

void writeAll(int fd, const std::string& bytes, const std::string& path) {
    size_t written = 0;
    while (written < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error("cannot write '" + path + "': " + describeErrno(errno));
        }
        written += static_cast<size_t>(n);
    }
}

// Devices, pipes and sockets: written in place, never replaced.
bool isWrittenInPlace(const std::string& path) {
    struct stat existing {};
    return ::stat(path.c_str(), &existing) == 0 && !S_ISREG(existing.st_mode) && !S_ISDIR(existing.st_mode);
}

}  // namespace

unsigned modeForReplacement(const std::string& path) {
    // An existing file keeps its permissions; a new one gets the usual 0666 less the umask.
    struct stat existing {};
    if (::stat(path.c_str(), &existing) == 0 && S_ISREG(existing.st_mode)) return existing.st_mode & 07777;
    const mode_t mask = ::umask(0);
    ::umask(mask);
    return 0666 & ~mask;
}

std::string resolveLinks(const std::string& requested) {
    namespace fs = std::filesystem;
    fs::path resolved(requested);
    std::error_code linkError;
    for (int hops = 0; fs::is_symlink(resolved, linkError); ++hops) {
        if (hops == 40) throw std::runtime_error("cannot write '" + requested + "': too many levels of symbolic links");
        const fs::path next = fs::read_symlink(resolved, linkError);
        if (linkError) throw std::runtime_error("cannot write '" + requested + "': " + linkError.message());
        resolved = next.is_absolute() ? next : resolved.parent_path() / next;
    }
    return resolved.string();
}

FileTransaction::~FileTransaction() {
    for (const auto& file : m_files) {
        if (!file.temporary.empty()) ::unlink(file.temporary.c_str());
    }
}

void FileTransaction::add(const std::string& requested, const std::string& bytes) {
    namespace fs = std::filesystem;
    // A device, pipe or socket (/dev/null, /dev/stdout, a FIFO), also through links, is written
    // in place at commit: renaming a regular file over it would destroy it, and whoever reads it
    // expects the stream.
    if (isWrittenInPlace(requested)) {
        m_files.push_back({requested, requested, {}, bytes});
        return;
    }
    // A symbolic link to a file is written through, as an editor saves: the file it names gets
    // the new contents and the link stays (renaming over the link would replace it by a plain
    // file). A dangling link makes the file it names.
    const std::string path = resolveLinks(requested);
    const std::string label = "'" + requested + "'" + (path != requested ? " (a link to '" + path + "')" : std::string());
    const fs::path target(path);
    const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) {
        throw std::runtime_error("cannot write " + label + ": the folder '" + folder.string() + "' " +
                                 (ec && ec != std::errc::no_such_file_or_directory ? "cannot be reached: " + ec.message()
                                                                                  : std::string("does not exist")));
    }
    if (fs::is_directory(target, ec)) {
        throw std::runtime_error("cannot write " + label + ": it is a folder");
    }
    std::string temporary = folder.string();
    temporary.append("/.").append(target.filename().string()).append(".XXXXXX");
    const int fd = ::mkstemp(temporary.data());
    if (fd < 0) {
        throw std::runtime_error("cannot write " + label + ": " + describeErrno(errno));
    }
    try {
        writeAll(fd, bytes, path);
        if (::fsync(fd) != 0) throw std::runtime_error("cannot write " + label + ": " + describeErrno(errno));
        ::fchmod(fd, modeForReplacement(path));
    } catch (...) {
        ::close(fd);
        ::unlink(temporary.c_str());
        throw;
    }
    if (::close(fd) != 0) {
        const int error = errno;
        ::unlink(temporary.c_str());
        throw std::runtime_error("cannot write " + label + ": " + describeErrno(error));
    }
    m_files.push_back({requested, path, temporary, {}});
}

void FileTransaction::commit() {
    // Streams first: they are the writes that can still fail (a full device), and until the
    // renames below no file has changed.
    for (auto& file : m_files) {
        if (!file.temporary.empty()) continue;
        const int fd = ::open(file.path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) throw std::runtime_error("cannot write '" + file.requested + "': " + describeErrno(errno));
        try {
            writeAll(fd, file.bytes, file.requested);
        } catch (...) {
            ::close(fd);
            throw;
        }
        ::close(fd);
    }
    for (auto& file : m_files) {
        if (file.temporary.empty()) continue;
        if (std::rename(file.temporary.c_str(), file.path.c_str()) != 0) {
            throw std::runtime_error("cannot write '" + file.requested + "': " + describeErrno(errno));
        }
        file.temporary.clear();
    }
    m_files.clear();
}

void checkCanWrite(const std::string& requested) {
    namespace fs = std::filesystem;
    if (isWrittenInPlace(requested)) return;
    const std::string path = resolveLinks(requested);
    const fs::path target(path);
    const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
    // The temporary file a write makes is the test: permissions, read-only mounts and folders
    // such as /proc that take no new files all answer it the same way.
    std::string probe = folder.string() + "/.flowscope-probe.XXXXXX";
    const int fd = ::mkstemp(probe.data());
    if (fd < 0) {
        throw std::runtime_error("cannot write '" + requested + "': the folder '" + folder.string() +
                                 "' takes no new files (" + describeErrno(errno) + ")");
    }
    ::close(fd);
    ::unlink(probe.c_str());
}

void writeFileAtomically(const std::string& path, const std::string& bytes) {
    FileTransaction transaction;
    transaction.add(path, bytes);
    transaction.commit();
}

void writeFileAtomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
    std::ostringstream buffer;
    write(buffer);
    writeFileAtomically(path, buffer.str());
}

}  // namespace flowscope::core
