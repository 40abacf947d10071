// Image decoding as the folder loader does it: OpenCV within FlowScope's size limits, then the
// centre crop and resize. An accepted image must come out 32 x 32 RGB.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/media/ImageDecoder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const cv::Mat image =
        flowscope::media::decodeSquareImage(std::string(reinterpret_cast<const char*>(data), size), 32);
    if (!image.empty() && (image.rows != 32 || image.cols != 32 || image.type() != CV_8UC3)) std::abort();
    return 0;
}
