#include "core/io/IdxFile.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "core/io/RegularFile.h"

#if FLOWSCOPE_HAVE_ZLIB
#include <zlib.h>
#endif

namespace flowscope::core {
namespace {

uint32_t bigEndian32(const std::string& bytes, size_t offset) {
    return (uint32_t(uint8_t(bytes[offset])) << 24) | (uint32_t(uint8_t(bytes[offset + 1])) << 16) |
           (uint32_t(uint8_t(bytes[offset + 2])) << 8) | uint32_t(uint8_t(bytes[offset + 3]));
}

}  // namespace

void readIdxFile(const std::string& path, const std::function<uint8_t*(const std::vector<int64_t>& shape)>& allocate) {
    // The header first, then the payload decompressed straight into the tensor's memory. The
    // decompressed size is bounded by the header's checks below.
    checkRegularFile(path, uint64_t(1) << 34, "the IDX file");
#if FLOWSCOPE_HAVE_ZLIB
    gzFile file = gzopen(path.c_str(), "rb");
    if (!file) throw std::runtime_error("cannot open '" + path + "'");
    struct Closer {
        gzFile file;
        ~Closer() { gzclose(file); }
    } closer{file};
    gzbuffer(file, 1 << 20);
    auto readExactly = [&](void* into, size_t bytes) -> size_t {
        size_t done = 0;
        while (done < bytes) {
            const unsigned chunk = static_cast<unsigned>(std::min<size_t>(bytes - done, 1u << 30));
            const int n = gzread(file, static_cast<char*>(into) + done, chunk);
            if (n < 0) {
                int code = 0;
                throw std::runtime_error("cannot read '" + path + "': " + gzerror(file, &code));
            }
            if (n == 0) break;
            done += static_cast<size_t>(n);
        }
        return done;
    };
#else
    // An engine-only build without zlib reads uncompressed IDX files (gunzip them first).
    if (path.ends_with(".gz")) {
        throw std::runtime_error("'" + path + "' is compressed and this build has no zlib; gunzip it and set "
                                 "FLOWSCOPE_FASHION_MNIST_DIR to its folder, or rebuild with zlib");
    }
    std::FILE* file = std::fopen(path.c_str(), "rb");
    if (!file) throw std::runtime_error("cannot open '" + path + "'");
    struct Closer {
        std::FILE* file;
        ~Closer() { std::fclose(file); }
    } closer{file};
    auto readExactly = [&](void* into, size_t bytes) -> size_t { return std::fread(into, 1, bytes, file); };
#endif
    std::string header(4, '\0');
    if (readExactly(header.data(), 4) < 4) throw std::runtime_error("'" + path + "' is too short to be an IDX file");
    if (header[0] != 0 || header[1] != 0 || uint8_t(header[2]) != 0x08) {
        throw std::runtime_error("'" + path + "' is not an IDX file of unsigned bytes");
    }
    const int rank = uint8_t(header[3]);
    std::string dims(4 * size_t(std::max(rank, 0)), '\0');
    if (rank < 1 || rank > 4 || readExactly(dims.data(), dims.size()) < dims.size()) {
        throw std::runtime_error("'" + path + "' has a malformed IDX header");
    }
    std::vector<int64_t> shape;
    uint64_t count = 1;
    for (int i = 0; i < rank; ++i) {
        const uint32_t dim = bigEndian32(dims, 4 * i);
        if (dim == 0 || dim > (1u << 28)) throw std::runtime_error("'" + path + "' declares a bad dimension");
        count *= dim;
        if (count > (uint64_t(1) << 34)) throw std::runtime_error("'" + path + "' declares too many elements");
        shape.push_back(dim);
    }
    const size_t got = readExactly(allocate(shape), count);
    char extra = 0;
    if (got != count || readExactly(&extra, 1) != 0) {
        throw std::runtime_error("'" + path + "' is truncated or has trailing data (the header declares " +
                                 std::to_string(count) + " bytes of data)");
    }
}

}  // namespace flowscope::core
