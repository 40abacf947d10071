#include "core/models/NetworkDenoiser.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/sampling/DeviceTransfer.h"

namespace flowscope::core {

TimeInput parseTimeInput(std::string_view name) {
    if (name == "t") return TimeInput::T;
    if (name == "sigma") return TimeInput::Sigma;
    if (name == "timestep1000") return TimeInput::Timestep1000;
    throw UnknownNameError("time input", name, timeInputNames());
}

NetworkDenoiser::NetworkDenoiser(std::string name, Forward forward, std::vector<int64_t> sampleShape,
                                 std::unique_ptr<ProbabilityPath> nativePath,
                                 Parameterization parameterization, TimeInput timeInput, bool forwardMayWriteInput)
    : m_name(std::move(name)),
      m_forward(std::move(forward)),
      m_sampleShape(std::move(sampleShape)),
      m_nativePath(std::move(nativePath)),
      m_parameterization(parameterization),
      m_timeInput(timeInput),
      m_forwardMayWriteInput(forwardMayWriteInput) {
    if (m_parameterization == Parameterization::V && !m_nativePath->isVariancePreserving()) {
        throw InvalidRequestError("prediction 'v' needs a variance-preserving native path (vp or cosine), not '" +
                                  m_nativePath->name() + "'");
    }
    // The native path's own SNR range. An epsilon network cannot give x̂0 where alpha = 0, so its
    // range starts at the working range's lower end; the upper end keeps sigma_native > 0.
    m_lambdaLow = m_parameterization == Parameterization::Epsilon ? m_nativePath->lambdaMin()
                                                                  : m_nativePath->lambda(0.0);
    m_lambdaHigh = m_nativePath->lambdaMax();
}

void NetworkDenoiser::setRowClasses(std::vector<int64_t> classes) {
    const auto count = static_cast<int64_t>(m_classNames.size());
    TORCH_CHECK(classes.empty() || count > 0, "internal: '", m_name, "' is unconditional and was given classes");
    for (const int64_t c : classes) TORCH_CHECK(c == kNullClass || (c >= 0 && c < count), "internal: class out of range");
    m_rowClasses = std::move(classes);
}

std::vector<std::string> NetworkDenoiser::takeNotes() {
    std::vector<std::string> notes(m_notes.begin(), m_notes.end());
    m_notes.clear();
    return notes;
}

NetworkDenoiser::NativeLevel NetworkDenoiser::nativeLevel(double alpha, double sigma) {
    const double lambda = alpha > 0.0 ? std::log(alpha) - std::log(sigma) : -std::numeric_limits<double>::infinity();
    double clamped = lambda;
    if (lambda < m_lambdaLow) {
        clamped = m_lambdaLow;
        // Levels the native path itself reaches are clamped only by FlowScope's own working range
        // (an epsilon network's first step on its own path): nothing the user chose, no note.
        if (lambda < m_nativePath->lambda(0.0) - 1e-9) {
            m_notes.insert("noise levels above the native '" + m_nativePath->name() +
                           "' range were clamped to its noisiest end");
        }
    } else if (lambda > m_lambdaHigh) {
        clamped = m_lambdaHigh;
        m_notes.insert("noise levels below the native '" + m_nativePath->name() +
                       "' range were clamped to its cleanest end");
    }
    NativeLevel level;
    const double nativeT = m_nativePath->timeForLambda(clamped);
    level.point = m_nativePath->at(nativeT);
    // At equal SNR, sigma_native/sigma also maps alpha to alpha_native. After a clamp the SNRs
    // differ: at the noisy end the noise term is kept (the signal there is negligible), at the
    // clean end the signal term is kept (the remaining noise is below the native range anyway).
    level.scale = clamped < lambda ? level.point.alpha / alpha : level.point.sigma / sigma;
    level.time = nativeT;
    if (m_timeInput == TimeInput::Sigma) level.time = level.point.sigma;
    if (m_timeInput == TimeInput::Timestep1000) level.time = 999.0 * (1.0 - nativeT);
    return level;
}

torch::Tensor NetworkDenoiser::runForward(const torch::Tensor& xNative, const torch::Tensor& time,
                                          const torch::Tensor& x) {
    torch::Tensor labels;
    if (!m_classNames.empty()) {
        // Every row its class, or the null class (-1) where none is set: the network's own
        // unconditional model.
        if (m_rowClasses.empty()) {
            labels = torch::full({x.size(0)}, kNullClass, torch::TensorOptions().dtype(torch::kInt64).device(x.device()));
        } else {
            TORCH_CHECK(static_cast<int64_t>(m_rowClasses.size()) == x.size(0), "internal: one class per row");
            labels = deviceIndex(m_rowClasses, x.device());
        }
    }
    const torch::Tensor output = m_forward(xNative, time, labels);
    if (output.sizes() != x.sizes()) {
        throw InvalidRequestError("model '" + m_name + "' returned shape " + c10::str(output.sizes()) +
                                  " for input " + c10::str(x.sizes()));
    }
    return output.scalar_type() == x.scalar_type() ? output : output.to(x.scalar_type());
}

bool NetworkDenoiser::unitScale(const NativeLevel& level) { return std::abs(level.scale - 1.0) <= 1e-12; }

torch::Tensor NetworkDenoiser::outputAt(const torch::Tensor& x, const NativeLevel& level, torch::Tensor* xNative) {
    // On the native path itself the scale is 1 up to the rounding of the round trip through the
    // SNR (a few ulps, more near the path's ends); multiplying by it would change x by no more
    // than that and cost an operation, unless the network needs a tensor of its own anyway.
    *xNative = unitScale(level) && !m_forwardMayWriteInput ? x : x * level.scale;
    const torch::Tensor time = torch::full({x.size(0)}, level.time, x.options());
    return runForward(*xNative, time, x);
}

torch::Tensor NetworkDenoiser::denoise(const torch::Tensor& x, double alpha, double sigma) {
    const NativeLevel level = nativeLevel(alpha, sigma);
    torch::Tensor xNative;
    const torch::Tensor output = outputAt(x, level, &xNative);
    return predictionToData(m_parameterization, output, xNative, level.point);
}

Model::Prediction NetworkDenoiser::predict(const torch::Tensor& x, const PathPoint& p) {
    const NativeLevel level = nativeLevel(p.alpha, p.sigma);
    torch::Tensor xNative;
    const torch::Tensor output = outputAt(x, level, &xNative);
    const torch::Tensor data = predictionToData(m_parameterization, output, xNative, level.point);
    return {data, velocityAlong(level, p) ? output : torch::Tensor()};
}

bool NetworkDenoiser::velocityAlong(const NativeLevel& level, const PathPoint& p) const {
    const auto close = [](double a, double b) { return std::abs(a - b) <= 1e-12 * std::max({1.0, std::abs(a), std::abs(b)}); };
    return m_parameterization == Parameterization::Velocity && unitScale(level) && close(level.point.alpha, p.alpha) &&
           close(level.point.sigma, p.sigma) && close(level.point.alphaDot, p.alphaDot) &&
           close(level.point.sigmaDot, p.sigmaDot);
}

Model::Prediction NetworkDenoiser::predictRows(const torch::Tensor& x, const std::vector<PathPoint>& points) {
    const auto [alpha, sigma] = levelsOf(points);
    Rows rows = forwardRows(x, alpha, sigma);
    std::vector<double> own;
    for (size_t b = 0; b < points.size(); ++b) own.push_back(velocityAlong(rows.levels[b], points[b]) ? 1.0 : 0.0);
    if (std::none_of(own.begin(), own.end(), [](double v) { return v != 0.0; })) return {rows.data, {}};
    if (std::all_of(own.begin(), own.end(), [](double v) { return v != 0.0; })) return {rows.data, rows.output};
    std::vector<int64_t> column(x.dim(), 1);
    column[0] = x.size(0);
    const torch::Tensor derived = velocityFromData(rows.data, x, rowPoints(points, x));
    return {rows.data, torch::where(deviceValues(own, x).reshape(column) != 0.0, rows.output, derived)};
}

torch::Tensor NetworkDenoiser::denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                                           const std::vector<double>& sigma) {
    return forwardRows(x, alpha, sigma).data;
}

NetworkDenoiser::Rows NetworkDenoiser::forwardRows(const torch::Tensor& x, const std::vector<double>& alpha,
                                                   const std::vector<double>& sigma) {
    TORCH_CHECK(static_cast<int64_t>(alpha.size()) == x.size(0) && alpha.size() == sigma.size(),
                "internal: one noise level per row");
    Rows rows;
    std::vector<PathPoint> points;
    std::vector<double> scales, times;
    for (size_t b = 0; b < alpha.size(); ++b) {
        rows.levels.push_back(nativeLevel(alpha[b], sigma[b]));
        points.push_back(rows.levels.back().point);
        scales.push_back(rows.levels.back().scale);
        times.push_back(rows.levels.back().time);
    }
    std::vector<int64_t> column(x.dim(), 1);
    column[0] = x.size(0);
    // Scales and times reach the device in one copy.
    const auto values = deviceColumns({scales, times}, x);
    const torch::Tensor xNative = x * values[0].view(column);
    const torch::Tensor& time = values[1];
    rows.output = runForward(xNative, time, x);
    rows.data = predictionToData(m_parameterization, rows.output, xNative, rowPoints(points, x));
    return rows;
}

}  // namespace flowscope::core
