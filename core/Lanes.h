#pragma once

// A sweep's cells run as lanes of one batch. Every lane has its own path, time grid and starting
// state (and noise, for the stochastic solvers), and all share one fixed-step solver; at iteration i the lanes that still
// have a step i take it together, the model evaluated once on all their rows, each row at its
// own noise level (Model::denoiseRows). A lane's outcome is what runSampler gives for it alone,
// up to rounding (tests/core/tst_sampler checks this for every such solver).

#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include "core/Model.h"
#include "core/NoiseSource.h"
#include "core/ProbabilityPath.h"
#include "core/Sampler.h"

namespace flowscope::core {

struct Lane {
    const ProbabilityPath* path = nullptr;
    std::vector<double> grid;     // t_0 .. t_N
    torch::Tensor x0;             // [B, ...sampleShape] at grid[0]
    NoiseSource* noise = nullptr;  // stochastic solvers: the lane's generators, after x0's draw
};

// Solvers that can run lanes together: euler, heun, midpoint, rk4, ddim, dpm++2m, ddpm, euler-a.
bool solverRunsLanes(std::string_view solver);

// One outcome per lane, in order. Throws CancelledError when cancelled, std::runtime_error on
// NaN or Inf from the model.
std::vector<SamplingOutcome> runLanes(Model& model, std::string_view solver, const std::vector<Lane>& lanes,
                                      const std::atomic<bool>* cancel = nullptr);

}  // namespace flowscope::core
