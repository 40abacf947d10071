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

bool startsAtZeroNoise(const SolverContext& context, double t) { return !(context.path().sigma(t) > 0.0); }

// The first step of a backward run (inversion) out of sigma = 0, the reverse of
// stepIntoZeroNoise and first-order like it: x = alpha x̂0 at sigma = 0 gives x̂0 = x / alpha, and
// the noise direction is the model's at the next time, asked with x itself (DDIM inversion's
// approximation: the one model call of the step lies at sigma > 0):
//   x_next = alpha_next x̂0 + sigma_next epŝ(x, t_next),  epŝ = (x - alpha_next D(x, t_next)) / sigma_next.
// The step's frame shows x̂0 = x / alpha and the chord's velocity.
torch::Tensor stepOutOfZeroNoise(SolverContext& context, const torch::Tensor& x, double t, double tNext) {
    const ProbabilityPath& path = context.path();
    const double alpha = path.alpha(t);
    if (!(alpha > 0.0)) throw std::logic_error("internal: a backward run starts where alpha = sigma = 0");
    const Evaluation next = context.evaluate(x, tNext);
    const double alphaNext = path.alpha(tNext);
    torch::Tensor result = torch::add(x * (alphaNext / alpha + 1.0), next.data, -alphaNext);
    context.beginStep(x, t, {x / alpha, (result - x) / (tNext - t)});
    context.endStep(result, tNext);
    return result;
}

// A backward run takes no noise: inverting a stochastic solver has no meaning.
void refuseBackwards(const SolverContext& context, const std::string& name) {
    const auto& grid = context.grid();
    if (grid.size() > 1 && grid[1] < grid[0]) {
        throw InvalidRequestError("'" + name + "' draws fresh noise at every step and cannot run backwards; invert "
                                  "with a deterministic solver (euler, heun, midpoint, rk4, ddim, dpm++2m, dopri5)");
    }
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
            if (startsAtZeroNoise(context, t)) {
                x = stepOutOfZeroNoise(context, x, t, grid[i + 1]);
                continue;
            }
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
            if (startsAtZeroNoise(context, grid[i])) {
                x = stepOutOfZeroNoise(context, x, grid[i], grid[i + 1]);
                continue;
            }
            const Evaluation start = context.beginStep(x, grid[i]);
            x = exponentialStep(context.path(), x, grid[i], grid[i + 1], start.data);
            context.endStep(x, grid[i + 1]);
        }
        return x;
    }
};

// DPM-Solver++(2M), as k-diffusion's sample_dpmpp_2m with a general alpha: second order from the
// previous x̂0, first order on the first step and on the last (DESIGN.md), which is the step into
// sigma = 0 unless the run stops early (--t-end). A fork continues from its parent's previous
// prediction (SolverHistory); a backward run is first-order on its step out of sigma = 0 and on
// the one after it.
class DpmPp2mSolver final : public Solver {
public:
    std::string name() const override { return "dpm++2m"; }
    torch::Tensor integrate(SolverContext& context, torch::Tensor x) override {
        const auto& path = context.path();
        const auto& grid = context.grid();
        torch::Tensor previousData;
        double previousH = 0.0;
        const SolverHistory& history = context.history();
        if (history.previousData.defined() && path.sigma(history.previousTime) > 0.0) {
            previousData = history.previousData.to(x.options());
            previousH = steps::exponentialStep(path, history.previousTime, grid.front()).h;
        }
        for (size_t i = 0; i + 1 < grid.size(); ++i) {
            if (startsAtZeroNoise(context, grid[i])) {
                x = stepOutOfZeroNoise(context, x, grid[i], grid[i + 1]);
                continue;
            }
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
        refuseBackwards(context, m_name);
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
        double t = context.grid().front();
        const double firstStep = context.history().stepSize > 0.0 ? context.history().stepSize : steps::dopri5::kFirstStep;
        Evaluation start;
        bool haveStart = false;
        if (tEnd < t) {
            // Backwards (inversion): the first-order step out of sigma = 0 when the run starts
            // there, to 1 - kFinalGap (the mirror of a forward run's last step), then adaptive.
            if (startsAtZeroNoise(context, t)) {
                const double tNext = std::max(tEnd, t - steps::dopri5::kFinalGap);
                x = stepOutOfZeroNoise(context, x, t, tNext);
                t = tNext;
            }
            return adaptiveSteps(context, std::move(x), t, tEnd, -std::min(firstStep, t - tEnd), start, haveStart);
        }
        const double tAdaptiveEnd = steps::dopri5::adaptiveEnd(tEnd);
        const double h = std::min(firstStep, tAdaptiveEnd - t);
        if (t < tAdaptiveEnd - 1e-12) context.noteStepSize(h);
        x = adaptiveSteps(context, std::move(x), t, tAdaptiveEnd, h, start, haveStart);
        if (tEnd > t) {
            const Evaluation last = haveStart ? context.beginStep(x, t, start) : context.beginStep(x, t);
            x = endsAtZeroNoise(context, tEnd) ? stepIntoZeroNoise(context, tEnd, last.data)
                                               : x + (tEnd - t) * last.velocity;
            context.endStep(x, tEnd);
        }
        return x;
    }

private:
    // Accepted steps from t to `end`, forwards or backwards (h carries the direction), each one
    // frame; t ends at `end`. `start` is the evaluation at (x, t) once known (first same as last).
    torch::Tensor adaptiveSteps(SolverContext& context, torch::Tensor x, double& t, double end, double h,
                                Evaluation& start, bool& haveStart) {
        const bool forwards = h > 0.0;
        const auto before = [&](double time) { return forwards ? time < end - 1e-12 : time > end + 1e-12; };
        int rejectedInARow = 0;
        while (before(t)) {
            start = haveStart ? context.beginStep(x, t, start) : context.beginStep(x, t);
            haveStart = true;
            for (;;) {
                h = forwards ? std::min(h, end - t) : std::max(h, end - t);
                const auto evaluateAt = [&](const torch::Tensor& state, double c, double d) {
                    return context.evaluate(state, t + c * h / d);
                };
                auto attempt = steps::dopri5::attempt(x, h, start.velocity, evaluateAt);
                const double error = std::sqrt(
                    steps::dopri5::scaledSquaredError(attempt.error, x, attempt.x, m_settings.rtol, m_settings.atol).mean().item<double>());
                steps::dopri5::checkErrorNorm(error, t);
                if (error <= 1.0) {
                    x = std::move(attempt.x);
                    t = forwards ? steps::dopri5::timeAfter(t, h, end) : ((t + h) - end < 1e-12 ? end : t + h);
                    start = std::move(attempt.end);
                    context.endStep(x, t);
                    h *= steps::dopri5::grownStep(error);
                    context.noteStepSize(std::abs(h));
                    rejectedInARow = 0;
                    break;
                }
                h *= steps::dopri5::shrunkStep(error);
                if (++rejectedInARow > steps::dopri5::kMostRejectedInARow || std::abs(h) < 1e-12) {
                    throw steps::dopri5::toleranceNotMet(t);
                }
            }
        }
        return x;
    }

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
