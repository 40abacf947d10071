#include "core/media/ImageDecoder.h"

#include <algorithm>
#include <cctype>
#include <string_view>
#include <cstdlib>
#include <mutex>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace flowscope::media {
namespace {

constexpr size_t kMaxFileBytes = 256ull << 20;

// Only the formats a folder of training images holds reach OpenCV: PNG, JPEG, BMP, TIFF, WebP and
// PNM, recognised by the same signatures OpenCV's own decoders check. OpenCV picks the first
// decoder whose signature matches, and these come before the exotic ones, so bytes never reach
// e.g. its DICOM reader (GDCM), which aborts the process on some malformed files.
bool isSupportedImage(const std::string& bytes) {
    auto startsWith = [&](std::string_view prefix, size_t offset = 0) {
        return bytes.size() >= offset + prefix.size() && bytes.compare(offset, prefix.size(), prefix) == 0;
    };
    // A file whose own decoder's stricter check fails falls through to the next decoders: never
    // let it reach the DICOM reader, whatever it starts with.
    if (startsWith("DICM", 128)) return false;
    if (startsWith("\x89PNG\r\n\x1a\n")) return true;
    if (startsWith("\xff\xd8\xff")) return true;
    if (startsWith("BM")) return true;
    if (startsWith(std::string_view("II*\0", 4)) || startsWith(std::string_view("MM\0*", 4))) return true;
    if (startsWith("RIFF") && startsWith("WEBP", 8)) return true;
    return bytes.size() >= 3 && bytes[0] == 'P' && bytes[1] >= '1' && bytes[1] <= '6' &&
           std::isspace(static_cast<unsigned char>(bytes[2]));
}

}  // namespace

void configureImageLimits() {
    static std::once_flag once;
    std::call_once(once, [] {
        // OpenCV reads these when its codecs first run: refuse images over 64 megapixels instead of
        // allocating whatever a header declares.
        setenv("OPENCV_IO_MAX_IMAGE_PIXELS", "67108864", 0);
        setenv("OPENCV_IO_MAX_IMAGE_WIDTH", "16384", 0);
        setenv("OPENCV_IO_MAX_IMAGE_HEIGHT", "16384", 0);
    });
}

cv::Mat decodeSquareImage(const std::string& bytes, int resolution) {
    configureImageLimits();
    if (bytes.empty() || bytes.size() > kMaxFileBytes || resolution < 1 || !isSupportedImage(bytes)) return {};
    cv::Mat image;
    try {
        const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
        image = cv::imdecode(buffer, cv::IMREAD_COLOR);
        if (image.empty() || image.type() != CV_8UC3) return {};
        const int side = std::min(image.cols, image.rows);
        const cv::Rect crop((image.cols - side) / 2, (image.rows - side) / 2, side, side);
        cv::Mat resized;
        cv::resize(image(crop), resized, cv::Size(resolution, resolution), 0, 0,
                   side > resolution ? cv::INTER_AREA : cv::INTER_LINEAR);
        cv::cvtColor(resized, resized, cv::COLOR_BGR2RGB);
        return resized;
    } catch (const cv::Exception&) {
        return {};
    }
}

}  // namespace flowscope::media
