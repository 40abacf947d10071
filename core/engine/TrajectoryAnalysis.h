#pragma once

// The geometry of a run for the window's charts (DESIGN.md section 5) and the velocity field of
// 2-D models: computed from recorded states, never counted as model evaluations of the run.

#include <vector>

#include <torch/torch.h>

#include "core/api/Engine.h"
#include "core/sampling/Model.h"
#include "core/sampling/ProbabilityPath.h"

namespace flowscope::core {

// Distances to the final state and each sample's trajectory in the plane of its chord and its
// main deviation (the leading direction of the deviations, by power iteration).
TrajectoryAnalysis analyzeTrajectory(const std::vector<torch::Tensor>& states, const std::vector<double>& times,
                                     const std::vector<double>& velocityRms);

// Velocities of the model on a res x res grid over [-extent, extent]^2 at one point of the path.
HostArray velocityField(Model& model, const PathPoint& p, int resolution, double extent,
                        const torch::TensorOptions& options);

}  // namespace flowscope::core
