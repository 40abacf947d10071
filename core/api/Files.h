#pragma once

// What front ends write and name besides pictures, without LibTorch types: a run's arrays as
// file bytes (hand them to core/io/AtomicFile.h's FileTransaction or writeFileAtomically), and
// the bundle folder a model spec stands for.

#include <string>
#include <utility>
#include <vector>

#include "core/api/Engine.h"

namespace flowscope::core {

// NumPy .npy bytes (format 1.0, float32, C order).
std::string encodeNpyArray(const HostArray& array);
// Writes `array` as such a file, atomically. Throws std::runtime_error with the reason on failure;
// the file is then left as it was.
void writeNpyArray(const std::string& path, const HostArray& array);
// A .npy file of float32 or float64 values in C order (read only as a regular file within the
// memory limit). Throws std::runtime_error with the reason.
HostArray readNpyArray(const std::string& path);
// .safetensors bytes holding `array` as the one float32 tensor `name`, with string `metadata`.
std::string encodeSafeTensorsArray(const std::string& name, const HostArray& array,
                                   const std::vector<std::pair<std::string, std::string>>& metadata);
// The bundle folder of a `bundle:DIR` or `shipped:NAME` spec; anything else is returned as it is
// (a folder named directly). Throws std::invalid_argument, as a run would, for a shipped name that
// does not exist.
std::string bundleFolder(const std::string& specOrFolder);

}  // namespace flowscope::core
