// runPicture (core/media/ImageWriter.h) apart from the PNG code, which the settings fuzz target
// links without the engine.
#include "core/media/ImageWriter.h"

namespace flowscope::media {

cv::Mat runPicture(const std::string& model, const core::HostArray& finalImage, const core::HostArray& finalPoints,
                   const core::HostArray& trajectory) {
    if (finalImage.shape.size() == 4) {
        return makeImageGrid(finalImage, 0, finalImage.shape[2] < 64 ? 4 : 1);
    }
    const core::HostArray reference = core::Engine::referenceSamples(model, kScatterReferencePoints);
    return renderScatter(finalPoints, trajectory.shape.empty() ? nullptr : &trajectory,
                         reference.shape.empty() ? nullptr : &reference);
}

}  // namespace flowscope::media
