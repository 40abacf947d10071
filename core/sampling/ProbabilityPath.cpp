#include "core/sampling/ProbabilityPath.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/api/Errors.h"

namespace flowscope::core {
namespace {

double clampUnit(double t) { return std::clamp(t, 0.0, 1.0); }

// log(1 + exp(x)) without overflow.
double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

// Rectified flow / conditional OT: alpha = t, sigma = 1 - t.
class LinearPath final : public ProbabilityPath {
public:
    std::string name() const override { return "linear"; }
    double alpha(double t) const override { return t; }
    double sigma(double t) const override { return 1.0 - t; }
    double alphaDot(double) const override { return 1.0; }
    double sigmaDot(double) const override { return -1.0; }
    double timeForLambda(double l) const override {
        if (std::isinf(l)) return l > 0 ? 1.0 : 0.0;
        return clampUnit(1.0 / (1.0 + std::exp(-l)));
    }
};

// DDPM's linear beta schedule as a VP-SDE: log alpha = -s^2 (b1 - b0)/4 - s b0/2 with s = 1 - t.
class VpPath final : public ProbabilityPath {
public:
    std::string name() const override { return "vp"; }
    bool isVariancePreserving() const override { return true; }
    double alpha(double t) const override { return std::exp(logAlpha(t)); }
    // sqrt(1 - alpha^2) written with expm1 so that it stays accurate as alpha approaches 1.
    double sigma(double t) const override { return std::sqrt(-std::expm1(2.0 * logAlpha(t))); }
    double alphaDot(double t) const override {
        const double s = 1.0 - t;
        return alpha(t) * (s * (kBetaMax - kBetaMin) / 2.0 + kBetaMin / 2.0);
    }
    double sigmaDot(double t) const override { return -alpha(t) * alphaDot(t) / sigma(t); }
    double lambda(double t) const override {
        const double la = logAlpha(t);
        return la - 0.5 * std::log(-std::expm1(2.0 * la));
    }
    double timeForLambda(double l) const override {
        if (std::isinf(l)) return l > 0 ? 1.0 : 0.0;
        // alpha^2 = sigmoid(2 lambda), so log alpha = -softplus(-2 lambda)/2; then solve the
        // quadratic a s^2 + b s + c = 0 for its positive root in the cancellation-free form.
        const double c = -0.5 * softplus(-2.0 * l);
        const double a = (kBetaMax - kBetaMin) / 4.0;
        const double b = kBetaMin / 2.0;
        const double s = -2.0 * c / (b + std::sqrt(b * b - 4.0 * a * c));
        return clampUnit(1.0 - s);
    }

private:
    static constexpr double kBetaMin = 0.1;
    static constexpr double kBetaMax = 20.0;
    static double logAlpha(double t) {
        const double s = 1.0 - t;
        return -s * s * (kBetaMax - kBetaMin) / 4.0 - s * kBetaMin / 2.0;
    }
};

// Nichol and Dhariwal's cosine schedule, alpha = cos(pi/2 (s+s0)/(1+s0)) / cos(pi/2 s0/(1+s0)).
class CosinePath final : public ProbabilityPath {
public:
    std::string name() const override { return "cosine"; }
    bool isVariancePreserving() const override { return true; }
    double alpha(double t) const override { return std::max(0.0, std::cos(angle(t)) / cosAngle0()); }
    double sigma(double t) const override {
        // 1 - alpha = (cos u0 - cos u)/cos u0 = 2 sin((u+u0)/2) sin((u-u0)/2)/cos u0, exact near t = 1.
        const double u = angle(t);
        const double u0 = angle(1.0);
        const double oneMinus = 2.0 * std::sin((u + u0) / 2.0) * std::sin((u - u0) / 2.0) / cosAngle0();
        const double onePlus = 1.0 + alpha(t);
        return std::sqrt(std::max(0.0, oneMinus * onePlus));
    }
    double alphaDot(double t) const override {
        return std::numbers::pi / 2.0 / (1.0 + kS0) * std::sin(angle(t)) / cosAngle0();
    }
    double sigmaDot(double t) const override { return -alpha(t) * alphaDot(t) / sigma(t); }
    double timeForLambda(double l) const override {
        if (std::isinf(l)) return l > 0 ? 1.0 : 0.0;
        const double a = std::sqrt(1.0 / (1.0 + std::exp(-2.0 * l)));
        const double u = std::acos(std::min(1.0, a * cosAngle0()));
        const double s = u * (1.0 + kS0) * 2.0 / std::numbers::pi - kS0;
        return clampUnit(1.0 - s);
    }

private:
    static constexpr double kS0 = 0.008;
    static double angle(double t) { return std::numbers::pi / 2.0 * ((1.0 - t) + kS0) / (1.0 + kS0); }
    static double cosAngle0() { return std::cos(std::numbers::pi / 2.0 * kS0 / (1.0 + kS0)); }
};

// EDM's variance-exploding path: alpha = 1, sigma = 80 (1 - t).
class VePath final : public ProbabilityPath {
public:
    std::string name() const override { return "ve"; }
    double alpha(double) const override { return 1.0; }
    double sigma(double t) const override { return kEdmSigmaMax * (1.0 - t); }
    double alphaDot(double) const override { return 0.0; }
    double sigmaDot(double) const override { return -kEdmSigmaMax; }
    double timeForLambda(double l) const override {
        if (std::isinf(l)) return l > 0 ? 1.0 : 0.0;
        return clampUnit(1.0 - std::exp(-l) / kEdmSigmaMax);
    }
};

}  // namespace

double ProbabilityPath::lambda(double t) const { return std::log(alpha(t)) - std::log(sigma(t)); }

double ProbabilityPath::lambdaMin() const { return std::max(lambda(0.0), -std::log(kEdmSigmaMax)); }

double ProbabilityPath::lambdaMax() const { return -std::log(kEdmSigmaMin); }

const std::vector<std::string>& pathNames() {
    static const std::vector<std::string> names{"linear", "vp", "cosine", "ve"};
    return names;
}

std::unique_ptr<ProbabilityPath> makePath(std::string_view name) {
    if (name == "linear") return std::make_unique<LinearPath>();
    if (name == "vp") return std::make_unique<VpPath>();
    if (name == "cosine") return std::make_unique<CosinePath>();
    if (name == "ve") return std::make_unique<VePath>();
    throw UnknownNameError("path", name, pathNames());
}

}  // namespace flowscope::core
