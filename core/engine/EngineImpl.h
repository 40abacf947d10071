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

namespace flowscope::core {

// The engine's state, owned by its one thread: loaded models and CUDA graphs.
struct Engine::Impl {
    explicit Impl(FolderLoader loader);
    // Drops everything held on the device (after running out of memory).
    void releaseMemory();

    ModelCatalog catalog;
    GraphCache graphs;
};

// Steps and batch within the facade's limits, and t_end in [0.001, 1].
void checkRanges(int steps, int batch, double tEnd);
// The smallest tolerance a dtype can meet: its machine epsilon. Below it dopri5 shrinks its
// steps without end, or its error estimate overflows (and the run would blame the model).
void checkTolerance(double value, const std::string& option, torch::ScalarType dtype);
// The class a request's condition names on `model` (a name or an index), or Model::kNullClass for
// "" (unconditional). Refuses, with the valid names, a class the model does not have, and any
// class on an unconditional model.
int64_t classIndexOf(const Model& model, const std::string& condition, const std::string& spec);
// The model a run evaluates: `model` itself, or for a condition `model` guided towards its class.
// Refuses guidance without a class, and CFG-Zero*'s zeroed steps with an adaptive solver.
std::shared_ptr<Model> conditionedModel(const std::shared_ptr<Model>& model, const std::string& spec,
                                        const std::string& condition, const GuidanceSettings& guidance,
                                        const ProbabilityPath& path, bool adaptive);
// The state a run starts from: x_{t0} = sigma(t0) eps (DESIGN.md: the data term is negligible).
torch::Tensor startState(NoiseSource& noise, const ProbabilityPath& path, double t0,
                         const torch::TensorOptions& options);
std::vector<double> toVector(const torch::Tensor& tensor);

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
