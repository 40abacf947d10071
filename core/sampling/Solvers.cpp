// The solvers of DESIGN.md section 3. Each owns its loop over the time grid and reports steps to
// the SolverContext, which does the bookkeeping (frames, NFE, metrics, cancellation).
#include <algorithm>
#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/sampling/Sampler.h"
#include "core/sampling/StepRules.h"

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

// Explicit Runge-Kutta methods on the velocity in t (core/sampling/StepRules.h). The step into
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
                data = steps::secondOrderData(start.data, weight, previousData);
            }
            x = steps::exponentialUpdate(x, step.ratio, step.weight, data);
            previousData = start.data;
            previousH = step.h;
            context.endStep(x, grid[i + 1]);
        }
        return x;
    }
};

// The ancestral samplers (core/sampling/StepRules.h): ddpm's posterior draw and k-diffusion's Euler
// ancestral; a step into sigma = 0 lands on alpha x̂0 and draws no noise.
class AncestralSolver final : public Solver {
public:
    AncestralSolver(std::string name, steps::Ancestral method) : m_name(std::move(name)), m_method(method) {}
    std::string name() const override { return m_name; }
    bool isStochastic() const override { return true; }
    torch::Tensor integrate(SolverContext& context, torch::Tensor x) override {
        const auto& grid = context.grid();
        for (size_t i = 0; i + 1 < grid.size(); ++i) {
            const double tNext = grid[i + 1];
            const Evaluation start = context.beginStep(x, grid[i]);
            if (endsAtZeroNoise(context, tNext)) {
                x = stepIntoZeroNoise(context, tNext, start.data);
            } else {
                const steps::AncestralStep s = steps::ancestralStep(m_method, context.path(), grid[i], tNext);
                x = steps::ancestralUpdate(m_method, x, start.data, context.drawNoise(), s.alpha, s.sigma, s.alphaNext,
                                           s.epsWeight, s.noiseWeight);
            }
            context.endStep(x, tNext);
        }
        return x;
    }

private:
    std::string m_name;
    steps::Ancestral m_method;
};

// Dormand-Prince 5(4) with step-size control (core/sampling/StepRules.h). Each accepted step is one frame.
class Dopri5Solver final : public Solver {
public:
    explicit Dopri5Solver(const SolverSettings& settings) : m_settings(settings) {
        if (!(settings.rtol > 0.0) || !(settings.atol > 0.0)) {
            throw InvalidRequestError("dopri5 needs rtol > 0 and atol > 0");
        }
    }
    std::string name() const override { return std::string(kAdaptiveSolver); }
    bool isAdaptive() const override { return true; }

    torch::Tensor integrate(SolverContext& context, torch::Tensor x) override {
        const double tEnd = context.endTime();
        const double tAdaptiveEnd = steps::dopri5::adaptiveEnd(tEnd);
        double t = context.grid().front();
        double h = std::min(steps::dopri5::kFirstStep, tAdaptiveEnd - t);
        Evaluation start;
        bool haveStart = false;
        int rejectedInARow = 0;
        while (t < tAdaptiveEnd - 1e-12) {
            start = haveStart ? context.beginStep(x, t, start) : context.beginStep(x, t);
            haveStart = true;
            for (;;) {
                h = std::min(h, tAdaptiveEnd - t);
                const auto evaluateAt = [&](const torch::Tensor& state, double c, double d) {
                    return context.evaluate(state, t + c * h / d);
                };
                auto attempt = steps::dopri5::attempt(x, h, start.velocity, evaluateAt);
                const double error = std::sqrt(
                    steps::dopri5::scaledSquaredError(attempt.error, x, attempt.x, m_settings.rtol, m_settings.atol).mean().item<double>());
                steps::dopri5::checkErrorNorm(error, t);
                if (error <= 1.0) {
                    x = std::move(attempt.x);
                    t = steps::dopri5::timeAfter(t, h, tAdaptiveEnd);
                    start = std::move(attempt.end);
                    context.endStep(x, t);
                    h *= steps::dopri5::grownStep(error);
                    rejectedInARow = 0;
                    break;
                }
                h *= steps::dopri5::shrunkStep(error);
                if (++rejectedInARow > steps::dopri5::kMostRejectedInARow || h < 1e-12) throw steps::dopri5::toleranceNotMet(t);
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
    SolverSettings m_settings;
};

}  // namespace

std::unique_ptr<Solver> makeSolver(std::string_view name, const SolverSettings& settings) {
    if (const auto method = steps::rungeKuttaNamed(name)) {
        return std::make_unique<RungeKuttaSolver>(std::string(name), *method);
    }
    if (name == "ddim") return std::make_unique<DdimSolver>();
    if (name == "dpm++2m") return std::make_unique<DpmPp2mSolver>();
    if (name == kAdaptiveSolver) return std::make_unique<Dopri5Solver>(settings);
    if (const auto method = steps::ancestralNamed(name)) {
        return std::make_unique<AncestralSolver>(std::string(name), *method);
    }
    throw UnknownNameError("solver", name, solverNames());
}

}  // namespace flowscope::core
