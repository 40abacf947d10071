#pragma once

#include <string>

#include <opencv2/core.hpp>

#include "core/media/ImageFolderLoader.h"

namespace flowscope::media {

// Decodes one image file's bytes with OpenCV, within the limits configureImageLimits() sets,
// centre-crops it to a square and resizes it (area filter when shrinking): RGB uint8,
// resolution x resolution. Empty when the bytes are not an image it can decode, or not PNG, JPEG,
// BMP, TIFF, WebP or PNM.
cv::Mat decodeSquareImage(const std::string& bytes, int resolution);

}  // namespace flowscope::media
