#include "core/Engine.h"
#include "core/HostTensor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <limits>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <c10/util/Exception.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "core/Bundle.h"
#include "core/CudaGraph.h"
#include "core/Datasets.h"
#include "core/Device.h"
#include "core/Errors.h"
#include "core/GaussianMixture.h"
#include "core/Lanes.h"
#include "core/ModelCatalog.h"
#include "core/Parameterization.h"
#include "core/ProbabilityPath.h"
#include "core/Sampler.h"
#include "core/Schedule.h"
#include "core/Sha256.h"
#include "core/TrustList.h"


namespace flowscope::core {
namespace {

constexpr double kMinTEnd = 1e-3;

const std::vector<std::string>& deviceNames() {
    static const std::vector<std::string> names{"auto", "cpu", "cuda"};
    return names;
}

std::vector<double> toVector(const torch::Tensor& tensor) {
    const torch::Tensor cpu = tensor.to(torch::kCPU, torch::kFloat64).contiguous();
    return {cpu.data_ptr<double>(), cpu.data_ptr<double>() + cpu.numel()};
}

void checkRanges(int steps, int batch, double tEnd) {
    if (steps < 1 || steps > kMaxSteps) {
        throw InvalidRequestError("steps must be between 1 and " + std::to_string(kMaxSteps) + " (got " +
                                  std::to_string(steps) + ")");
    }
    if (batch < 1 || batch > kMaxBatch) {
        throw InvalidRequestError("batch must be between 1 and " + std::to_string(kMaxBatch) + " (got " +
                                  std::to_string(batch) + ")");
    }
    // Below 0.001 a run barely leaves its noise: in float32 its state may not change at all, and
    // its measures (ratios to the distance travelled) are then undefined.
    if (!(tEnd >= kMinTEnd && tEnd <= 1.0)) {
        throw InvalidRequestError("--t-end must be between 0.001 and 1 (got " + c10::str(tEnd) + ")");
    }
}

// The smallest tolerance a dtype can meet: its machine epsilon. Below it dopri5 shrinks its
// steps without end, or its error estimate overflows (and the run would blame the model).
void checkTolerance(double value, const std::string& option, torch::ScalarType dtype) {
    const double epsilon = dtype == torch::kFloat64    ? std::numeric_limits<double>::epsilon()
                           : dtype == torch::kBFloat16 ? 0.0078125
                                                       : double(std::numeric_limits<float>::epsilon());
    if (!(value >= epsilon)) {
        const char* name = dtype == torch::kFloat64 ? "float64" : dtype == torch::kBFloat16 ? "bfloat16" : "float32";
        throw InvalidRequestError(option + " " + c10::str(value) + " is below what " + name +
                                  " can resolve; use " + option + " " + c10::str(epsilon) + " or more" +
                                  (dtype == torch::kFloat64 ? std::string() : ", or --dtype float64"));
    }
}

// The state a run starts from: x_{t0} = sigma(t0) eps (DESIGN.md: the data term is negligible).
torch::Tensor startState(NoiseSource& noise, const ProbabilityPath& path, double t0,
                         const torch::TensorOptions& options) {
    return toDeviceAsync(noise.draw(), options) * path.sigma(t0);
}

// Distances to the final state and each sample's trajectory in the plane of its chord and its
// main deviation (the leading direction of the deviations, by power iteration).
TrajectoryAnalysis analyzeTrajectory(const std::vector<torch::Tensor>& states, const std::vector<double>& times,
                                     const std::vector<double>& velocityRms) {
    TrajectoryAnalysis analysis;
    analysis.times = times;
    analysis.velocityRms = velocityRms;
    // Stacked in float32 (the whole run); each sample's projection is then done in float64.
    const torch::Tensor stacked = torch::stack(states).to(torch::kCPU, torch::kFloat32);  // [F, B, ...]
    const int64_t frames = stacked.size(0);
    const int64_t batch = stacked.size(1);
    const torch::Tensor flat = stacked.reshape({frames, batch, -1});
    const torch::Tensor final = flat[frames - 1];
    analysis.distanceToFinal.resize(frames);
    for (int64_t f = 0; f < frames; ++f) {
        analysis.distanceToFinal[f] = (flat[f] - final).to(torch::kFloat64).pow(2).mean(1).sqrt().mean().item<double>();
    }
    torch::Tensor projection = torch::zeros({batch, frames, 2}, torch::kFloat64);
    for (int64_t b = 0; b < batch; ++b) {
        const torch::Tensor sample = flat.select(1, b).to(torch::kFloat64);
        const torch::Tensor offsets = sample - sample[0];  // [F, D]
        const torch::Tensor chord = offsets[frames - 1];
        const double chordLength = chord.norm().item<double>();
        if (!(chordLength > 0.0)) continue;
        const torch::Tensor e1 = chord / chordLength;
        const torch::Tensor along = offsets.mv(e1);
        const torch::Tensor deviations = offsets - along.unsqueeze(1) * e1.unsqueeze(0);
        torch::Tensor e2 = deviations[deviations.norm(2, 1).argmax()];
        for (int i = 0; i < 8 && e2.norm().item<double>() > 0.0; ++i) {
            e2 = deviations.t().mv(deviations.mv(e2 / e2.norm()));
        }
        const double e2Norm = e2.norm().item<double>();
        projection[b].select(1, 0).copy_(along / chordLength);
        if (e2Norm > 0.0) projection[b].select(1, 1).copy_(deviations.mv(e2 / e2Norm).abs() / chordLength);
    }
    analysis.projection = toHostArray(projection);
    return analysis;
}

// Velocities of the model on a res x res grid over [-extent, extent]^2 at one point of the path.
HostArray velocityField(Model& model, const PathPoint& p, int resolution, double extent,
                        const torch::TensorOptions& options) {
    const torch::Tensor axis = torch::linspace(-extent, extent, resolution, options);
    const auto grids = torch::meshgrid({axis, axis.flip(0)}, "xy");
    const torch::Tensor points = torch::stack({grids[0].reshape(-1), grids[1].reshape(-1)}, 1);
    const torch::Tensor data = model.denoise(points, p.alpha, p.sigma);
    return toHostArray(velocityFromData(data, points, p).reshape({resolution, resolution, 2}));
}

// Copies of frame tensors to the host that do not stop the GPU: on CUDA they run on a side stream
// into pinned memory after the work queued so far, and the engine hands a frame over only once
// the next step is queued, so the GPU never waits for the observer. On the CPU nothing is copied.
class FrameStager {
public:
    struct Staged {
        std::vector<torch::Tensor> host;    // on the CPU once done
        std::vector<torch::Tensor> source;  // kept alive until the copies are done
        std::optional<c10::Event> done;
    };

