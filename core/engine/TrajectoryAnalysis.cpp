#include "core/engine/TrajectoryAnalysis.h"

#include "core/engine/HostArrays.h"
#include "core/sampling/Parameterization.h"

namespace flowscope::core {

TrajectoryAnalysis analyzeTrajectory(const std::vector<torch::Tensor>& states, const std::vector<double>& times,
                                     const std::vector<double>& velocityRms) {
    TrajectoryAnalysis analysis;
    analysis.times = times;
    analysis.velocityRms = velocityRms;
    // Stacked in float32 (the whole run); each sample's projection is then done in float64.
    const torch::Tensor stacked = torch::stack(states).to(torch::kCPU, torch::kFloat32);  // [F, B, ...]
    const int64_t frames = stacked.size(0);
    const int64_t batch = stacked.size(1);
    const torch::Tensor flat = stacked.reshape({frames, batch, -1});
    const torch::Tensor final = flat[frames - 1];
    analysis.distanceToFinal.resize(frames);
    for (int64_t f = 0; f < frames; ++f) {
        analysis.distanceToFinal[f] = (flat[f] - final).to(torch::kFloat64).pow(2).mean(1).sqrt().mean().item<double>();
    }
    torch::Tensor projection = torch::zeros({batch, frames, 2}, torch::kFloat64);
    for (int64_t b = 0; b < batch; ++b) {
        const torch::Tensor sample = flat.select(1, b).to(torch::kFloat64);
        const torch::Tensor offsets = sample - sample[0];  // [F, D]
        const torch::Tensor chord = offsets[frames - 1];
        const double chordLength = chord.norm().item<double>();
        if (!(chordLength > 0.0)) continue;
        const torch::Tensor e1 = chord / chordLength;
        const torch::Tensor along = offsets.mv(e1);
        const torch::Tensor deviations = offsets - along.unsqueeze(1) * e1.unsqueeze(0);
        torch::Tensor e2 = deviations[deviations.norm(2, 1).argmax()];
        for (int i = 0; i < 8 && e2.norm().item<double>() > 0.0; ++i) {
            e2 = deviations.t().mv(deviations.mv(e2 / e2.norm()));
        }
        const double e2Norm = e2.norm().item<double>();
        projection[b].select(1, 0).copy_(along / chordLength);
        if (e2Norm > 0.0) projection[b].select(1, 1).copy_(deviations.mv(e2 / e2Norm).abs() / chordLength);
    }
    analysis.projection = toHostArray(projection);
    return analysis;
}

HostArray velocityField(Model& model, const PathPoint& p, int resolution, double extent,
                        const torch::TensorOptions& options) {
    const torch::Tensor axis = torch::linspace(-extent, extent, resolution, options);
    const auto grids = torch::meshgrid({axis, axis.flip(0)}, "xy");
    const torch::Tensor points = torch::stack({grids[0].reshape(-1), grids[1].reshape(-1)}, 1);
    const torch::Tensor data = model.denoise(points, p.alpha, p.sigma);
    return toHostArray(velocityFromData(data, points, p).reshape({resolution, resolution, 2}));
}

}  // namespace flowscope::core
