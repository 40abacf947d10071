#pragma once

#include <atomic>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/media/ImageFolderLoader.h"

namespace flowscope::media {

// Loads every PNG, JPEG, WebP and BMP image in `folder` (not its sub-folders, which `notes`
// mentions), centre-cropped to a square, resized to resolution x resolution (area filter when
// shrinking) and converted to RGB: [N, 3, R, R] float32 in [-1, 1], in file-name order. Unreadable
// files (also symbolic-link loops and images above the size limits) are skipped and counted in
// `notes`; a folder without any readable image is an error that says what was found. `*cancel` is
// checked between files and throws core::CancelledError.
torch::Tensor loadImageFolder(const std::string& folder, int resolution, std::vector<std::string>& notes,
                              const std::atomic<bool>* cancel = nullptr);

// One encoded image file as loadImageFolder takes it: [3, R, R] in [-1, 1], or an undefined
// tensor when the bytes are not an image OpenCV decodes within the size limits.
torch::Tensor decodeImage(const std::string& bytes, int resolution);

}  // namespace flowscope::media
