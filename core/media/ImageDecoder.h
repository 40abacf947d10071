#pragma once

#include <cstdint>
#include <string>

#include <opencv2/core.hpp>


namespace flowscope::media {

// The largest image FlowScope decodes: 64 megapixels (192 MB as RGB), neither side above 16384.
constexpr uint64_t kMaxImagePixels = uint64_t(1) << 26;
constexpr uint64_t kMaxImageSide = 16384;

// Whether the size an image file's header declares is within those limits; false for a header
// that cannot be read. Decoding allocates what the header declares, so this comes first.
bool imageSizeIsAcceptable(const std::string& bytes);

// Decodes one image file's bytes with OpenCV when imageSizeIsAcceptable, as they are: RGB uint8
// at the file's own size. Empty when the bytes are not PNG, JPEG, BMP, TIFF, WebP or PNM it can
// decode.
cv::Mat decodeWholeImage(const std::string& bytes);

// Decodes one image file's bytes with OpenCV when imageSizeIsAcceptable, centre-crops it to a
// square and resizes it (area filter when shrinking): RGB uint8, resolution x resolution. Empty when the bytes are not an image it can decode, or not PNG, JPEG,
// BMP, TIFF, WebP or PNM.
cv::Mat decodeSquareImage(const std::string& bytes, int resolution);

}  // namespace flowscope::media
