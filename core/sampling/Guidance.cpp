#include "core/sampling/Guidance.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "core/api/Errors.h"

namespace flowscope::core {
namespace {

// A per-sample [B] quantity as a column that broadcasts over x's other dimensions.
torch::Tensor column(const torch::Tensor& perSample, const torch::Tensor& like) {
    std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
    shape[0] = like.size(0);
    return perSample.reshape(shape);
}

torch::Tensor flat(const torch::Tensor& x) { return x.reshape({x.size(0), -1}); }

// <a, b> per sample.
torch::Tensor sampleDot(const torch::Tensor& a, const torch::Tensor& b) { return (flat(a) * flat(b)).sum(1); }

// The standard deviation of each sample's elements (population).
torch::Tensor sampleStd(const torch::Tensor& x) { return flat(x).std(1, /*unbiased=*/false); }

// v = alpha' D + sigma' (x - alpha D) / sigma, and the reverse (DESIGN.md section 3).
torch::Tensor velocityOf(const torch::Tensor& data, const torch::Tensor& x, const PathPoint& p) {
    return p.alphaDot * data + p.sigmaDot * (x - p.alpha * data) / p.sigma;
}
torch::Tensor dataOfVelocity(const torch::Tensor& velocity, const torch::Tensor& x, const PathPoint& p) {
    return (p.sigma * velocity - p.sigmaDot * x) / (p.alphaDot * p.sigma - p.sigmaDot * p.alpha);
}

}  // namespace

const std::vector<std::string>& guidanceMethodNames() {
    static const std::vector<std::string> names{"none", "cfg", "apg", "cfg-zero"};
    return names;
}

GuidanceMethod parseGuidanceMethod(std::string_view name) {
    const auto& names = guidanceMethodNames();
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) throw UnknownNameError("guidance", name, names);
    return static_cast<GuidanceMethod>(it - names.begin());
}

std::string toString(GuidanceMethod method) { return guidanceMethodNames().at(static_cast<size_t>(method)); }

void checkGuidance(const GuidanceSettings& s) {
    if (!std::isfinite(s.scale) || s.scale < 0.0) {
        throw InvalidRequestError("the guidance scale must be a finite number of at least 0 (got " + std::to_string(s.scale) + ")");
    }
    if (!(s.intervalLow >= 0.0 && s.intervalLow <= s.intervalHigh && s.intervalHigh <= 1.0)) {
        throw InvalidRequestError("the guidance interval LO,HI must lie in [0, 1] with LO <= HI (got " +
                                  std::to_string(s.intervalLow) + "," + std::to_string(s.intervalHigh) + ")");
    }
    if (!(s.rescale >= 0.0 && s.rescale <= 1.0)) {
        throw InvalidRequestError("the CFG rescale phi must be in [0, 1] (got " + std::to_string(s.rescale) + ")");
    }
    if (!std::isfinite(s.apgEta) || !(s.apgMomentum >= 0.0 && s.apgMomentum < 1.0) || !(s.apgNorm > 0.0)) {
        throw InvalidRequestError("APG takes a finite eta, a momentum in [0, 1) and a norm threshold above 0");
    }
    if (s.cfgZeroSteps < 0) throw InvalidRequestError("--cfg-zero-steps must be at least 0");
}

double noiseLevelCoordinate(double alpha, double sigma) {
    if (sigma <= 0.0) return 1.0;
    if (alpha <= 0.0) return 0.0;
    return 1.0 / (1.0 + sigma / alpha);
}

torch::Tensor cfgPrediction(const torch::Tensor& conditional, const torch::Tensor& unconditional, double scale) {
    return unconditional + scale * (conditional - unconditional);
}

torch::Tensor rescaledPrediction(const torch::Tensor& guided, const torch::Tensor& conditional, double phi) {
    const torch::Tensor ratio = sampleStd(conditional) / sampleStd(guided).clamp_min(1e-12);
    return phi * column(ratio, guided) * guided + (1.0 - phi) * guided;
}

torch::Tensor cfgZeroScale(const torch::Tensor& conditionalVelocity, const torch::Tensor& unconditionalVelocity) {
    const torch::Tensor squared = sampleDot(unconditionalVelocity, unconditionalVelocity);
    const torch::Tensor zero = squared == 0;
    return torch::where(zero, torch::ones_like(squared),
                        sampleDot(conditionalVelocity, unconditionalVelocity) / torch::where(zero, torch::ones_like(squared), squared));
}

Guidance::Guidance(GuidanceSettings settings) : m_settings(settings) { checkGuidance(m_settings); }

bool Guidance::inInterval(const PathPoint& point) const {
    const double tau = noiseLevelCoordinate(point.alpha, point.sigma);
    return tau >= m_settings.intervalLow && tau <= m_settings.intervalHigh;
}

bool Guidance::needsUnconditional(const PathPoint& point, int step) const {
    switch (m_settings.method) {
        case GuidanceMethod::None: return false;
        case GuidanceMethod::CfgZero:
            if (step < m_settings.cfgZeroSteps) return false;
            break;
        default: break;
    }
    // w = 1 is the conditional model itself (APG included: D = D_c when w = 1).
    return inInterval(point) && m_settings.scale != 1.0;
}

torch::Tensor Guidance::guide(const torch::Tensor& conditional, const torch::Tensor& unconditional, const torch::Tensor& x,
                              const PathPoint& point, int step) {
    const GuidanceSettings& s = m_settings;
    if (s.method == GuidanceMethod::CfgZero && step < s.cfgZeroSteps) {
        // The state does not move: v = 0.
        return dataOfVelocity(torch::zeros_like(x), x, point);
    }
    if (s.method == GuidanceMethod::None || !inInterval(point)) return conditional;
    switch (s.method) {
        case GuidanceMethod::Cfg: {
            const torch::Tensor guided = cfgPrediction(conditional, unconditional, s.scale);
            return s.rescale > 0.0 ? rescaledPrediction(guided, conditional, s.rescale) : guided;
        }
        case GuidanceMethod::Apg: {
            const torch::Tensor delta = conditional - unconditional;
            m_momentum = m_momentum.defined() ? delta + s.apgMomentum * m_momentum : delta.clone();
            torch::Tensor update = m_momentum;
            if (std::isfinite(s.apgNorm)) {
                const torch::Tensor norm = flat(update).norm(2, 1);
                update = update * column(torch::clamp_max(s.apgNorm / norm.clamp_min(1e-30), 1.0), update);
            }
            const torch::Tensor along = column(sampleDot(update, conditional) / sampleDot(conditional, conditional).clamp_min(1e-30), update);
            const torch::Tensor parallel = along * conditional;
            const torch::Tensor orthogonal = update - parallel;
            return conditional + (s.scale - 1.0) * (orthogonal + s.apgEta * parallel);
        }
        case GuidanceMethod::CfgZero: {
            const torch::Tensor vc = velocityOf(conditional, x, point);
            const torch::Tensor vu = velocityOf(unconditional, x, point);
            const torch::Tensor scaleColumn = column(cfgZeroScale(vc, vu), vu);
            const torch::Tensor v = scaleColumn * vu + s.scale * (vc - scaleColumn * vu);
            return dataOfVelocity(v, x, point);
        }
        case GuidanceMethod::None: break;
    }
    return conditional;
}

}  // namespace flowscope::core
