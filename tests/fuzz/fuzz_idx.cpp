// The IDX dataset reader (plain or gzip), through a memory file so the real path-based reader runs.
#include <cstdint>
#include <stdexcept>
#include <string>

#include <sys/mman.h>
#include <unistd.h>

#include <torch/torch.h>

#include "core/Datasets.h"
#include "tests/fuzz/FuzzSupport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const int fd = ::memfd_create("idx", 0);
    if (fd < 0) return 0;
    if (::write(fd, data, size) != static_cast<ssize_t>(size)) {
        ::close(fd);
        return 0;
    }
    try {
        const torch::Tensor values = flowscope::core::readIdx("/proc/self/fd/" + std::to_string(fd));
        if (values.scalar_type() != torch::kUInt8) std::abort();
    } catch (const std::runtime_error& error) {
        flowscope::fuzz::requireMessage(error);
    }
    ::close(fd);
    return 0;
}
