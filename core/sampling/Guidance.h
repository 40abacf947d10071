#pragma once

// Guidance (DESIGN.md section 6): from a step's conditional and unconditional data predictions
// D_c and D_u, the guided prediction D the solver uses. Per sample, <a, b> and |a| run over all of
// the sample's elements (every dimension but the first).

#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include "core/sampling/ProbabilityPath.h"

namespace flowscope::core {

enum class GuidanceMethod { None, Cfg, Apg, CfgZero };

struct GuidanceSettings {
    GuidanceMethod method = GuidanceMethod::None;
    double scale = 1.0;  // w
    // The noise levels (tau, see noiseLevelCoordinate) where the method applies; D = D_c outside.
    double intervalLow = 0.0;
    double intervalHigh = 1.0;
    double rescale = 0.0;  // phi, cfg only
    double apgEta = 0.0;
    double apgMomentum = 0.0;  // beta
    double apgNorm = std::numeric_limits<double>::infinity();  // r
    int cfgZeroSteps = 0;  // K: the first K steps do not move
};

// `none`, `cfg`, `apg`, `cfg-zero`.
const std::vector<std::string>& guidanceMethodNames();
// Throws UnknownNameError listing the names.
GuidanceMethod parseGuidanceMethod(std::string_view name);
std::string toString(GuidanceMethod method);
// Throws InvalidRequestError naming the setting when a value is out of range (a scale that is not
// finite or below 0, an interval outside [0, 1] or reversed, phi outside [0, 1], ...).
void checkGuidance(const GuidanceSettings& settings);

// tau = 1 / (1 + sigma/alpha): the linear path's t at the same SNR (0 at noise, 1 at data).
double noiseLevelCoordinate(double alpha, double sigma);

// One run's guidance: holds APG's momentum between steps, so make one per run.
class Guidance {
public:
    explicit Guidance(GuidanceSettings settings);

    const GuidanceSettings& settings() const { return m_settings; }
    // Whether step `step` at `point` needs the unconditional prediction at all.
    bool needsUnconditional(const PathPoint& point, int step) const;
    // The guided data prediction at state x, `point` on the path, step index `step` (0-based).
    torch::Tensor guide(const torch::Tensor& conditional, const torch::Tensor& unconditional, const torch::Tensor& x,
                        const PathPoint& point, int step);

private:
    bool inInterval(const PathPoint& point) const;

    GuidanceSettings m_settings;
    torch::Tensor m_momentum;  // APG: per sample, like D_c
};

// The parts of guidance with closed forms, on their own (tests check them against independent
// computations): each takes [B, ...] tensors and works per sample.
torch::Tensor cfgPrediction(const torch::Tensor& conditional, const torch::Tensor& unconditional, double scale);
torch::Tensor rescaledPrediction(const torch::Tensor& guided, const torch::Tensor& conditional, double phi);
// CFG-Zero*'s optimized scale s = <v_c, v_u> / |v_u|^2 per sample ([B]; 1 where |v_u| = 0).
torch::Tensor cfgZeroScale(const torch::Tensor& conditionalVelocity, const torch::Tensor& unconditionalVelocity);

}  // namespace flowscope::core