    explicit FrameStager(const torch::Device& device) : m_device(device) {
        if (device.is_cuda()) m_side = c10::impl::VirtualGuardImpl(device.type()).getStreamFromGlobalPool(device);
    }
    bool deferred() const { return m_side.has_value(); }

    Staged stage(std::vector<torch::Tensor> tensors) {
        Staged staged;
        if (!m_side) {
            staged.host = std::move(tensors);
            return staged;
        }
        const c10::impl::VirtualGuardImpl impl(m_device.type());
        c10::Event queued(m_device.type());
        queued.record(impl.getStream(m_device));
        queued.block(*m_side);
        {
            const c10::StreamGuard onSide(*m_side);
            for (const auto& tensor : tensors) {
                if (!tensor.defined()) {
                    staged.host.emplace_back();
                    continue;
                }
                torch::Tensor host = torch::empty(tensor.sizes(), tensor.options().device(torch::kCPU).pinned_memory(true));
                host.copy_(tensor, /*non_blocking=*/true);
                staged.host.push_back(std::move(host));
            }
        }
        staged.done.emplace(m_device.type());
        staged.done->record(*m_side);
        staged.source = std::move(tensors);
        return staged;
    }

    static void wait(Staged& staged) {
        if (!staged.done) return;
        while (!staged.done->query()) std::this_thread::sleep_for(std::chrono::microseconds(20));
        staged.source.clear();
    }

private:
    torch::Device m_device;
    std::optional<c10::Stream> m_side;
};

// An image batch [B, C, H, W] averaged down on its device so that neither side exceeds `size`.
torch::Tensor fitForPreview(const torch::Tensor& images, int size) {
    if (size <= 0 || images.dim() != 4 || (images.size(2) <= size && images.size(3) <= size)) return images;
    const int64_t factor = (std::max(images.size(2), images.size(3)) + size - 1) / size;
    namespace F = torch::nn::functional;
    return F::interpolate(images, F::InterpolateFuncOptions()
                                      .size(std::vector<int64_t>{std::max<int64_t>(1, images.size(2) / factor),
                                                                 std::max<int64_t>(1, images.size(3) / factor)})
                                      .mode(torch::kArea));
}

template <typename Result>
Result failureResult(Failure failure, std::string message) {
    Result result;
    result.failure = failure;
    result.error = std::move(message);
    return result;
}

// The first line of a LibTorch message, without its backtrace.
std::string firstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

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

}  // namespace

void checkSeeds(uint64_t seed, int64_t count) {
    const uint64_t last = seed + uint64_t(std::max<int64_t>(count, 1)) - 1;
    if (last > kMaxSeed) {
        throw InvalidRequestError("the seed " + std::to_string(seed) + " with " + std::to_string(count) +
                                  " samples uses seeds up to " + std::to_string(last) +
                                  ", past 4294967295 (the generator keeps 32 bits); use a smaller seed");
    }
}

int64_t HostArray::count() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return shape.empty() ? 0 : n;
}

