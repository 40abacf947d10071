#pragma once
// The sampler loop: one run of a solver over a grid, plainly or replayed as a CUDA graph.
#include <memory>
#include <vector>

#include <torch/types.h>

#include "core/sampling/Run.h"
#include "core/sampling/Solver.h"

namespace flowscope::core {

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
