#include "core/engine/FrameStager.h"

namespace flowscope::core {

torch::Tensor fitForPreview(const torch::Tensor& images, int size) {
    if (size <= 0 || images.dim() != 4 || (images.size(2) <= size && images.size(3) <= size)) return images;
    const int64_t factor = (std::max(images.size(2), images.size(3)) + size - 1) / size;
    namespace F = torch::nn::functional;
    return F::interpolate(images, F::InterpolateFuncOptions()
                                      .size(std::vector<int64_t>{std::max<int64_t>(1, images.size(2) / factor),
                                                                 std::max<int64_t>(1, images.size(3) / factor)})
                                      .mode(torch::kArea));
}

}  // namespace flowscope::core
