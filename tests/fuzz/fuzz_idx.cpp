// The IDX dataset reader (plain or gzip), through a memory file so the real path-based reader runs.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "core/io/IdxFile.h"
#include "tests/fuzz/FuzzSupport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const int fd = ::memfd_create("idx", 0);
    if (fd < 0) return 0;
    if (::write(fd, data, size) != static_cast<ssize_t>(size)) {
        ::close(fd);
        return 0;
    }
    std::vector<uint8_t> values;
    try {
        flowscope::core::readIdxFile("/proc/self/fd/" + std::to_string(fd), [&](const std::vector<int64_t>& shape) {
            size_t count = 1;
            for (int64_t dimension : shape) count *= static_cast<size_t>(dimension);
            // The header is checked before any allocation; a fuzzer input cannot carry more.
            if (count > (size_t{1} << 26)) throw std::runtime_error("larger than this fuzz target reads");
            values.resize(count);
            return values.data();
        });
    } catch (const std::runtime_error& error) {
        flowscope::fuzz::requireMessage(error);
    }
    ::close(fd);
    return 0;
}
