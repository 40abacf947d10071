#pragma once

// The solvers' updates (DESIGN.md section 3), written once for a single run, where a step's
// coefficients are numbers, and for a sweep's cells (core/BatchedCells), where they are columns with a
// value per row. Both take the same steps with coefficients computed the same way in
// double, so a cell reproduces its own run to rounding (a number times a tensor and a column
// times a tensor are different kernels, and not always the same to the last bit).
//
// A step size is passed as a callable `h(c, d)` that gives c h / d (computed in double as
// (c * h) / d) in the form that multiplies a state: a double, or a column tensor.

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <torch/torch.h>

#include "core/sampling/ProbabilityPath.h"

namespace flowscope::core::steps {

// x + c y in one operation, for a coefficient that is a number or a column.
inline torch::Tensor plus(const torch::Tensor& x, double c, const torch::Tensor& y) { return torch::add(x, y, c); }
inline torch::Tensor plus(const torch::Tensor& x, const torch::Tensor& c, const torch::Tensor& y) {
    return torch::addcmul(x, c, y);
}

enum class RungeKutta { Euler, Heun, Midpoint, Rk4 };

inline std::optional<RungeKutta> rungeKuttaNamed(std::string_view name) {
    if (name == "euler") return RungeKutta::Euler;
    if (name == "heun") return RungeKutta::Heun;
    if (name == "midpoint") return RungeKutta::Midpoint;
    if (name == "rk4") return RungeKutta::Rk4;
    return std::nullopt;
}

// One explicit Runge-Kutta step on the velocity in t from x, whose velocity is k1.
// velocityAt(state, c): the velocity at `state` and time t + c h (c is 0.5 or 1).
// Heun is EDM's: an Euler predictor, then the average of the two slopes.
template <class StepSize, class VelocityAt>
torch::Tensor rungeKuttaStep(RungeKutta method, const torch::Tensor& x, const StepSize& h, const torch::Tensor& k1,
                             VelocityAt&& velocityAt) {
    switch (method) {
        case RungeKutta::Euler:
            return plus(x, h(1.0, 1.0), k1);
        case RungeKutta::Heun: {
            const torch::Tensor end = velocityAt(plus(x, h(1.0, 1.0), k1), 1.0);
            return plus(x, h(0.5, 1.0), k1 + end);
        }
        case RungeKutta::Midpoint:
            return plus(x, h(1.0, 1.0), velocityAt(plus(x, h(0.5, 1.0), k1), 0.5));
        case RungeKutta::Rk4: {
            const torch::Tensor k2 = velocityAt(plus(x, h(0.5, 1.0), k1), 0.5);
            const torch::Tensor k3 = velocityAt(plus(x, h(0.5, 1.0), k2), 0.5);
            const torch::Tensor k4 = velocityAt(plus(x, h(1.0, 1.0), k3), 1.0);
            return plus(x, h(1.0, 6.0), torch::add(torch::add(torch::add(k1, k2, 2.0), k3, 2.0), k4));
        }
    }
    throw std::logic_error("internal: unknown Runge-Kutta method");
}

// Dormand-Prince 5(4) with step-size control (dopri5), for a single run (core/sampling/Solvers.cpp) and for
// a sweep's cells, each cell with its own step size and its own accept or reject (core/sampling/BatchedCells.cpp).
// It integrates to min(t_end, 1 - kFinalGap) and finishes with one first-order step to t_end when
// that lies beyond (the last stretch to sigma = 0, where the model is never asked).
namespace dopri5 {

constexpr double kFinalGap = 1e-3;
constexpr double kFirstStep = 0.02;
constexpr int kMostRejectedInARow = 50;

// The end of the adaptive part of a run over [t, tEnd].
inline double adaptiveEnd(double tEnd) { return std::min(tEnd, 1.0 - kFinalGap); }

// The step-size factor after an accepted step with this error norm, and after a rejected one.
inline double grownStep(double error) { return std::clamp(0.9 * std::pow(std::max(error, 1e-10), -0.2), 0.2, 10.0); }
inline double shrunkStep(double error) { return std::clamp(0.9 * std::pow(error, -0.2), 0.2, 1.0); }

// Too many rejected attempts in a row near t; `remedy` says which tolerance to loosen.
inline std::runtime_error toleranceNotMet(double t, const std::string& remedy = "loosen --rtol/--atol") {
    return std::runtime_error("dopri5 could not meet its tolerance near t = " + std::to_string(t) + "; " + remedy);
}

// An error norm that is NaN or Inf means the model returned NaN or Inf (on a GPU, where the
// output is not checked at every evaluation); shrinking the step would not help.
inline void checkErrorNorm(double error, double t) {
    if (!std::isfinite(error)) {
        throw std::runtime_error("the model returned NaN or Inf near t = " + std::to_string(t) + "; the run was stopped");
    }
}

// The time reached by an accepted step from t of size h towards `end` (snapped onto it).
inline double timeAfter(double t, double h, double end) { return (end - (t + h) < 1e-12) ? end : t + h; }

template <class Evaluation>
struct Attempt {
    torch::Tensor x;      // the fifth-order solution
    torch::Tensor error;  // its difference to the fourth-order one
    Evaluation end;       // at (x, t + h): the next step's first stage (first same as last)
};

// One attempted step of size h (a number, or a column with one per row) from x, whose velocity is
// k1. evaluateAt(state, c, d): the evaluation (with its .velocity) at `state` and time t + c h / d.
template <class StepSize, class EvaluateAt>
auto attempt(const torch::Tensor& x, const StepSize& h, const torch::Tensor& k1, EvaluateAt&& evaluateAt)
    -> Attempt<decltype(evaluateAt(x, 1.0, 1.0))> {
    const auto k2 = evaluateAt(x + h * (1.0 / 5.0) * k1, 1.0, 5.0).velocity;
    const auto k3 = evaluateAt(x + h * (3.0 / 40.0 * k1 + 9.0 / 40.0 * k2), 3.0, 10.0).velocity;
    const auto k4 = evaluateAt(x + h * (44.0 / 45.0 * k1 - 56.0 / 15.0 * k2 + 32.0 / 9.0 * k3), 4.0, 5.0).velocity;
    const auto k5 = evaluateAt(x + h * (19372.0 / 6561.0 * k1 - 25360.0 / 2187.0 * k2 + 64448.0 / 6561.0 * k3 -
                                        212.0 / 729.0 * k4),
                               8.0, 9.0)
                        .velocity;
    const auto k6 = evaluateAt(x + h * (9017.0 / 3168.0 * k1 - 355.0 / 33.0 * k2 + 46732.0 / 5247.0 * k3 +
                                        49.0 / 176.0 * k4 - 5103.0 / 18656.0 * k5),
                               1.0, 1.0)
                        .velocity;
    torch::Tensor next =
        x + h * (35.0 / 384.0 * k1 + 500.0 / 1113.0 * k3 + 125.0 / 192.0 * k4 - 2187.0 / 6784.0 * k5 + 11.0 / 84.0 * k6);
    auto end = evaluateAt(next, 1.0, 1.0);
    torch::Tensor error = h * (71.0 / 57600.0 * k1 - 71.0 / 16695.0 * k3 + 71.0 / 1920.0 * k4 -
                               17253.0 / 339200.0 * k5 + 22.0 / 525.0 * k6 - 1.0 / 40.0 * end.velocity);
    return {std::move(next), std::move(error), std::move(end)};
}

// The squared scaled error per element, error / (atol + rtol max(|x|, |next|)): its mean over a
// run (or over a cell's rows) is the squared error norm, accepted at most 1.
inline torch::Tensor scaledSquaredError(const torch::Tensor& error, const torch::Tensor& x, const torch::Tensor& next,
                                        double rtol, double atol) {
    return (error / (atol + rtol * torch::maximum(x.abs(), next.abs()))).pow(2);
}

}  // namespace dopri5

// The exact solution of the probability-flow ODE over one step with x̂0 held fixed, written in
// log-SNR: x_next = (sigma_next/sigma) x - alpha_next expm1(-h) D, h = lambda_next - lambda.
// Infinite lambdas (alpha = 0 at the start, sigma = 0 at the end) give the right limits.
struct ExponentialStep {
    double ratio;   // sigma_next / sigma
    double weight;  // alpha_next expm1(-h)
    double h;       // lambda_next - lambda
};

inline ExponentialStep exponentialStep(const ProbabilityPath& path, double t, double tNext) {
    const double h = path.lambda(tNext) - path.lambda(t);
    const double ratio = path.sigma(tNext) / path.sigma(t);
    // A backward step onto alpha = 0 (inversion reaching the linear path's t = 0): the weight's
    // limit, alpha sigma_next / sigma, where 0 times an infinite expm1 would give NaN.
    if (!(path.alpha(tNext) > 0.0)) return {ratio, path.alpha(t) * ratio, h};
    return {ratio, path.alpha(tNext) * std::expm1(-h), h};
}

// ratio and weight: numbers, or columns of them.
template <class Coefficient>
torch::Tensor exponentialUpdate(const torch::Tensor& x, const Coefficient& ratio, const Coefficient& weight,
                                const torch::Tensor& data) {
    return plus(ratio * x, -weight, data);
}

// DPM-Solver++(2M)'s weight of the previous x̂0: D = (1 + w) D_i - w D_{i-1}, w = 1/(2r),
// r = h_{i-1}/h. 0 when the previous step was infinitely long.
inline double secondOrderWeight(double previousH, double h) { return 1.0 / (2.0 * (previousH / h)); }

template <class Coefficient>
torch::Tensor secondOrderData(const torch::Tensor& data, const Coefficient& weight, const torch::Tensor& previous) {
    return plus((1.0 + weight) * data, -weight, previous);
}

// The ancestral samplers' step from (x, t) to tNext > t with sigma(tNext) > 0 (the step into
// sigma = 0 lands on alpha x̂0 without noise): x̂0 = D, epŝ = (x - alpha D)/sigma, z fresh noise,
// q = s_next/s for the VE-equivalent noise s = sigma/alpha, i.e. exp(-(lambda_next - lambda)).
//  ddpm:    a draw from the Gaussian posterior q(x_next | x, x̂0), mean alpha_next D + sigma_next q
//           epŝ, variance sigma_next^2 (1 - q^2).
//  euler-a: k-diffusion's Euler ancestral (eta = 1): its Euler step in EDM's sigma on y = x/alpha,
//           from s down to s_down = s_next q, plus fresh noise s_up = s_next sqrt(1 - q^2). With
//           x̂0 held over the step the Euler step is exact, so it is the exponential step to s_down;
//           in x: alpha_next (D + s_down epŝ) + alpha_next s_up z.
// With eta = 1 the two are the same update in exact arithmetic (the known equivalence of Euler
// ancestral and DDPM); they are computed independently here and must agree to rounding.
enum class Ancestral { Ddpm, EulerAncestral };

inline std::optional<Ancestral> ancestralNamed(std::string_view name) {
    if (name == "ddpm") return Ancestral::Ddpm;
    if (name == "euler-a") return Ancestral::EulerAncestral;
    return std::nullopt;
}

struct AncestralStep {
    double alpha, sigma;  // at t
    double alphaNext;
    double epsWeight;    // ddpm: sigma_next q; euler-a: s_down
    double noiseWeight;  // ddpm: sigma_next sqrt(1 - q^2); euler-a: alpha_next s_up
};

inline AncestralStep ancestralStep(Ancestral method, const ProbabilityPath& path, double t, double tNext) {
    const PathPoint p = path.at(t);
    const double alphaNext = path.alpha(tNext);
    const double sigmaNext = path.sigma(tNext);
    const double q = std::exp(-(path.lambda(tNext) - path.lambda(t)));
    const double keep = std::sqrt(std::max(0.0, 1.0 - q * q));
    if (method == Ancestral::Ddpm) return {p.alpha, p.sigma, alphaNext, sigmaNext * q, sigmaNext * keep};
    const double sNext = sigmaNext / alphaNext;
    return {p.alpha, p.sigma, alphaNext, sNext * q, alphaNext * (sNext * keep)};
}

// The coefficients as numbers, or as columns of them.
template <class Coefficient>
torch::Tensor ancestralUpdate(Ancestral method, const torch::Tensor& x, const torch::Tensor& data,
                              const torch::Tensor& noise, const Coefficient& alpha, const Coefficient& sigma,
                              const Coefficient& alphaNext, const Coefficient& epsWeight,
                              const Coefficient& noiseWeight) {
    const torch::Tensor eps = (x - alpha * data) / sigma;
    if (method == Ancestral::Ddpm) return alphaNext * data + epsWeight * eps + noiseWeight * noise;
    return alphaNext * (data + epsWeight * eps) + noiseWeight * noise;
}

}  // namespace flowscope::core::steps
