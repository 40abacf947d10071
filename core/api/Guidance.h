#pragma once

// Guidance settings (DESIGN.md section 6) without LibTorch: what a request asks of a guided run.
// The tensor side is core/sampling/Guidance.h.

#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace flowscope::core {

enum class GuidanceMethod { None, Cfg, Apg, CfgZero };

struct GuidanceSettings {
    GuidanceMethod method = GuidanceMethod::None;
    double scale = 1.0;  // w: 1 is the conditional model, 0 the unconditional one
    // The noise levels (tau = 1 / (1 + sigma/alpha), the linear path's t at the same SNR) where the
    // method applies; D = D_c outside.
    double intervalLow = 0.0;
    double intervalHigh = 1.0;
    double rescale = 0.0;  // phi, cfg only
    double apgEta = 0.0;
    double apgMomentum = 0.0;                                   // beta
    double apgNorm = std::numeric_limits<double>::infinity();  // r; infinity: no threshold
    int cfgZeroSteps = 0;  // K: the first K steps do not move

    // Whether any step needs the unconditional prediction (otherwise the run is the conditional
    // model's: w = 1, or no method).
    bool guides() const;
    bool operator==(const GuidanceSettings&) const = default;
};

// `none`, `cfg`, `apg`, `cfg-zero`.
const std::vector<std::string>& guidanceMethodNames();
// Throws UnknownNameError listing the names.
GuidanceMethod parseGuidanceMethod(std::string_view name);
std::string toString(GuidanceMethod method);
// Throws InvalidRequestError naming the option when a value is out of range: a scale that is not
// finite or below 0, an interval outside [0, 1] or reversed, phi outside [0, 1], an APG momentum
// outside [0, 1) or a threshold that is not above 0, a negative step count.
void checkGuidance(const GuidanceSettings& settings);

}  // namespace flowscope::core
