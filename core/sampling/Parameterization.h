#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include "core/api/Names.h"
#include "core/sampling/ProbabilityPath.h"

namespace flowscope::core {

// What a network predicts. Conversions follow DESIGN.md section 3 ("The unified view").
enum class Parameterization { Velocity, Epsilon, Data, V };

Parameterization parseParameterization(std::string_view name);
std::string toString(Parameterization parameterization);

// Path points per row of a batch: each tensor holds one value per row, shaped [B, 1, ...] so that
// it broadcasts over a row (built by rowPoints, in the batch's dtype and device).
struct RowPoints {
    torch::Tensor alpha, sigma, alphaDot, sigmaDot;
};
RowPoints rowPoints(const std::vector<PathPoint>& points, const torch::Tensor& like);

// The data estimate x̂0 from a model output at x, evaluated at the path point p (sigma > 0).
// `v` needs a variance-preserving path (alpha^2 + sigma^2 = 1); the caller checks that.
torch::Tensor predictionToData(Parameterization parameterization, const torch::Tensor& output,
                               const torch::Tensor& x, const PathPoint& p);

// The inverse: what a perfect model of the given parameterization outputs when x̂0 is the data.
torch::Tensor dataToPrediction(Parameterization parameterization, const torch::Tensor& data,
                               const torch::Tensor& x, const PathPoint& p);

// Velocity dx/dt = alpha' x̂0 + sigma' epŝ with epŝ = (x - alpha x̂0)/sigma.
torch::Tensor velocityFromData(const torch::Tensor& data, const torch::Tensor& x, const PathPoint& p);

// The same conversions with a path point per row.
torch::Tensor predictionToData(Parameterization parameterization, const torch::Tensor& output,
                               const torch::Tensor& x, const RowPoints& p);
torch::Tensor velocityFromData(const torch::Tensor& data, const torch::Tensor& x, const RowPoints& p);

}  // namespace flowscope::core
