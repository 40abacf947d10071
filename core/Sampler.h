#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include "core/Model.h"
#include "core/NoiseSource.h"
#include "core/ProbabilityPath.h"

namespace flowscope::core {

// One state of a run, handed to the observer as soon as it is known: frame k holds x_k at t_k
// and the model's prediction x̂0 from x_k. The final frame's prediction is x_N itself when the
// run ends at sigma = 0, otherwise the last prediction made.
struct FrameView {
    int index = 0;
    int plannedSteps = 0;  // grid intervals (adaptive solvers: unknown ahead, reported as 0)
    double t = 0.0;
    PathPoint point;
    int nfe = 0;
    const torch::Tensor* state = nullptr;
    const torch::Tensor* prediction = nullptr;
    double velocityRms = 0.0;  // RMS per element of the velocity at x_k (0 for the final frame)
    bool final = false;
};

struct SamplingOptions {
    bool recordTrajectory = false;
    const std::atomic<bool>* cancel = nullptr;  // checked before every step
    std::function<void(const FrameView&)> onFrame;
};

struct SamplingOutcome {
    torch::Tensor initial;                  // x_{t0}
    torch::Tensor final;                    // x at the last time
    std::vector<torch::Tensor> trajectory;  // x_0..x_N when recorded
    std::vector<torch::Tensor> predictions; // x̂0 per recorded state when recorded
    std::vector<double> times;              // t_0..t_N (always)
    int nfe = 0;
    int steps = 0;
    // Per sample [B] and their batch means (DESIGN.md section 5).
    torch::Tensor pathLengthRatios;
    torch::Tensor straightnesses;
    double pathLengthRatio = 0.0;
    double straightness = 0.0;
};

class SolverContext;

// An ODE (or SDE) solver for dx/dt = v(x, t) along a probability path. No model evaluation at
// sigma = 0: a step that ends there is taken first-order.
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
const std::vector<std::string>& solverNames();

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

    SamplingOutcome finish(const torch::Tensor& x);
    void setPlannedSteps(int steps) { m_plannedSteps = steps; }

private:
    void emitFrame(const torch::Tensor& x, double t, const torch::Tensor& prediction, double velocityRms, bool final);

    Model& m_model;
    const ProbabilityPath& m_path;
    std::vector<double> m_grid;
    NoiseSource* m_noise;
    const SamplingOptions& m_options;
    torch::TensorOptions m_tensorOptions;

    int m_nfe = 0;
    int m_steps = 0;
    int m_plannedSteps = 0;
    torch::Tensor m_initial;
    std::vector<double> m_times;
    std::vector<torch::Tensor> m_trajectory;
    std::vector<torch::Tensor> m_predictions;
    // Step in progress.
    torch::Tensor m_stepStartX;
    torch::Tensor m_stepVelocity;
    torch::Tensor m_lastPrediction;
    double m_stepStartT = 0.0;
    // Metric accumulators per sample.
    torch::Tensor m_pathLength;       // sum |x_{i+1} - x_i|
    torch::Tensor m_velocitySquares;  // sum h_i |v_i|^2
    torch::Tensor m_velocitySum;      // sum h_i v_i
};

// Integrates from x0 (already at the grid's first time) and returns the outcome. Throws
// CancelledError when cancelled, and std::runtime_error naming the step on NaN or Inf.
SamplingOutcome runSampler(Model& model, const ProbabilityPath& path, Solver& solver, std::vector<double> grid,
                           const torch::Tensor& x0, NoiseSource* noise, const SamplingOptions& options);

}  // namespace flowscope::core
