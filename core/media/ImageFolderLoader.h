#pragma once

// The image-folder loader without LibTorch types, for front ends that must not include LibTorch
// headers (the UI): it plugs into core::Engine as its folder loader.

#include <string>
#include <vector>

#include "core/Engine.h"

namespace flowscope::media {

// See loadImageFolder in ImageFolder.h: [N, 3, R, R] values in [-1, 1] as a host array.
core::HostArray loadImageFolderToHost(const std::string& folder, int resolution, std::vector<std::string>& notes);

// Sets OpenCV's decoder limits (image pixels, file size) before the first decode, once.
void configureImageLimits();

}  // namespace flowscope::media
