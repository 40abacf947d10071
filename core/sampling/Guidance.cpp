#include "core/sampling/Guidance.h"

#include <cmath>
#include <utility>

#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/sampling/Parameterization.h"

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

// x̂0 from a velocity v = alpha' D + sigma' (x - alpha D) / sigma (DESIGN.md section 3).
torch::Tensor dataOfVelocity(const torch::Tensor& velocity, const torch::Tensor& x, const PathPoint& p) {
    return (p.sigma * velocity - p.sigmaDot * x) / (p.alphaDot * p.sigma - p.sigmaDot * p.alpha);
}

}  // namespace

double noiseLevelCoordinate(double alpha, double sigma) {
    if (sigma <= 0.0) return 1.0;
    if (alpha <= 0.0) return 0.0;
    // 1 / (1 + sigma/alpha) written as alpha / (alpha + sigma): on the linear path alpha + sigma
    // rounds to 1, so tau is t itself and an interval's ends fall exactly on the grid's times.
    return alpha / (alpha + sigma);
}

Guidance::Guidance(GuidanceSettings settings) : m_settings(settings) { checkGuidance(m_settings); }

bool Guidance::inInterval(const PathPoint& point) const {
    const double tau = noiseLevelCoordinate(point.alpha, point.sigma);
    return tau >= m_settings.intervalLow && tau <= m_settings.intervalHigh;
}

bool Guidance::zeroed(int step) const {
    return m_settings.method == GuidanceMethod::CfgZero && step < m_settings.cfgZeroSteps;
}

bool Guidance::needsUnconditional(const PathPoint& point, int step) const {
    if (m_settings.method == GuidanceMethod::None || zeroed(step)) return false;
    // w = 1 is the conditional model itself, for every method (APG: D = D_c + 0).
    return m_settings.scale != 1.0 && inInterval(point);
}

void Guidance::restart() { m_momentum = torch::Tensor(); }

torch::Tensor Guidance::guide(const torch::Tensor& conditional, const torch::Tensor& unconditional, const torch::Tensor& x,
                              const PathPoint& point, int step, bool advance) {
    const GuidanceSettings& s = m_settings;
    // The state does not move: v = 0, as x̂0 by the velocity conversion.
    if (zeroed(step)) return dataOfVelocity(torch::zeros_like(x), x, point);
    if (!needsUnconditional(point, step)) return conditional;
    switch (s.method) {
        case GuidanceMethod::Cfg: {
            const torch::Tensor guided = cfgPrediction(conditional, unconditional, s.scale);
            return s.rescale > 0.0 ? rescaledPrediction(guided, conditional, s.rescale) : guided;
        }
        case GuidanceMethod::Apg: {
            const torch::Tensor delta = conditional - unconditional;
            // A look at the field (other points than the run's) sees the step without momentum.
            torch::Tensor update = advance && m_momentum.defined() ? delta + s.apgMomentum * m_momentum : delta;
            if (advance) m_momentum = update;
            if (std::isfinite(s.apgNorm)) {
                const torch::Tensor norm = flat(update).norm(2, 1);
                update = update * column(torch::clamp_max(s.apgNorm / norm.clamp_min(1e-30), 1.0), update);
            }
            const torch::Tensor along =
                column(sampleDot(update, conditional) / sampleDot(conditional, conditional).clamp_min(1e-30), update);
            const torch::Tensor parallel = along * conditional;
            const torch::Tensor orthogonal = update - parallel;
            return conditional + (s.scale - 1.0) * (orthogonal + s.apgEta * parallel);
        }
        case GuidanceMethod::CfgZero: {
            const torch::Tensor vc = velocityFromData(conditional, x, point);
            const torch::Tensor vu = velocityFromData(unconditional, x, point);
            const torch::Tensor optimized = column(cfgZeroScale(vc, vu), vu);
            return dataOfVelocity(optimized * vu + s.scale * (vc - optimized * vu), x, point);
        }
        case GuidanceMethod::None: break;
    }
    return conditional;
}

GuidedModel::GuidedModel(std::shared_ptr<Model> model, int64_t classIndex, GuidanceSettings settings,
                         const ProbabilityPath& path)
    : m_model(std::move(model)), m_class(classIndex), m_guidance(settings), m_path(path) {
    TORCH_CHECK(m_model->isConditional(), "internal: guidance needs a conditional model");
}

void GuidedModel::setStep(int step) {
    // A new run starts again at step 0: APG's momentum starts from 0 with it.
    if (step < m_step) m_guidance.restart();
    m_step = step;
}

Model::Prediction GuidedModel::guided(const torch::Tensor& x, const PathPoint& point, bool advance) {
    const int64_t rows = x.size(0);
    const bool both = m_guidance.needsUnconditional(point, m_step);
    std::vector<int64_t> classes = m_rowClasses.empty() ? std::vector<int64_t>(static_cast<size_t>(rows), m_class) : m_rowClasses;
    TORCH_CHECK(static_cast<int64_t>(classes.size()) == rows, "internal: one class per row");
    if (both) classes.resize(static_cast<size_t>(2 * rows), kNullClass);
    m_model->setRowClasses(std::move(classes));
    if (advance) ++m_forwardPasses;  // a look at the field is not part of the run
    Prediction out;
    try {
        out = m_model->predict(both ? torch::cat({x, x}) : x, point);
    } catch (...) {
        m_model->setRowClasses({});
        throw;
    }
    m_model->setRowClasses({});
    if (!both && !m_guidance.zeroed(m_step)) return out;  // the conditional model's own prediction
    const torch::Tensor conditional = both ? out.data.narrow(0, 0, rows) : out.data;
    const torch::Tensor unconditional = both ? out.data.narrow(0, rows, rows) : torch::Tensor();
    return {m_guidance.guide(conditional, unconditional, x, point, m_step, advance), {}};
}

torch::Tensor GuidedModel::denoise(const torch::Tensor& x, double alpha, double sigma) {
    // Display only (a 2-D view's velocity field): APG's momentum stays as the run left it.
    const double t = m_path.timeForLambda(std::log(alpha / sigma));
    return guided(x, m_path.at(t), false).data;
}

Model::Prediction GuidedModel::predict(const torch::Tensor& x, const PathPoint& p) { return guided(x, p, true); }

Model::Prediction GuidedModel::predictRows(const torch::Tensor& x, const std::vector<PathPoint>& points) {
    // Guided runs take their steps alone (a sweep does not batch their cells): one level per call.
    for (const PathPoint& p : points) {
        TORCH_CHECK(p.alpha == points.front().alpha && p.sigma == points.front().sigma,
                    "internal: a guided model evaluates one noise level per call");
    }
    return predict(x, points.front());
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
    const torch::Tensor safe = torch::where(zero, torch::ones_like(squared), squared);
    return torch::where(zero, torch::ones_like(squared), sampleDot(conditionalVelocity, unconditionalVelocity) / safe);
}

}  // namespace flowscope::core