struct Engine::Impl {
    explicit Impl(FolderLoader loader)
        : catalog([loader](const std::string& folder, int resolution, std::vector<std::string>& notes,
                           const std::atomic<bool>* cancel) {
              if (!loader) throw InvalidRequestError("this build cannot read image folders");
              HostArray images = loader(folder, resolution, notes, cancel);
              return torch::from_blob(images.values.data(), images.shape, torch::kFloat32).clone();
          }) {}
    ModelCatalog catalog;
    // Reference solves by their settings, so sweeps split into single cells share them.
    std::map<std::string, torch::Tensor> references;
    GraphCache graphs;

    void releaseMemory() {
        graphs.clear();
        references.clear();
        releaseCachedDeviceMemory();
    }
};

Engine::Engine(FolderLoader folderLoader) : m_impl(std::make_unique<Impl>(std::move(folderLoader))) {
    configureThreads();
}

Engine::~Engine() = default;

SampleResult Engine::sample(const SampleRequest& request, const FrameCallback& onFrame,
                            const std::atomic<bool>* cancel) {
    return guarded<SampleResult>([&] {
        c10::InferenceMode inference;
        const auto started = std::chrono::steady_clock::now();
        checkRanges(request.steps, request.batch, request.tEnd);
        checkSeeds(request.seed, request.batch);
        const auto path = makePath(request.path);
        const auto solver = makeSolver(request.solver, {request.rtol, request.atol});
        // Fixed-step solvers ignore the tolerances, but a negative one is a mistake all the same.
        if (!(request.rtol > 0.0) || !(request.atol > 0.0)) {
            throw InvalidRequestError("--rtol and --atol must be above 0 (got " + c10::str(request.rtol) + " and " +
                                      c10::str(request.atol) + "); the defaults are 1e-5");
        }
        const ScheduleSpec schedule = parseSchedule(request.schedule);
        const torch::Device device = resolveDevice(request.device);
        const torch::ScalarType dtype = resolveDtype(request.dtype, device);
        // rtol sets the precision floor (atol is absolute and may be far smaller).
        if (solver->isAdaptive()) checkTolerance(request.rtol, "--rtol", dtype);

        SampleResult result;
        const auto model =
            m_impl->catalog.load(request.model, request.resolution, result.notes, request.trustModel, cancel);
        const auto shape = model->sampleShape();
        const auto grid = makeTimeGrid(schedule, *path, request.steps, fluxTokenCount(shape), request.tEnd);
        if (static_cast<int>(grid.size()) - 1 != request.steps) {
            result.notes.push_back("the first " + std::to_string(request.steps + 1 - static_cast<int>(grid.size())) +
                                   " times of the '" + request.schedule + "' grid lie beyond the noisiest point of the '" +
                                   request.path + "' path and were merged: " + std::to_string(grid.size() - 1) +
                                   " steps run");
        }
        if (solver->isAdaptive()) {
            result.notes.push_back("dopri5 chooses its own steps (rtol " + c10::str(request.rtol) + ", atol " +
                                   c10::str(request.atol) + "); --steps only sets where the schedule starts");
        }

        if ((request.recordTrajectory || request.analyze) && !solver->isAdaptive()) {
            // Every state and prediction of the run is kept in the run's dtype, then copied for
            // the caller in float32.
            double values = 2.0 * double(grid.size()) * request.batch;
            for (const int64_t size : shape) values *= double(size);
            checkFitsInMemory(values * (double(c10::elementSize(dtype)) + 4.0), 0.5,
                              "keeping all " + std::to_string(grid.size()) + " states of " + std::to_string(request.batch) +
                                  " samples",
                              "use fewer steps or a smaller batch, or keep only the final samples");
        }
        const auto options = torch::TensorOptions().device(device).dtype(dtype);
        NoiseSource noise(shape, request.seed, request.batch);
        const torch::Tensor x0 = startState(noise, *path, grid.front(), options);

        SamplingOptions sampling;
        sampling.recordTrajectory = request.recordTrajectory || request.analyze;
        sampling.cancel = cancel;
        sampling.graphs = &m_impl->graphs;
        sampling.captureGraphs = request.cudaGraphs;
        const bool field = request.velocityFieldResolution > 1 && shape.size() == 1 && shape[0] == 2;
        std::vector<double> velocityRms;
        // A frame's tensors: velocity RMS, state, prediction, then the two previews when the model has them.
        struct PendingFrame {
            StepFrame frame;
            FrameStager::Staged staged;
        };
        FrameStager stager(device);
        std::optional<PendingFrame> pending;
        const auto deliver = [&](PendingFrame& item) {
            FrameStager::wait(item.staged);
            auto& host = item.staged.host;
            StepFrame& frame = item.frame;
            frame.velocityRms = host[0].defined() ? host[0].item<double>() : 0.0;
            velocityRms.push_back(frame.velocityRms);
            if (!onFrame) return;
            frame.state = toHostArray(host[1]);
            frame.prediction = toHostArray(host[2]);
            if (host.size() > 3) {
                frame.statePreview = toHostArray(host[3]);
                frame.predictionPreview = toHostArray(host[4]);
            }
            onFrame(frame);
        };
        if (onFrame || request.analyze) {
            sampling.onFrame = [&](const FrameView& view) {
                PendingFrame item;
                StepFrame& frame = item.frame;
                frame.index = view.index;
                frame.plannedSteps = view.plannedSteps;
                frame.t = view.t;
                frame.alpha = view.point.alpha;
                frame.sigma = view.point.sigma;
                frame.nfe = view.nfe;
                frame.final = view.final;
                std::vector<torch::Tensor> tensors{view.velocityRms};
                if (onFrame) {
                    tensors.push_back(fitForPreview(*view.state, request.previewSize));
                    tensors.push_back(fitForPreview(*view.prediction, request.previewSize));
                    if (model->hasPreview()) {
                        frame.decoded = model->hasDecoder() &&
                                        (view.final || (request.decodeEvery > 0 && view.index % request.decodeEvery == 0));
                        tensors.push_back(fitForPreview(model->preview(*view.state, view.final && frame.decoded),
                                                        request.previewSize));
                        tensors.push_back(fitForPreview(model->preview(*view.prediction, frame.decoded),
                                                        request.previewSize));
                    }
                    if (field && view.point.sigma > 0.0) {
                        frame.velocityField = velocityField(*model, view.point, request.velocityFieldResolution,
                                                            request.fieldExtent, options);
                    }
                }
                item.staged = stager.stage(std::move(tensors));
                if (!stager.deferred()) {
                    deliver(item);
                    return;
                }
                // GPU: hand over the previous frame now that this step's work is queued behind it.
                if (pending) deliver(*pending);
                pending = std::move(item);
                if (view.final) {
                    deliver(*pending);
                    pending.reset();
                }
            };
        }
        SamplingOutcome outcome = runSampler(*model, *path, *solver, grid, x0, &noise, sampling);
        for (auto& note : outcome.notes) result.notes.push_back(std::move(note));
        for (auto& note : model->takeNotes()) result.notes.push_back(std::move(note));
        result.cudaGraph = outcome.replayedGraph;

        result.sampleShape = shape;
        result.device = describeDevice(device);
        result.nfe = outcome.nfe;
        result.steps = outcome.steps;
        result.pathLengthRatio = outcome.pathLengthRatio;
        result.straightness = outcome.straightness;
        result.pathLengthRatios = toVector(outcome.pathLengthRatios);
        result.straightnesses = toVector(outcome.straightnesses);
        result.initial = toHostArray(outcome.initial);
        result.final = toHostArray(outcome.final);
        result.times = outcome.times;
        if (request.analyze) result.analysis = analyzeTrajectory(outcome.trajectory, outcome.times, velocityRms);
        if (request.recordTrajectory) {
            result.trajectory = toHostArray(torch::stack(outcome.trajectory));
            if (request.recordPredictions) result.predictions = toHostArray(torch::stack(outcome.predictions));
        }
        if (model->hasPreview()) {
            result.finalImage = toHostArray(model->preview(outcome.final, true));
            if (request.recordTrajectory) {
                result.trajectoryImages = toHostArray(model->preview(torch::stack(outcome.trajectory).flatten(0, 1), false)
                                                     .unflatten(0, {-1, request.batch}));
                if (request.recordPredictions) {
                    result.predictionImages =
                        toHostArray(model->preview(torch::stack(outcome.predictions).flatten(0, 1), false)
                                   .unflatten(0, {-1, request.batch}));
                }
            }
        }
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        return result;
    }, [this] { m_impl->releaseMemory(); });
}

