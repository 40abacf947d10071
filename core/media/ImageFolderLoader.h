#pragma once

// The image-folder loader without LibTorch types, for front ends that must not include LibTorch
// headers (the UI): it plugs into core::Engine as its folder loader.

#include <atomic>
#include <string>
#include <vector>

#include "core/api/Engine.h"

namespace flowscope::media {

// See loadImageFolder in ImageFolder.h: [N, 3, R, R] values in [-1, 1] as a host array.
core::HostArray loadImageFolderToHost(const std::string& folder, int resolution, std::vector<std::string>& notes,
                                      const std::atomic<bool>* cancel = nullptr);

}  // namespace flowscope::media
