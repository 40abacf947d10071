// The solvers of DESIGN.md section 3. Each owns its loop over the time grid and reports steps to
// the SolverContext, which does the bookkeeping (frames, NFE, metrics, cancellation).
#include <algorithm>
#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "core/Errors.h"
#include "core/Sampler.h"
#include "core/StepRules.h"

namespace flowscope::core {
namespace {

using Evaluation = SolverContext::Evaluation;

bool endsAtZeroNoise(const SolverContext& context, double t) { return !(context.path().sigma(t) > 0.0); }

// The step into sigma = 0, first order in the noise level: with x̂0 held fixed the state lands on
// alpha x̂0. This is Euler's step in EDM's sigma (what EDM's Heun and k-diffusion take last) and,
// on the linear and ve paths, Euler's step in t as well. On vp and cosine, sigma ~ sqrt(1 - t)
// has an infinite slope at t = 1, where an Euler step in t would leave about half the noise.
torch::Tensor stepIntoZeroNoise(const SolverContext& context, double tNext, const torch::Tensor& data) {
    return context.path().alpha(tNext) * data;
}

// Explicit Runge-Kutta methods on the velocity in t (core/StepRules.h). The step into
// sigma = 0 uses stepIntoZeroNoise, so the model is never asked for a prediction at zero noise.
class RungeKuttaSolver final : public Solver {
public:
    RungeKuttaSolver(std::string name, steps::RungeKutta method) : m_name(std::move(name)), m_method(method) {}
    std::string name() const override { return m_name; }

