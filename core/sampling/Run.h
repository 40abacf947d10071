#pragma once
// What one run is made of and leaves behind: its frames, options, record and outcome (the types
// solvers, the sampler loop and the engine share).
#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/sampling/ProbabilityPath.h"

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

// What a run that continues another (a fork) knows of the solver's state there (RunStart).
struct SolverHistory {
    torch::Tensor previousData;  // x̂0 at previousTime (DPM-Solver++(2M)); undefined: none
    double previousTime = -1.0;
    double stepSize = 0.0;       // dopri5's next step size (0: its own first step)
    int stepOffset = 0;          // the step index of the run's first step (guidance counts steps)
};

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
    SolverHistory history;
};

struct SamplingOutcome {
    torch::Tensor initial;                  // x_{t0}
    torch::Tensor final;                    // x at the last time
    std::vector<torch::Tensor> trajectory;  // x_0..x_N when recorded
    std::vector<torch::Tensor> predictions; // x̂0 per recorded state when recorded
    std::vector<double> times;              // t_0..t_N (always)
    std::vector<double> stepSizes;          // adaptive solvers: the step tried next from each state
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
    std::vector<double> stepSizes;
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

// |x_b| for each sample b: the norm over every dimension but the first.
torch::Tensor perSampleNorm(const torch::Tensor& x);

// The metrics of a finished run (DESIGN.md section 5), from its record.
SamplingOutcome summarizeRun(RunRecord record);
}  // namespace flowscope::core
