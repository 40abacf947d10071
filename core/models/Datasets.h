#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include "core/api/Names.h"

namespace flowscope::core {

// Where the Debian package dataset-fashion-mnist puts its IDX files. FLOWSCOPE_FASHION_MNIST_DIR
// overrides it.
std::string fashionMnistDirectory();

// Reads an IDX file (optionally gzip-compressed) of unsigned bytes: images [N, H, W] or labels [N].
// Throws std::runtime_error with the reason for a missing, truncated or malformed file.
torch::Tensor readIdx(const std::string& path);

// The first `limit` (0 = all) training or test images of Fashion-MNIST as [N, 1, 28, 28] in [-1, 1].
// A missing package is reported with the package name to install.
torch::Tensor loadFashionMnist(bool train = true, int64_t limit = 0);
// Their class labels 0..9 as int64 [N], in the same order.
// The ten class names, by label.
const std::vector<std::string>& fashionMnistClassNames();
torch::Tensor loadFashionMnistLabels(bool train = true, int64_t limit = 0);

// 2-D point clouds for the empirical denoiser: `moons`, `spiral`, `checkerboard` ([N, 2]).
// Deterministic: the same points on every machine.
torch::Tensor makePointCloud(std::string_view name, int64_t count = 2000);

// uint8 [..] images to engine space: x / 127.5 - 1.
torch::Tensor bytesToEngine(const torch::Tensor& bytes);

}  // namespace flowscope::core