    torch::Tensor integrate(SolverContext& context, torch::Tensor x) override {
        const auto& grid = context.grid();
        for (size_t i = 0; i + 1 < grid.size(); ++i) {
            const double t = grid[i];
            const double h = grid[i + 1] - t;
            const Evaluation start = context.beginStep(x, t);
            if (endsAtZeroNoise(context, grid[i + 1])) {
                x = stepIntoZeroNoise(context, grid[i + 1], start.data);
            } else {
                const auto stepSize = [h](double c, double d) { return c * h / d; };
                const auto velocityAt = [&](const torch::Tensor& state, double c) {
                    return context.evaluate(state, t + c * h).velocity;
                };
                x = steps::rungeKuttaStep(m_method, x, stepSize, start.velocity, velocityAt);
            }
            context.endStep(x, grid[i + 1]);
        }
        return x;
    }

private:
    std::string m_name;
    steps::RungeKutta m_method;
};

torch::Tensor exponentialStep(const ProbabilityPath& path, const torch::Tensor& x, double t, double tNext,
                              const torch::Tensor& data) {
    const steps::ExponentialStep step = steps::exponentialStep(path, t, tNext);
    return steps::exponentialUpdate(x, step.ratio, step.weight, data);
}

// DDIM (eta = 0): the first-order member of the DPM-Solver++ family.
class DdimSolver final : public Solver {
public:
    std::string name() const override { return "ddim"; }
    torch::Tensor integrate(SolverContext& context, torch::Tensor x) override {
        const auto& grid = context.grid();
        for (size_t i = 0; i + 1 < grid.size(); ++i) {
            const Evaluation start = context.beginStep(x, grid[i]);
            x = exponentialStep(context.path(), x, grid[i], grid[i + 1], start.data);
            context.endStep(x, grid[i + 1]);
        }
        return x;
    }
};

// DPM-Solver++(2M), as k-diffusion's sample_dpmpp_2m with a general alpha: second order from the
// previous x̂0, first order on the first step and on the last (DESIGN.md), which is the step into
// sigma = 0 unless the run stops early (--t-end).
class DpmPp2mSolver final : public Solver {
public:
    std::string name() const override { return "dpm++2m"; }
    torch::Tensor integrate(SolverContext& context, torch::Tensor x) override {
        const auto& path = context.path();
        const auto& grid = context.grid();
        torch::Tensor previousData;
        double previousH = 0.0;
        for (size_t i = 0; i + 1 < grid.size(); ++i) {
            const Evaluation start = context.beginStep(x, grid[i]);
            const steps::ExponentialStep step = steps::exponentialStep(path, grid[i], grid[i + 1]);
            torch::Tensor data = start.data;
            const bool lastStep = i + 2 == grid.size();
            if (previousData.defined() && !lastStep) {
                const double weight = steps::secondOrderWeight(previousH, step.h);
                data = (1.0 + weight) * start.data - weight * previousData;
            }
            x = steps::exponentialUpdate(x, step.ratio, step.weight, data);
            previousData = start.data;
            previousH = step.h;
            context.endStep(x, grid[i + 1]);
        }
        return x;
    }
};

// s_next/s for VE-equivalent noise s = sigma/alpha, i.e. exp(-(lambda_next - lambda)); 0 when the
// step starts at alpha = 0.
double noiseRatio(const ProbabilityPath& path, double t, double tNext) {
    return std::exp(-(path.lambda(tNext) - path.lambda(t)));
}

// DDPM ancestral sampling: a draw from the Gaussian posterior q(x_next | x, x̂0),
// mean alpha_next x̂0 + sigma_next q epŝ, variance sigma_next^2 (1 - q^2), q = s_next/s.
class DdpmSolver final : public Solver {
public:
    std::string name() const override { return "ddpm"; }
    bool isStochastic() const override { return true; }
    torch::Tensor integrate(SolverContext& context, torch::Tensor x) override {
        const auto& path = context.path();
        const auto& grid = context.grid();
        for (size_t i = 0; i + 1 < grid.size(); ++i) {
            const double t = grid[i];
            const double tNext = grid[i + 1];
            const Evaluation start = context.beginStep(x, t);
            const PathPoint p = path.at(t);
            const double alphaNext = path.alpha(tNext);
            const double sigmaNext = path.sigma(tNext);
            if (!(sigmaNext > 0.0)) {
                x = alphaNext * start.data;
            } else {
                const double q = noiseRatio(path, t, tNext);
                const torch::Tensor eps = (x - p.alpha * start.data) / p.sigma;
                x = alphaNext * start.data + (sigmaNext * q) * eps +
                    (sigmaNext * std::sqrt(std::max(0.0, 1.0 - q * q))) * context.drawNoise();
            }
            context.endStep(x, tNext);
        }
        return x;
    }
};

// k-diffusion's Euler ancestral (eta = 1). k-diffusion takes the Euler step in EDM's sigma on the
// VE-scaled state y = x/alpha, from s = sigma/alpha down to s_down = s_next q, and adds fresh
// noise s_up = s_next sqrt(1 - q^2). With x̂0 held over the step that Euler step is exact, so the
// deterministic part is the exponential step to s_down; written in x it becomes
// x_next = alpha_next (x̂0 + s_down epŝ) + sigma_next sqrt(1 - q^2) z. With eta = 1 this is the
// same update as ddpm's posterior draw in exact arithmetic (the known equivalence of Euler
// ancestral and DDPM); the two are computed independently and must agree to rounding.
class EulerAncestralSolver final : public Solver {
public:
    std::string name() const override { return "euler-a"; }
    bool isStochastic() const override { return true; }
    torch::Tensor integrate(SolverContext& context, torch::Tensor x) override {
        const auto& path = context.path();
        const auto& grid = context.grid();
        for (size_t i = 0; i + 1 < grid.size(); ++i) {
            const double t = grid[i];
            const double tNext = grid[i + 1];
            const Evaluation start = context.beginStep(x, t);
            const double alphaNext = path.alpha(tNext);
            const double sigmaNext = path.sigma(tNext);
            if (!(sigmaNext > 0.0)) {
                x = stepIntoZeroNoise(context, tNext, start.data);
            } else {
                const PathPoint p = path.at(t);
                const double q = noiseRatio(path, t, tNext);
                const double sNext = sigmaNext / alphaNext;
                const double sDown = sNext * q;
                const double sUp = sNext * std::sqrt(std::max(0.0, 1.0 - q * q));
                const torch::Tensor eps = (x - p.alpha * start.data) / p.sigma;  // (y - x̂0)/s
                x = alphaNext * (start.data + sDown * eps) + (alphaNext * sUp) * context.drawNoise();
            }
            context.endStep(x, tNext);
        }
        return x;
    }
};

// Dormand-Prince 5(4) with step-size control, integrating to min(t_end, 1 - 1e-3) and finishing
// with one first-order step to t_end when that lies beyond. Each accepted step is one frame.
class Dopri5Solver final : public Solver {
public:
    explicit Dopri5Solver(const SolverSettings& settings) : m_settings(settings) {
        if (!(settings.rtol > 0.0) || !(settings.atol > 0.0)) {
            throw InvalidRequestError("dopri5 needs rtol > 0 and atol > 0");
        }
    }
    std::string name() const override { return "dopri5"; }
    bool isAdaptive() const override { return true; }

