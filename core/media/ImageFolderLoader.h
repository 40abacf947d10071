#pragma once

// The image-folder loader (and the one-image reader) without LibTorch types, for front ends that must not include LibTorch
// headers (the UI): it plugs into core::Engine as its folder loader.

#include <atomic>
#include <string>
#include <vector>

#include "core/api/Engine.h"

namespace flowscope::media {

// See loadImageFolder in ImageFolder.h: [N, 3, R, R] values in [-1, 1] as a host array.
core::HostArray loadImageFolderToHost(const std::string& folder, int resolution, std::vector<std::string>& notes,
                                      const std::atomic<bool>* cancel = nullptr);

// One image file at its own size as [1, channels, H, W] values in [-1, 1] (channels 1: converted
// to gray; 3: RGB), for a run to start from. Read only as a regular file of at most 256 MB.
// Throws std::invalid_argument with the reason (not a regular file, not an image, too large).
core::HostArray readImageFile(const std::string& path, int channels, const std::atomic<bool>* cancel = nullptr);

}  // namespace flowscope::media
