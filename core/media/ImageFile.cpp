// One image file as a starting image (image to image, inversion): read as a regular file within
// the size limits, decoded at its own size, in the engine's space.
#include <opencv2/imgproc.hpp>

#include "core/api/Errors.h"
#include "core/io/RegularFile.h"
#include "core/media/ImageDecoder.h"
#include "core/media/ImageFolderLoader.h"

namespace flowscope::media {

core::HostArray readImageFile(const std::string& path, int channels, const std::atomic<bool>* cancel) {
    if (channels != 1 && channels != 3) throw core::InvalidRequestError("images have 1 or 3 channels");
    std::string bytes;
    try {
        bytes = core::readRegularFile(path, uint64_t(256) << 20, "the image", cancel);
    } catch (const core::FileReadError& error) {
        throw core::InvalidRequestError(error.what());
    }
    if (!imageSizeIsAcceptable(bytes)) {
        throw core::InvalidRequestError("'" + path + "' is not an image FlowScope reads (PNG, JPEG, BMP, TIFF, WebP or "
                                        "PNM, at most 16384 pixels a side)");
    }
    cv::Mat image = decodeWholeImage(bytes);
    if (image.empty()) throw core::InvalidRequestError("'" + path + "' could not be decoded as an image");
    if (channels == 1) cv::cvtColor(image, image, cv::COLOR_RGB2GRAY);
    core::HostArray array;
    array.shape = {1, channels, image.rows, image.cols};
    array.values.resize(static_cast<size_t>(channels) * image.rows * image.cols);
    for (int y = 0; y < image.rows; ++y) {
        const uint8_t* row = image.ptr<uint8_t>(y);
        for (int x = 0; x < image.cols; ++x) {
            for (int c = 0; c < channels; ++c) {
                // DESIGN.md, "Images": x / 127.5 - 1, channel-first.
                array.values[(static_cast<size_t>(c) * image.rows + y) * image.cols + x] =
                    float(row[x * channels + c]) / 127.5f - 1.0f;
            }
        }
    }
    return array;
}

}  // namespace flowscope::media
