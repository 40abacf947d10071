#pragma once

// The fixed-step solvers' updates (DESIGN.md section 3), written once for a single run, where a
// step's coefficients are numbers, and for a sweep's lanes (core/Lanes), where they are columns
// with a value per row. Both go through the same operations in the same order, so a lane
// reproduces its own run.
//
// A step size is passed as a callable `h(c, d)` that gives c h / d (computed in double as
// (c * h) / d) in the form that multiplies a state: a double, or a column tensor.

#include <cmath>
#include <optional>
#include <string_view>

#include <torch/torch.h>

#include "core/ProbabilityPath.h"

namespace flowscope::core::steps {

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
            return x + h(1.0, 1.0) * k1;
        case RungeKutta::Heun: {
            const torch::Tensor predictor = x + h(1.0, 1.0) * k1;
            const torch::Tensor end = velocityAt(predictor, 1.0);
            return x + h(0.5, 1.0) * (k1 + end);
        }
        case RungeKutta::Midpoint: {
            const torch::Tensor middle = velocityAt(x + h(0.5, 1.0) * k1, 0.5);
            return x + h(1.0, 1.0) * middle;
        }
        case RungeKutta::Rk4: {
            const torch::Tensor k2 = velocityAt(x + h(0.5, 1.0) * k1, 0.5);
            const torch::Tensor k3 = velocityAt(x + h(0.5, 1.0) * k2, 0.5);
            const torch::Tensor k4 = velocityAt(x + h(1.0, 1.0) * k3, 1.0);
            return x + h(1.0, 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4);
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
    return ratio * x - weight * data;
}

// DPM-Solver++(2M)'s weight of the previous x̂0: D = (1 + w) D_i - w D_{i-1}, w = 1/(2r),
// r = h_{i-1}/h. 0 when the previous step was infinitely long.
inline double secondOrderWeight(double previousH, double h) { return 1.0 / (2.0 * (previousH / h)); }

}  // namespace flowscope::core::steps
