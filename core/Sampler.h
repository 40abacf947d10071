#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include "core/Model.h"
#include "core/Names.h"
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
    // RMS per element of the velocity at x_k, a 0-d tensor on the run's device (undefined for
    // the final frame): reading it is the observer's choice, since on a GPU it waits for the step.
    torch::Tensor velocityRms;
    bool final = false;
};

class GraphCache;

struct SamplingOptions {
    bool recordTrajectory = false;
    const std::atomic<bool>* cancel = nullptr;  // checked before every step
    std::function<void(const FrameView&)> onFrame;
    // Where fixed-step deterministic runs on CUDA are captured and replayed as CUDA graphs (runs
    // with a frame observer never are). Every run of a model that has graphs there must pass the
    // cache, so that it notices when the model moves between devices. Null: plain loop.
    GraphCache* graphs = nullptr;
    bool captureGraphs = true;  // false: the plain loop even where a graph would do
    // NaN and Inf in the model's output: checked after every evaluation (false), or every 64
    // steps and at the end (true), so that the loop never waits for a GPU. Unset: deferred on
    // CUDA only.
    std::optional<bool> deferChecks;
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
    bool replayedGraph = false;       // the run was a CUDA graph replay
    std::vector<std::string> notes;   // graph replays: the model's notes from the capture
};

// Everything a run leaves behind, before the metrics are summarized: tensors (which a CUDA graph
// produces in its own memory) and host values (which are the same on every replay).
struct RunRecord {
    torch::Tensor initial;
    torch::Tensor final;
    torch::Tensor lastPrediction;
    torch::Tensor pathLength;       // sum |x_{i+1} - x_i|, per sample
    torch::Tensor velocitySquares;  // sum h_i |v_i|^2, per sample
    torch::Tensor velocitySum;      // sum h_i v_i
    std::vector<torch::Tensor> trajectory;
    std::vector<torch::Tensor> predictions;
    std::vector<double> times;
    int nfe = 0;
    int steps = 0;

    // The tensors in a fixed order, and the reverse (for a graph's outputs).
    std::vector<torch::Tensor> tensors() const;
    void setTensors(const std::vector<torch::Tensor>& values);

    // The per-step sums (DESIGN.md section 5), kept the same way by a run and by a sweep's cells:
    // zeroed for a batch like x, then one step from x to next of size h with the velocity at its
    // start. h is a number, or a column [B, 1, ...] of one per row; `rows` (undefined: every row)
    // are the rows of the batch the step was taken on, which x, next, velocity and h hold.
    void startSums(const torch::Tensor& x);
    void addStep(const torch::Tensor& x, const torch::Tensor& next, const torch::Tensor& velocity, double h);
    void addStep(const torch::Tensor& rows, const torch::Tensor& x, const torch::Tensor& next,
                 const torch::Tensor& velocity, const torch::Tensor& hColumn);
    // No NaN or Inf in the state x nor in the sums so far (a NaN from any evaluation reaches
    // them within a step). Waits for the device.
    bool finiteSoFar(const torch::Tensor& x) const;
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

// |x_b| for each sample b: the norm over every dimension but the first.
torch::Tensor perSampleNorm(const torch::Tensor& x);

// The metrics of a finished run (DESIGN.md section 5), from its record.
SamplingOutcome summarizeRun(RunRecord record);

// CUDA graphs of fixed-step runs, by everything that shapes them (model object, path, solver,
// grid, batch shape, dtype, device). One per engine; used from one thread at a time.
class GraphCache {
public:
    GraphCache();
    ~GraphCache();
    // Forgets every graph (their memory goes back to the caching allocator).
    void clear();
    size_t size() const;
    // Prepares the model for a run on this device and dtype (Model::prepare), forgetting its
    // graphs when it was last prepared elsewhere: moving a model frees the tensors they read.
    // Whatever prepares a model that may have graphs here goes through this.
    void prepare(Model& model, torch::Device device, torch::ScalarType dtype);

private:
    friend SamplingOutcome runSampler(Model&, const ProbabilityPath&, Solver&, std::vector<double>,
                                      const torch::Tensor&, NoiseSource*, const SamplingOptions&);
    struct Entries;
    std::unique_ptr<Entries> m_entries;
};

// Integrates from x0 (already at the grid's first time) and returns the outcome. Throws
// CancelledError when cancelled, and std::runtime_error naming the step on NaN or Inf.
SamplingOutcome runSampler(Model& model, const ProbabilityPath& path, Solver& solver, std::vector<double> grid,
                           const torch::Tensor& x0, NoiseSource* noise, const SamplingOptions& options);

}  // namespace flowscope::core
