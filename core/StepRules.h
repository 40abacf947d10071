#pragma once

// The fixed-step solvers' updates (DESIGN.md section 3), written once for a single run, where a
// step's coefficients are numbers, and for a sweep's lanes (core/Lanes), where they are columns
// with a value per row. Both take the same steps with coefficients computed the same way in
// double, so a lane reproduces its own run to rounding (a number times a tensor and a column
// times a tensor are different kernels, and not always the same to the last bit).
//
// A step size is passed as a callable `h(c, d)` that gives c h / d (computed in double as
// (c * h) / d) in the form that multiplies a state: a double, or a column tensor.

#include <algorithm>
#include <cmath>
#include <optional>
#include <string_view>

#include <torch/torch.h>

#include "core/ProbabilityPath.h"

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
    return {path.sigma(tNext) / path.sigma(t), path.alpha(tNext) * std::expm1(-h), h};
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
