#include "core/media/ImageDecoder.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace flowscope::media {
namespace {

constexpr size_t kMaxFileBytes = 256ull << 20;

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
    if (bytes.empty() || bytes.size() > kMaxFileBytes || resolution < 1) return {};
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