SweepResult Engine::sweep(const SweepRequest& request, const RowCallback& onRow, const std::atomic<bool>* cancel) {
    return guarded<SweepResult>([&] {
        c10::InferenceMode inference;
        if (request.paths.empty() || request.solvers.empty() || request.steps.empty() || request.schedules.empty()) {
            throw InvalidRequestError("a sweep needs at least one path, solver, schedule and step count");
        }
        for (int steps : request.steps) checkRanges(steps, request.batch, request.tEnd);
        checkSeeds(request.seed, request.batch);
        for (const auto& name : request.paths) makePath(name);
        for (const auto& name : request.solvers) makeSolver(name);
        for (const auto& name : request.schedules) parseSchedule(name);
        const torch::Device device = resolveDevice(request.device);
        // The reference runs in float64 so that its own error sits far below the solvers' errors.
        const auto referenceOptions =
            torch::TensorOptions().device(device).dtype(resolveDtype(request.referenceDtype, device));
        const auto runOptions = torch::TensorOptions().device(device).dtype(torch::kFloat32);
        const auto referenceSolver =
            makeSolver(request.referenceSolver, {request.referenceTolerance, request.referenceTolerance});
        if (referenceSolver->isAdaptive()) {
            checkTolerance(request.referenceTolerance, "--reference-tol", referenceOptions.dtype().toScalarType());
        }

        SweepResult result;
        const auto model =
            m_impl->catalog.load(request.model, request.resolution, result.notes, request.trustModel, cancel);
        const auto shape = model->sampleShape();

        SamplingOptions sampling;
        sampling.cancel = cancel;
        sampling.graphs = &m_impl->graphs;
        sampling.captureGraphs = request.cudaGraphs;
        // The cells in the order rows are reported: path, schedule, solver, steps.
        struct Cell {
            std::string pathName, solverName;
            ScheduleSpec schedule;
            int steps = 0;
            std::vector<double> grid;
            torch::Tensor reference;
            bool done = false;
            SweepRow row;
        };
        std::vector<std::unique_ptr<ProbabilityPath>> paths;
        std::vector<Cell> cells;
        for (const auto& pathName : request.paths) {
            paths.push_back(makePath(pathName));
            for (const auto& scheduleName : request.schedules) {
                for (const auto& solverName : request.solvers) {
                    for (int steps : request.steps) {
                        Cell cell;
                        cell.pathName = pathName;
                        cell.solverName = solverName;
                        cell.schedule = parseSchedule(scheduleName);
                        cell.steps = steps;
                        cell.grid = makeTimeGrid(cell.schedule, *paths.back(), steps, fluxTokenCount(shape), request.tEnd);
                        cells.push_back(std::move(cell));
                    }
                }
            }
        }
        const auto pathOf = [&](const Cell& cell) -> const ProbabilityPath& {
            const auto index = std::find(request.paths.begin(), request.paths.end(), cell.pathName) - request.paths.begin();
            return *paths[index];
        };
        // The reference for a cell: a float64 dopri5 solve from the same noise over the same span,
        // shared by every cell with the same start (and kept for later sweeps).
        const auto referenceKey = [&](const Cell& cell) {
            std::ostringstream key;
            key.precision(17);
            key << request.model << '|' << request.resolution << '|' << request.seed << '|' << request.batch << '|'
                << cell.pathName << '|' << cell.grid.front() << '|' << request.tEnd << '|' << request.referenceSolver
                << '|' << request.referenceTolerance << '|' << request.referenceDtype << '|' << device.str();
            return key.str();
        };
        auto& references = m_impl->references;
        const auto referenceFor = [&](const Cell& cell) {
            const std::string key = referenceKey(cell);
            if (references.size() > 64 && !references.count(key)) references.clear();
            auto& reference = references[key];
            if (!reference.defined()) {
                NoiseSource noise(shape, request.seed, request.batch);
                const auto x0 = startState(noise, pathOf(cell), cell.grid.front(), referenceOptions);
                std::vector<double> span{cell.grid.front(), request.tEnd};
                reference = runSampler(*model, pathOf(cell), *referenceSolver, span, x0, &noise, sampling).final;
            }
            return reference;
        };
        // Cells of one solver run together as lanes of one batch, at most kLaneRows rows at a time
        // (a quarter of that for dopri5, which holds some fourteen copies of its state, in
        // float64 for the references).
        constexpr int64_t kLaneRows = 2048;
        constexpr int64_t kAdaptiveLaneRows = kLaneRows / 4;
        // The references the sweep lacks, solved together as dopri5 lanes (each lane picks its
        // own steps, so each reference is what it is alone).
        if (request.batchLanes && request.referenceSolver == "dopri5") {
            std::map<std::string, const Cell*> missing;
            const auto findMissing = [&] {
                for (const auto& cell : cells) {
                    const std::string key = referenceKey(cell);
                    if (!references.count(key)) missing.emplace(key, &cell);
                }
            };
            findMissing();
            if (references.size() + missing.size() > 64) {
                references.clear();
                findMissing();
            }
            for (auto first = missing.begin(); first != missing.end();) {
                std::vector<Lane> lanes;
                std::vector<std::string> keys;
                std::deque<NoiseSource> noises;
                for (; first != missing.end() && (lanes.empty() || int64_t(lanes.size() + 1) * request.batch <= kAdaptiveLaneRows); ++first) {
                    const Cell& cell = *first->second;
                    NoiseSource& noise = noises.emplace_back(shape, request.seed, request.batch);
                    lanes.push_back({&pathOf(cell), {cell.grid.front(), request.tEnd},
                                     startState(noise, pathOf(cell), cell.grid.front(), referenceOptions), &noise});
                    keys.push_back(first->first);
                }
                const auto outcomes = runLanes(*model, "dopri5", lanes, {request.referenceTolerance, request.referenceTolerance},
                                               cancel, &m_impl->graphs);
                for (size_t k = 0; k < keys.size(); ++k) references[keys[k]] = outcomes[k].final;
            }
        }
        const auto fillRow = [&](Cell& cell, const SamplingOutcome& outcome, double seconds) {
            SweepRow& row = cell.row;
            row.path = cell.pathName;
            row.solver = cell.solverName;
            row.schedule = toString(cell.schedule);
            row.steps = cell.steps;
            row.nfe = outcome.nfe;
            row.rmse = (outcome.final.to(torch::kFloat64) - cell.reference.to(torch::kFloat64)).pow(2).mean().sqrt().item<double>();
            row.pathLengthRatio = outcome.pathLengthRatio;
            row.straightness = outcome.straightness;
            if (request.keepFinals) row.final = toHostArray(outcome.final);
            row.seconds = seconds;
            cell.done = true;
        };
        // The cells of one solver as lanes of one batch: a row's seconds is its share of the
        // batch's time by evaluations. dopri5 ignores the step count, so its cells that differ
        // only there are one lane.
        const auto runTogether = [&](const std::string& solverName) {
            const bool adaptive = solverName == "dopri5";
            std::vector<size_t> members;
            for (size_t c = 0; c < cells.size(); ++c) {
                if (cells[c].solverName == solverName && !cells[c].done) members.push_back(c);
            }
            for (size_t c : members) cells[c].reference = referenceFor(cells[c]);
            const auto laneKey = [&](size_t c) {
                if (!adaptive) return std::to_string(c);
                std::ostringstream key;
                key.precision(17);
                key << cells[c].pathName << '|' << cells[c].grid.front() << '|' << cells[c].grid.back();
                return key.str();
            };
            for (size_t first = 0; first < members.size();) {
                std::vector<Lane> lanes;
                std::map<std::string, size_t> laneOf;
                std::vector<std::pair<size_t, size_t>> cellLanes;  // (cell, lane)
                std::deque<NoiseSource> noises;  // each lane's, kept for the stochastic solvers' draws
                for (; first < members.size(); ++first) {
                    const Cell& cell = cells[members[first]];
                    const auto [found, added] = laneOf.emplace(laneKey(members[first]), lanes.size());
                    if (added) {
                        if (!lanes.empty() && int64_t(lanes.size() + 1) * request.batch > (adaptive ? kAdaptiveLaneRows : kLaneRows)) {
                            laneOf.erase(found);
                            break;
                        }
                        NoiseSource& noise = noises.emplace_back(shape, request.seed, request.batch);
                        lanes.push_back(
                            {&pathOf(cell), cell.grid, startState(noise, pathOf(cell), cell.grid.front(), runOptions), &noise});
                    }
                    cellLanes.emplace_back(members[first], found->second);
                }
                const auto started = std::chrono::steady_clock::now();
                const auto outcomes = runLanes(*model, solverName, lanes, {}, cancel, &m_impl->graphs);
                const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
                double evaluations = 0.0;
                for (const auto& outcome : outcomes) evaluations += outcome.nfe;
                for (const auto& [cell, lane] : cellLanes) {
                    const auto& outcome = outcomes[lane];
                    fillRow(cells[cell], outcome, evaluations > 0 ? seconds * outcome.nfe / evaluations : 0.0);
                }
            }
        };
        for (auto& cell : cells) {
            if (!cell.done && request.batchLanes && solverRunsLanes(cell.solverName)) runTogether(cell.solverName);
            if (!cell.done) {
                cell.reference = referenceFor(cell);
                const auto solver = makeSolver(cell.solverName);
                // Timed from here: the run itself, not the shared reference solve.
                const auto started = std::chrono::steady_clock::now();
                NoiseSource noise(shape, request.seed, request.batch);
                const auto x0 = startState(noise, pathOf(cell), cell.grid.front(), runOptions);
                const auto outcome = runSampler(*model, pathOf(cell), *solver, cell.grid, x0, &noise, sampling);
                fillRow(cell, outcome, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
            }
            if (onRow) onRow(cell.row);
            result.rows.push_back(cell.row);
        }
        for (auto& note : model->takeNotes()) result.notes.push_back(std::move(note));
        return result;
    }, [this] { m_impl->releaseMemory(); });
}

bool BundleInfo::needsTrust() const {
    for (const auto& program : programs) {
        if (!program.trusted) return true;
    }
    return false;
}

BundleInfo Engine::inspectBundle(const std::string& directory) {
    BundleInfo info;
    try {
        const BundleManifest manifest = readBundleManifest(directory);
        info.name = manifest.name;
        info.format = manifest.format;
        info.sampleShape = manifest.sampleShape;
        info.latent = manifest.isLatent();
        const TrustList trust;
        for (const auto& file : manifest.programFiles()) {
            BundleInfo::Program program;
            program.file = file;
            program.path = manifest.resolve(file);
            std::error_code error;
            if (!std::filesystem::is_regular_file(program.path, error)) {
                throw BundleError("bundle '" + manifest.name + "' names '" + file + "', which is not a file in " + directory);
            }
            program.sha256 = sha256OfFile(program.path);
            program.trusted = trust.contains(program.sha256);
            info.programs.push_back(program);
        }
        info.ok = true;
    } catch (const std::exception& error) {
        info.error = error.what();
    }
    return info;
}

bool Engine::trustProgram(const BundleInfo::Program& program, std::string* error) {
    try {
        TrustList().add(program.sha256, program.path);
        return true;
    } catch (const std::exception& failure) {
        if (error) *error = "cannot remember the trusted model in " + TrustList::defaultPath() + ": " + failure.what();
        return false;
    }
}

HostArray Engine::referenceSamples(const std::string& spec, int count) {
    c10::InferenceMode inference;
    try {
        if (spec.starts_with("points:")) return toHostArray(makePointCloud(spec.substr(7)));
        if (spec.starts_with("gmm:")) {
            const auto mixture = GaussianMixture::named(spec.substr(4));
            at::Generator generator = at::detail::createCPUGenerator(7);
            const auto component = torch::multinomial(mixture->weights(), count, true, generator);
            const auto means = mixture->means().index_select(0, component);
            const auto stds = mixture->stds().index_select(0, component).unsqueeze(1);
            return toHostArray(means + stds * torch::randn(means.sizes(), generator, torch::kFloat64));
        }
    } catch (const std::exception&) {
        // An unknown spec simply has no reference points; sampling reports the error itself.
    }
    return {};
}


bool Engine::solverIsAdaptive(const std::string& solver) { return makeSolver(solver, {})->isAdaptive(); }

EngineInfo Engine::info() {
    configureThreads();
    EngineInfo info;
    info.version = version();
    info.libtorchVersion = TORCH_VERSION;
    info.cudaAvailable = cudaAvailable();
    info.defaultDevice = describeDevice(resolveDevice("auto"));
    info.threads = at::get_num_threads();
    info.models = ModelCatalog::specNames();
    info.paths = pathNames();
    info.solvers = solverNames();
    info.schedules = scheduleNames();
    info.scheduleForms = scheduleForms();
    info.parameterizations = parameterizationNames();
    info.devices = deviceNames();
    info.fashionMnistDirectory = fashionMnistDirectory();
    std::error_code ec;
    info.fashionMnistInstalled =
        std::filesystem::exists(std::filesystem::path(info.fashionMnistDirectory) / "train-images-idx3-ubyte.gz", ec);
    return info;
}

std::vector<std::string> Engine::names(NameKind kind) {
    switch (kind) {
        case NameKind::Path: return pathNames();
        case NameKind::Solver: return solverNames();
        case NameKind::Device: return deviceNames();
        case NameKind::Schedule: break;
    }
    std::vector<std::string> schedules = scheduleNames();
    std::replace(schedules.begin(), schedules.end(), std::string("shift:S"), std::string("shift:3"));
    return schedules;
}

std::string Engine::checkName(NameKind kind, const std::string& name) {
    try {
        switch (kind) {
            case NameKind::Path: makePath(name); break;
            case NameKind::Solver: makeSolver(name); break;
            case NameKind::Schedule: parseSchedule(name); break;
            case NameKind::Device:
                if (std::find(deviceNames().begin(), deviceNames().end(), name) == deviceNames().end()) {
                    throw UnknownNameError("device", name, deviceNames());
                }
                break;
        }
    } catch (const std::exception& error) {
        return error.what();
    }
    return {};
}

}  // namespace flowscope::core