    torch::Tensor integrate(SolverContext& context, torch::Tensor x) override {
        constexpr double kFinalGap = 1e-3;
        const double tStart = context.grid().front();
        const double tEnd = context.endTime();
        const double tAdaptiveEnd = std::min(tEnd, 1.0 - kFinalGap);
        double t = tStart;
        double h = std::min(0.02, tAdaptiveEnd - t);
        Evaluation start;
        bool haveStart = false;
        int rejectedInARow = 0;
        while (t < tAdaptiveEnd - 1e-12) {
            start = haveStart ? context.beginStep(x, t, start) : context.beginStep(x, t);
            haveStart = true;
            for (;;) {
                h = std::min(h, tAdaptiveEnd - t);
                const Attempt attempt = tryStep(context, x, t, h, start.velocity);
                const double error = errorNorm(attempt.error, x, attempt.x);
                if (error <= 1.0) {
                    x = attempt.x;
                    t = (tAdaptiveEnd - (t + h) < 1e-12) ? tAdaptiveEnd : t + h;
                    start = attempt.end;
                    context.endStep(x, t);
                    h *= std::clamp(0.9 * std::pow(std::max(error, 1e-10), -0.2), 0.2, 10.0);
                    rejectedInARow = 0;
                    break;
                }
                h *= std::clamp(0.9 * std::pow(error, -0.2), 0.2, 1.0);
                if (++rejectedInARow > 50 || h < 1e-12) {
                    throw std::runtime_error("dopri5 could not meet its tolerance near t = " + std::to_string(t) +
                                             "; loosen --rtol/--atol");
                }
            }
        }
        if (tEnd > t) {
            const Evaluation last = haveStart ? context.beginStep(x, t, start) : context.beginStep(x, t);
            x = endsAtZeroNoise(context, tEnd) ? stepIntoZeroNoise(context, tEnd, last.data)
                                               : x + (tEnd - t) * last.velocity;
            context.endStep(x, tEnd);
        }
        return x;
    }

private:
    struct Attempt {
        torch::Tensor x;
        torch::Tensor error;
        Evaluation end;  // at the new point: first same as last (FSAL)
    };

    Attempt tryStep(SolverContext& context, const torch::Tensor& x, double t, double h, const torch::Tensor& k1) {
        const auto k2 = context.evaluate(x + h * (1.0 / 5.0) * k1, t + h / 5.0).velocity;
        const auto k3 = context.evaluate(x + h * (3.0 / 40.0 * k1 + 9.0 / 40.0 * k2), t + 3.0 * h / 10.0).velocity;
        const auto k4 = context.evaluate(x + h * (44.0 / 45.0 * k1 - 56.0 / 15.0 * k2 + 32.0 / 9.0 * k3),
                                         t + 4.0 * h / 5.0).velocity;
        const auto k5 = context.evaluate(x + h * (19372.0 / 6561.0 * k1 - 25360.0 / 2187.0 * k2 +
                                                  64448.0 / 6561.0 * k3 - 212.0 / 729.0 * k4),
                                         t + 8.0 * h / 9.0).velocity;
        const auto k6 = context.evaluate(x + h * (9017.0 / 3168.0 * k1 - 355.0 / 33.0 * k2 + 46732.0 / 5247.0 * k3 +
                                                  49.0 / 176.0 * k4 - 5103.0 / 18656.0 * k5),
                                         t + h).velocity;
        torch::Tensor next = x + h * (35.0 / 384.0 * k1 + 500.0 / 1113.0 * k3 + 125.0 / 192.0 * k4 -
                                      2187.0 / 6784.0 * k5 + 11.0 / 84.0 * k6);
        Evaluation end = context.evaluate(next, t + h);
        torch::Tensor error = h * (71.0 / 57600.0 * k1 - 71.0 / 16695.0 * k3 + 71.0 / 1920.0 * k4 -
                                   17253.0 / 339200.0 * k5 + 22.0 / 525.0 * k6 - 1.0 / 40.0 * end.velocity);
        return {std::move(next), std::move(error), std::move(end)};
    }

    double errorNorm(const torch::Tensor& error, const torch::Tensor& x, const torch::Tensor& next) const {
        const torch::Tensor scale = m_settings.atol + m_settings.rtol * torch::maximum(x.abs(), next.abs());
        return (error / scale).pow(2).mean().sqrt().item<double>();
    }

    SolverSettings m_settings;
};

}  // namespace

const std::vector<std::string>& solverNames() {
    static const std::vector<std::string> names{"euler", "heun",   "midpoint", "rk4",    "dpm++2m",
                                                "ddim",  "dopri5", "ddpm",     "euler-a"};
    return names;
}

std::unique_ptr<Solver> makeSolver(std::string_view name, const SolverSettings& settings) {
    if (const auto method = steps::rungeKuttaNamed(name)) {
        return std::make_unique<RungeKuttaSolver>(std::string(name), *method);
    }
    if (name == "ddim") return std::make_unique<DdimSolver>();
    if (name == "dpm++2m") return std::make_unique<DpmPp2mSolver>();
    if (name == "dopri5") return std::make_unique<Dopri5Solver>(settings);
    if (name == "ddpm") return std::make_unique<DdpmSolver>();
    if (name == "euler-a") return std::make_unique<EulerAncestralSolver>();
    throw UnknownNameError("solver", name, solverNames());
}

}  // namespace flowscope::core
