#pragma once

// A sweep's cells run as one batch ("batched cells"; a lane is a column of the window, not this).
// Every cell has its own path, time grid and starting
// state (and noise, for the stochastic solvers), and all share one solver. With a fixed-step
// solver the cells that still have a step i take it together at iteration i; with dopri5 every
// cell unfinished attempts a step of its own size at each iteration and accepts or rejects it on
// its own. Either way the model is evaluated once on all their rows, each row at its own noise
// level (Model::predictRows). A cell's outcome is what runSampler gives for it alone, up to
// rounding (tests/core/tst_sampler checks this for every solver in float64). In float32 rounding
// can tip one of dopri5's accept-or-reject decisions the other way, and its cell then takes other
// steps than its run alone, within the same tolerance.

#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include "core/sampling/Model.h"
#include "core/sampling/NoiseSource.h"
#include "core/sampling/ProbabilityPath.h"
#include "core/sampling/Sampler.h"

namespace flowscope::core {

struct BatchedCell {
    const ProbabilityPath* path = nullptr;
    std::vector<double> grid;     // t_0 .. t_N (dopri5: only t_0 and t_N count)
    torch::Tensor x0;             // [B, ...sampleShape] at grid[0]
    NoiseSource* noise = nullptr;  // stochastic solvers: the cell's generators, after x0's draw
};

// Solvers that can run cells together: all of them (euler, heun, midpoint, rk4, ddim, dpm++2m,
// ddpm, euler-a, dopri5).
bool solverBatchesCells(std::string_view solver);

// One outcome per cell, in order; `settings` are dopri5's tolerances. Throws CancelledError when
// cancelled, std::runtime_error on NaN or Inf from the model (or when dopri5 cannot meet its
// tolerance).
// `graphs`: the cache of the model's CUDA graphs, told where the cells prepare the model.
std::vector<SamplingOutcome> runBatchedCells(Model& model, std::string_view solver, const std::vector<BatchedCell>& cells,
                                      const SolverSettings& settings = {}, const std::atomic<bool>* cancel = nullptr,
                                      GraphCache* graphs = nullptr);

}  // namespace flowscope::core
