#pragma once
// The solvers (DESIGN.md section 4) and what they see of a run: SolverContext.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include "core/sampling/Model.h"
#include "core/sampling/NoiseSource.h"
#include "core/sampling/ProbabilityPath.h"
#include "core/sampling/Run.h"

namespace flowscope::core {

class SolverContext;

// An ODE (or SDE) solver for dx/dt = v(x, t) along a probability path. No model evaluation at
// sigma = 0: a step that ends there is taken first-order. Deterministic solvers also run
// backwards (a falling grid, inversion): a step that starts at sigma = 0 is then first-order too.
class Solver {
public:
    virtual ~Solver() = default;
    virtual std::string name() const = 0;
    virtual bool isAdaptive() const { return false; }
    virtual bool isStochastic() const { return false; }
    // Integrates over the context's grid from x at grid()[0] and returns the final state.
    virtual torch::Tensor integrate(SolverContext& context, torch::Tensor x) = 0;
};

struct SolverSettings {
    double rtol = 1e-5;
    double atol = 1e-5;
};

std::unique_ptr<Solver> makeSolver(std::string_view name, const SolverSettings& settings = {});

// What a solver sees of a run: the model along the path, the grid, step bookkeeping and noise.
class SolverContext {
public:
    struct Evaluation {
        torch::Tensor data;      // x̂0
        torch::Tensor velocity;  // dx/dt
    };

    SolverContext(Model& model, const ProbabilityPath& path, std::vector<double> grid, NoiseSource* noise,
                  const SamplingOptions& options, torch::TensorOptions tensorOptions);

    const ProbabilityPath& path() const { return m_path; }
    const std::vector<double>& grid() const { return m_grid; }
    double endTime() const { return m_grid.back(); }

    // Any model evaluation; counts NFE and stops the run on NaN or Inf.
    Evaluation evaluate(const torch::Tensor& x, double t);
    // Starts a step at (x, t): checks cancellation, evaluates (or reuses `known`), emits the frame.
    Evaluation beginStep(const torch::Tensor& x, double t);
    Evaluation beginStep(const torch::Tensor& x, double t, Evaluation known);
    // Ends the step begun last with the new state.
    void endStep(const torch::Tensor& xNext, double tNext);
    // Fresh Gaussian noise for stochastic samplers, from the per-sample generators.
    torch::Tensor drawNoise();

    // Emits the final frame and summarizes the run.
    SamplingOutcome finish(const torch::Tensor& x);
    // The run so far with x as its final state, without a frame (for graph capture).
    RunRecord takeRecord(const torch::Tensor& x);
    void setPlannedSteps(int steps) { m_plannedSteps = steps; }
    // Where a forked run picks up its parent's solver state (default: a fresh start).
    const SolverHistory& history() const { return m_options.history; }
    // Adaptive solvers: the step size they will try next from the state of the last frame.
    void noteStepSize(double h) { m_record.stepSizes.push_back(h); }
    // Being captured as a CUDA graph: nothing may wait for the GPU.
    void setCapturing() { m_capturing = true; }

private:
    void emitFrame(const torch::Tensor& x, double t, const torch::Tensor& prediction, const torch::Tensor& velocityRms,
                   bool final);
    // On a GPU the model's output is checked for NaN and Inf here, every kCheckInterval steps and
    // at the end, instead of after every evaluation (each check waits for the GPU).
    void checkFiniteSoFar(const torch::Tensor& x);

    Model& m_model;
    const ProbabilityPath& m_path;
    std::vector<double> m_grid;
    NoiseSource* m_noise;
    const SamplingOptions& m_options;
    torch::TensorOptions m_tensorOptions;

    bool m_deferChecks = false;  // CUDA: no host synchronization inside the loop
    bool m_capturing = false;
    int m_plannedSteps = 0;
    RunRecord m_record;
    // Step in progress.
    torch::Tensor m_stepStartX;
    torch::Tensor m_stepVelocity;
    double m_stepStartT = 0.0;
};
}  // namespace flowscope::core
