#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace flowscope::core {

// SHA-256 (FIPS 180-4), for checking model files against the hashes users trust. The engine links
// nothing but LibTorch and zlib, so it carries its own.
class Sha256 {
public:
    Sha256();
    void update(std::string_view bytes);
    // The digest as 64 lowercase hex digits; the object must not be updated afterwards.
    std::string hexDigest();

private:
    void compress(const uint8_t* block);

    std::array<uint32_t, 8> m_state;
    std::array<uint8_t, 64> m_buffer{};
    size_t m_buffered = 0;
    uint64_t m_length = 0;
};

std::string sha256Hex(std::string_view bytes);
// Reads the file in blocks; throws std::runtime_error naming the file when it cannot be read.
std::string sha256OfFile(const std::string& path);

}  // namespace flowscope::core
