#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flowscope::core {

// NumPy .npy (format 1.0), little-endian float32, C order.
std::string encodeNpy(const std::vector<int64_t>& shape, const float* data);
void writeNpy(const std::string& path, const std::vector<int64_t>& shape, const float* data);

struct NpyArray {
    std::vector<int64_t> shape;
    std::vector<float> data;
};
// Reads float32 or float64 little-endian C-order arrays (float64 is narrowed to float32).
NpyArray readNpy(const std::string& path);

}  // namespace flowscope::core
