#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "core/io/SafeTensorsFile.h"

namespace flowscope::core {

// Serializes contiguous CPU copies of the tensors, in the order given (names must be unique).
std::string encodeSafeTensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata = {});
// The values of the 256 float8 E4M3FN bytes (bias 7, no infinities, S.1111.111 is NaN, max 448),
// float32 [256], indexed by the byte.
torch::Tensor float8E4M3Values();

// Writes atomically (temporary file, then rename).
void writeSafeTensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace flowscope::core
