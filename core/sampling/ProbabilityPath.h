#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace flowscope::core {

// alpha, sigma and their time derivatives at one t.
struct PathPoint {
    double alpha = 0.0;
    double sigma = 1.0;
    double alphaDot = 0.0;
    double sigmaDot = 0.0;
};

// A Gaussian probability path x_t = alpha(t) x_data + sigma(t) eps with t from 0 (noise) to 1 (data).
// All functions are pure and thread-safe.
class ProbabilityPath {
public:
    virtual ~ProbabilityPath() = default;

    virtual std::string name() const = 0;
    virtual double alpha(double t) const = 0;
    virtual double sigma(double t) const = 0;
    virtual double alphaDot(double t) const = 0;
    virtual double sigmaDot(double t) const = 0;

    // Log signal-to-noise ratio log(alpha/sigma); -inf where alpha = 0, +inf where sigma = 0.
    virtual double lambda(double t) const;
    // The t at which lambda(t) equals the given value, clamped to [0, 1].
    virtual double timeForLambda(double lambda) const = 0;

    // True for paths with alpha^2 + sigma^2 = 1 (needed by the `v` parameterization).
    virtual bool isVariancePreserving() const { return false; }

    PathPoint at(double t) const { return {alpha(t), sigma(t), alphaDot(t), sigmaDot(t)}; }

    // The finite log-SNR interval samplers work in. The lower end is lambda(0) or, when the path
    // starts noisier than that, the EDM maximum noise (VE-equivalent sigma/alpha = 80); the upper
    // end is the EDM minimum noise 0.002. Schedules defined in noise level use this interval, so
    // they are identical on every path.
    double lambdaMin() const;
    double lambdaMax() const;
};

constexpr double kEdmSigmaMax = 80.0;
constexpr double kEdmSigmaMin = 0.002;

std::unique_ptr<ProbabilityPath> makePath(std::string_view name);
const std::vector<std::string>& pathNames();

}  // namespace flowscope::core
