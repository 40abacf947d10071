#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

#include "core/media/ImageFolderLoader.h"

namespace flowscope::media {

// Loads every PNG, JPEG, WebP and BMP image in `folder` (not recursive), centre-cropped to a
// square, resized to resolution x resolution (area filter when shrinking) and converted to RGB:
// [N, 3, R, R] float32 in [-1, 1], in file-name order. Unreadable files are skipped and counted in
// `notes`; a folder without any readable image is an error that says what was found.
torch::Tensor loadImageFolder(const std::string& folder, int resolution, std::vector<std::string>& notes);


}  // namespace flowscope::media
