#pragma once

// What the facade's functions share, spread over Engine.cpp (sampling), EngineSweep.cpp (sweeps)
// and EngineInfo.cpp (names, bundles, descriptions): the engine's state, the checks every request
// goes through and the boundary where exceptions become results. Engine internals only: front
// ends include Engine.h.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/api/Engine.h"
#include "core/api/Errors.h"
#include "core/models/ModelCatalog.h"
#include "core/sampling/CudaGraph.h"
#include "core/sampling/Device.h"
#include "core/sampling/NoiseSource.h"
#include "core/sampling/ProbabilityPath.h"
#include "core/sampling/Sampler.h"
#include "core/sampling/Schedule.h"

namespace flowscope::core {

// The engine's state, owned by its one thread: loaded models and CUDA graphs.
struct Engine::Impl {
    explicit Impl(FolderLoader loader);
    // Drops everything held on the device (after running out of memory).
    void releaseMemory();

    ModelCatalog catalog;
    GraphCache graphs;
};

// A sample request's names resolved and its numbers checked, before the model loads.
struct SampleSetup {
    std::unique_ptr<ProbabilityPath> path;
    std::unique_ptr<Solver> solver;
    ScheduleSpec schedule;
    torch::Device device = torch::kCPU;
    torch::ScalarType dtype = torch::kFloat32;
};
SampleSetup checkSampleRequest(const SampleRequest& request);
// What the user should know about the grid the run takes (notes), and a refusal in words when
// keeping every state would not fit in memory.
void checkGrid(const SampleRequest& request, const SampleSetup& setup, const std::vector<int64_t>& shape,
               const std::vector<double>& grid, std::vector<std::string>& notes);

// Steps and batch within the facade's limits, and t_end in [0.001, 1].
void checkRanges(int steps, int batch, double tEnd);
// The smallest tolerance a dtype can meet: its machine epsilon. Below it dopri5 shrinks its
// steps without end, or its error estimate overflows (and the run would blame the model).
void checkTolerance(double value, const std::string& option, torch::ScalarType dtype);
// The model of a request, with its text settings applied: a text-to-image checkpoint gets the
// prompt (encoded here) and image size (`resolution` R stands for R x R where no width and height
// are given); a bundle its conditioning files; other models refuse a prompt and such files.
// The text encoders run on the request's `device` (named as requests name it).
std::shared_ptr<Model> loadModel(ModelCatalog& catalog, const std::string& spec, int resolution, const TextSettings& text,
                                 const std::string& device, std::vector<std::string>& notes, bool trustModel,
                                 const std::atomic<bool>* cancel);
// The class a request's condition names on `model` (a name or an index), or Model::kNullClass for
// "" (unconditional). Refuses, with the valid names, a class the model does not have, and any
// class on an unconditional model.
int64_t classIndexOf(const Model& model, const std::string& condition, const std::string& spec);
// The model a run evaluates: `model` itself, or for a condition `model` guided towards its class
// (a model conditioned by an input of the run always is: Model::conditionedByInput). Refuses
// guidance without a class, and CFG-Zero*'s zeroed steps with an adaptive solver.
std::shared_ptr<Model> conditionedModel(const std::shared_ptr<Model>& model, const std::string& spec,
                                        const std::string& condition, const GuidanceSettings& guidance,
                                        const ProbabilityPath& path, bool adaptive);
// The state a run starts from: x_{t0} = sigma(t0) eps (DESIGN.md: the data term is negligible).
torch::Tensor startState(NoiseSource& noise, const ProbabilityPath& path, double t0,
                         const torch::TensorOptions& options);
std::vector<double> toVector(const torch::Tensor& tensor);

// A request's array of samples as a batch [batch, ...sampleShape] (float32, host): given whole,
// or as one sample ([...sampleShape] or [1, ...]) for every row. Refuses other shapes and
// non-finite values in words that name `what`.
torch::Tensor batchOfSamples(const HostArray& array, const std::vector<int64_t>& sampleShape, int64_t batch,
                             const std::string& what);
// Images [B or 1, C, H, W] in [-1, 1] as the model's samples (RunStart::image): as they are for
// image models, through the encoder of latent ones; with `isData` the model's own samples.
torch::Tensor samplesFromImages(Model& model, const HostArray& images, bool isData, int64_t batch,
                                const torch::TensorOptions& options, const std::string& what);

// A run's start (RunStart) made concrete: the times it takes, its first state, and what a fork
// carries of its parent's solver.
struct PreparedStart {
    std::vector<double> grid;
    torch::Tensor x0;       // the state at grid.front()
    torch::Tensor data;     // an image start at t = 1 (strength 0): the data, and no step to take
    SolverHistory history;
};
// `fullGrid` is the schedule's grid for the request's steps and t_end; the seed's first draw is
// made here (and the generators moved past a fork's parent's draws).
PreparedStart prepareStart(const SampleRequest& request, Model& model, const ProbabilityPath& path,
                           const std::vector<double>& fullGrid, NoiseSource& noise, const torch::TensorOptions& options);

template <typename Result>
Result failureResult(Failure failure, std::string message) {
    Result result;
    result.failure = failure;
    result.error = std::move(message);
    return result;
}

// The first line of a LibTorch message, without its backtrace.
inline std::string firstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

// Runs `body`, turning every exception into a failure with a message (no exception leaves the
// engine). After running out of device memory `releaseMemory` runs, so that the next run starts
// with the memory this one held.
template <typename Result, typename Body>
Result guarded(Body&& body, const std::function<void()>& releaseMemory) {
    try {
        return body();
    } catch (const CancelledError&) {
        return failureResult<Result>(Failure::Cancelled, "cancelled");
    } catch (const std::invalid_argument& error) {
        return failureResult<Result>(Failure::InvalidRequest, error.what());
    } catch (const c10::OutOfMemoryError& error) {
        releaseMemory();
        return failureResult<Result>(
            Failure::Runtime, "out of memory: " + firstLine(error.what_without_backtrace()) +
                                  " The memory this run held was released; use a smaller batch or resolution, or --device cpu");
    } catch (const c10::Error& error) {
        // Out of memory reported through another exception type (a TorchScript network's own
        // error handling, say) still gets the memory back.
        if (std::string(error.what()).find("out of memory") != std::string::npos) releaseMemory();
        return failureResult<Result>(Failure::Runtime, error.what_without_backtrace());
    } catch (const std::bad_alloc&) {
        releaseMemory();
        return failureResult<Result>(Failure::Runtime, "out of memory; use a smaller batch or resolution");
    } catch (const std::exception& error) {
        if (std::string(error.what()).find("out of memory") != std::string::npos) releaseMemory();
        return failureResult<Result>(Failure::Runtime, error.what());
    }
}

}  // namespace flowscope::core
