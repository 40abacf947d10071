#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace flowscope::core {

// Reads an IDX file of unsigned bytes (optionally gzip-compressed) straight into the memory that
// `allocate` returns for the declared shape, after checking the header. Throws std::runtime_error
// with the reason for a missing, truncated or malformed file.
void readIdxFile(const std::string& path, const std::function<uint8_t*(const std::vector<int64_t>& shape)>& allocate);

}  // namespace flowscope::core
