// Image decoding as the folder loader does it: OpenCV within FlowScope's size limits, then the
// centre crop and resize. An accepted image must come out [3, 32, 32] in [-1, 1].
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "core/media/ImageFolder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const torch::Tensor image =
        flowscope::media::decodeImage(std::string(reinterpret_cast<const char*>(data), size), 32);
    if (image.defined()) {
        if (image.sizes().vec() != std::vector<int64_t>{3, 32, 32}) std::abort();
        if (image.min().item<float>() < -1.0f || image.max().item<float>() > 1.0f) std::abort();
    }
    return 0;
}
