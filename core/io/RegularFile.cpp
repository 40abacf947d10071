#include "core/io/RegularFile.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iomanip>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/api/Errors.h"

namespace flowscope::core {
namespace {

constexpr size_t kBlockBytes = 4u << 20;

std::string kindOf(mode_t mode) {
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a pipe (FIFO)";
    if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

uint64_t checkStat(const struct stat& info, const std::string& path, uint64_t maxBytes, const std::string& what) {
    if (!S_ISREG(info.st_mode)) {
        throw FileReadError(what + " '" + path + "' is " + kindOf(info.st_mode) +
                            ", not a file FlowScope can read: give a regular file");
    }
    const auto size = static_cast<uint64_t>(info.st_size);
    if (size > maxBytes) {
        throw FileReadError(what + " '" + path + "' is " + describeBytes(double(size)) + ", more than the " +
                            describeBytes(double(maxBytes)) + " FlowScope reads for it: is it the right file?");
    }
    return size;
}

}  // namespace

std::string describeBytes(double bytes) {
    const double scale = bytes < 1e6 ? 1e3 : bytes < 1e9 ? 1e6 : 1e9;
    const double value = bytes / scale;
    // A decimal below 10 (1.4 MB), whole numbers above (503 GB, 500 kB): never an exponent.
    std::ostringstream text;
    text << std::fixed << std::setprecision(value < 10.0 ? 1 : 0) << value
         << (scale == 1e3 ? " kB" : scale == 1e6 ? " MB" : " GB");
    return text.str();
}

uint64_t memoryReadLimit() {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long pageSize = ::sysconf(_SC_PAGESIZE);
    if (pages <= 0 || pageSize <= 0) return uint64_t(1) << 34;
    return static_cast<uint64_t>(pages) * static_cast<uint64_t>(pageSize) / 2;
}

uint64_t checkRegularFile(const std::string& path, uint64_t maxBytes, const std::string& what) {
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) {
        throw FileReadError("cannot open " + what + " '" + path + "': " + std::strerror(errno));
    }
    return checkStat(info, path, maxBytes, what);
}

std::string readRegularFile(const std::string& path, uint64_t maxBytes, const std::string& what,
                            const std::atomic<bool>* cancel) {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, for ever.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw FileReadError("cannot open " + what + " '" + path + "': " + std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat info {};
    if (::fstat(fd, &info) != 0) throw FileReadError("cannot read " + what + " '" + path + "': " + std::strerror(errno));
    const uint64_t size = checkStat(info, path, maxBytes, what);
    std::string bytes(size, '\0');
    size_t done = 0;
    while (done < size) {
        if (cancel && cancel->load()) throw CancelledError();
        const ssize_t n = ::read(fd, bytes.data() + done, std::min(kBlockBytes, size - done));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw FileReadError("cannot read " + what + " '" + path + "': " + std::strerror(errno));
        }
        if (n == 0) break;  // the file shrank while we read it
        done += static_cast<size_t>(n);
    }
    bytes.resize(done);
    return bytes;
}

}  // namespace flowscope::core
