#include "core/api/Engine.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <optional>

#include <c10/util/Exception.h>

#include "core/engine/EngineImpl.h"
#include "core/engine/FramePipeline.h"
#include "core/engine/HostArrays.h"
#include "core/engine/TrajectoryAnalysis.h"
#include "core/sampling/DeviceTransfer.h"
#include "core/sampling/Guidance.h"
#include "core/sampling/Sampler.h"
#include "core/sampling/Schedule.h"

namespace flowscope::core {

SampleSetup checkSampleRequest(const SampleRequest& request) {
    checkRanges(request.steps, request.batch, request.tEnd);
    checkSeeds(request.seed, request.batch);
    SampleSetup setup;
    setup.path = makePath(request.path);
    setup.solver = makeSolver(request.solver, {request.rtol, request.atol});
    // Fixed-step solvers ignore the tolerances, but a negative one is a mistake all the same.
    if (!(request.rtol > 0.0) || !(request.atol > 0.0)) {
        throw InvalidRequestError("--rtol and --atol must be above 0 (got " + c10::str(request.rtol) + " and " +
                                  c10::str(request.atol) + "); the defaults are 1e-5");
    }
    setup.schedule = parseSchedule(request.schedule);
    checkGuidance(request.guidance);
    setup.device = resolveDevice(request.device);
    setup.dtype = resolveDtype(request.dtype, setup.device);
    // rtol sets the precision floor (atol is absolute and may be far smaller).
    if (setup.solver->isAdaptive()) checkTolerance(request.rtol, "--rtol", setup.dtype);
    return setup;
}

// What the user should know about the grid the run takes, and a refusal in words when keeping
// every state would not fit in memory.
void checkGrid(const SampleRequest& request, const SampleSetup& setup, const std::vector<int64_t>& shape,
               const std::vector<double>& grid, std::vector<std::string>& notes) {
    if (static_cast<int>(grid.size()) - 1 != request.steps) {
        notes.push_back("the first " + std::to_string(request.steps + 1 - static_cast<int>(grid.size())) +
                        " times of the '" + request.schedule + "' grid lie beyond the noisiest point of the '" +
                        request.path + "' path and were merged: " + std::to_string(grid.size() - 1) + " steps run");
    }
    if (setup.solver->isAdaptive()) {
        notes.push_back(request.solver + " chooses its own steps (rtol " + c10::str(request.rtol) + ", atol " +
                        c10::str(request.atol) + "); --steps only sets where the schedule starts");
    }
    if ((request.recordTrajectory || request.analyze) && !setup.solver->isAdaptive()) {
        // Every state and prediction of the run is kept in the run's dtype, then copied for the
        // caller in float32.
        double values = 2.0 * double(grid.size()) * request.batch;
        for (const int64_t size : shape) values *= double(size);
        checkFitsInMemory(values * (double(c10::elementSize(setup.dtype)) + 4.0), 0.5,
                          "keeping all " + std::to_string(grid.size()) + " states of " + std::to_string(request.batch) +
                              " samples",
                          "use fewer steps or a smaller batch, or keep only the final samples");
    }
}

namespace {

// The sampler's outcome as the facade's result: host copies, measures and previews.
void fillResult(SampleResult& result, SamplingOutcome& outcome, const SampleRequest& request, Model& model,
                const std::vector<double>& velocityRms) {
    result.cudaGraph = outcome.replayedGraph;
    result.nfe = outcome.nfe;
    result.steps = outcome.steps;
    result.pathLengthRatio = outcome.pathLengthRatio;
    result.straightness = outcome.straightness;
    result.pathLengthRatios = toVector(outcome.pathLengthRatios);
    result.straightnesses = toVector(outcome.straightnesses);
    result.initial = toHostArray(outcome.initial);
    result.final = toHostArray(outcome.final);
    result.times = outcome.times;
    result.stepSizes = outcome.stepSizes;
    if (request.analyze) result.analysis = analyzeTrajectory(outcome.trajectory, outcome.times, velocityRms);
    if (request.recordTrajectory) {
        result.trajectory = toHostArray(torch::stack(outcome.trajectory));
        if (request.recordPredictions) result.predictions = toHostArray(torch::stack(outcome.predictions));
    }
    if (model.hasPreview()) {
        result.finalImage = toHostArray(model.preview(outcome.final, true));
        if (request.recordTrajectory) {
            result.trajectoryImages = toHostArray(model.preview(torch::stack(outcome.trajectory).flatten(0, 1), false)
                                                      .unflatten(0, {-1, request.batch}));
            if (request.recordPredictions) {
                result.predictionImages = toHostArray(model.preview(torch::stack(outcome.predictions).flatten(0, 1), false)
                                                          .unflatten(0, {-1, request.batch}));
            }
        }
    }
}

// An image start at t = 1 (strength 0): the result is the data itself, without a step.
void fillWithData(SampleResult& result, const torch::Tensor& data, Model& model, const SampleRequest& request) {
    result.initial = toHostArray(data);
    result.final = result.initial;
    result.times = {1.0};
    result.pathLengthRatio = 1.0;
    result.pathLengthRatios.assign(static_cast<size_t>(request.batch), 1.0);
    result.straightnesses.assign(static_cast<size_t>(request.batch), 0.0);
    result.noiseDraws = 1;
    result.notes.push_back("the run starts at t = 1 (strength 0): the image is the result, and no step was taken");
    if (request.recordTrajectory) {
        result.trajectory = toHostArray(data.unsqueeze(0));
        if (request.recordPredictions) result.predictions = result.trajectory;
    }
    if (model.hasPreview()) {
        result.finalImage = toHostArray(model.preview(data, true));
        if (request.recordTrajectory) result.trajectoryImages = toHostArray(model.preview(data, false).unsqueeze(0));
        if (request.recordTrajectory && request.recordPredictions) result.predictionImages = result.trajectoryImages;
    }
}

}  // namespace

std::shared_ptr<Model> loadModel(ModelCatalog& catalog, const std::string& spec, int resolution, const TextSettings& text,
                                 const std::string& device, std::vector<std::string>& notes, bool trustModel,
                                 const std::atomic<bool>* cancel) {
    const bool checkpoint = specHasForm(spec, SpecForm::Checkpoint);
    auto model = catalog.load(spec, checkpoint ? 0 : resolution, notes, trustModel, cancel, text);
    if (!model->takesText()) {
        if (!text.prompt.empty()) {
            throw InvalidRequestError("'" + spec + "' takes no prompt: prompts condition text-to-image checkpoints "
                                      "(checkpoint:PATH); a class model takes --class");
        }
        if (text.width > 0 || text.height > 0) {
            throw InvalidRequestError("--width and --height apply to checkpoint:PATH models; '" + spec +
                                      "' takes --resolution");
        }
        // Every run, so that one without files goes back to the manifest's tensors.
        model->setConditioningFiles(text.conditioning, text.unconditioning);
        return model;
    }
    model->setConditioningFiles(text.conditioning, text.unconditioning);  // refuses any
    TextSettings settings = text;
    if (settings.width == 0 && settings.height == 0 && resolution > 0) settings.width = settings.height = resolution;
    model->prepare(resolveDevice(device), torch::kFloat32);
    model->setText(settings, cancel);
    return model;
}

int64_t classIndexOf(const Model& model, const std::string& condition, const std::string& spec) {
    if (condition.empty()) return Model::kNullClass;
    const std::vector<std::string> names = model.classNames();
    if (names.empty()) {
        throw InvalidRequestError("'" + spec + "' is unconditional: it has no classes, so leave out --class (" +
                                  "conditional models: gmm:*, fashion-mnist, folder: with sub-folders, bundles with classes)");
    }
    const auto found = std::find(names.begin(), names.end(), condition);
    if (found != names.end()) return found - names.begin();
    if (condition.find_first_not_of("0123456789") == std::string::npos && condition.size() <= 9) {
        const int64_t index = std::stoll(condition);
        if (index < static_cast<int64_t>(names.size())) return index;
    }
    std::string valid;
    for (size_t k = 0; k < names.size(); ++k) valid += (k ? ", " : "") + std::to_string(k) + " '" + names[k] + "'";
    throw InvalidRequestError("'" + spec + "' has no class '" + condition + "'; its classes are " + valid);
}

std::shared_ptr<Model> conditionedModel(const std::shared_ptr<Model>& model, const std::string& spec,
                                        const std::string& condition, const GuidanceSettings& guidance,
                                        const ProbabilityPath& path, bool adaptive) {
    int64_t classIndex = classIndexOf(*model, condition, spec);
    // SD3 is conditioned on its prompt (its null class is the negative prompt), a bundle on its
    // conditioning tensors (the null class: --uncond's, or zeros). An unguided bundle runs as it
    // is: rows without a class take its conditional tensors, and its runs stay batched and
    // capturable.
    if (classIndex == Model::kNullClass && model->conditionedByInput()) {
        if (!model->takesText() && !guidance.guides()) return model;
        classIndex = 0;
    }
    if (classIndex == Model::kNullClass) {
        if (guidance.guides() && model->takesText()) {
            throw InvalidRequestError(model->name() + " has no classifier-free guidance: it is guidance-distilled (FLUX.1 " +
                                      "[dev] takes --flux-guidance instead); leave out --cfg and --guidance");
        }
        if (guidance.guides()) {
            throw InvalidRequestError("guidance steers towards a class: give --class (" +
                                      (model->isConditional() ? "'" + spec + "' has " + joinNames(model->classNames())
                                                              : "'" + spec + "' is unconditional") +
                                      ")");
        }
        return model;
    }
    if (adaptive && guidance.method == GuidanceMethod::CfgZero && guidance.cfgZeroSteps > 0) {
        throw InvalidRequestError("--cfg-zero-steps counts fixed steps, and an adaptive solver chooses its own: use a "
                                  "fixed-step solver or --cfg-zero-steps 0");
    }
    return std::make_shared<GuidedModel>(model, classIndex, guidance, path);
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

torch::Tensor startState(NoiseSource& noise, const ProbabilityPath& path, double t0,
                         const torch::TensorOptions& options) {
    return toDeviceAsync(noise.draw(), options) * path.sigma(t0);
}

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

Engine::Impl::Impl(FolderLoader loader)
    : catalog([loader](const std::string& folder, int resolution, std::vector<std::string>& notes,
                       const std::atomic<bool>* cancel) {
          if (!loader) throw InvalidRequestError("this build cannot read image folders");
          HostArray images = loader(folder, resolution, notes, cancel);
          return torch::from_blob(images.values.data(), images.shape, torch::kFloat32).clone();
      }) {}

void Engine::Impl::releaseMemory() {
    graphs.clear();
    releaseCachedDeviceMemory();
}

Engine::Engine(FolderLoader folderLoader) : m_impl(std::make_unique<Impl>(std::move(folderLoader))) {
    configureThreads();
}

Engine::~Engine() = default;

SampleResult Engine::sample(const SampleRequest& request, const FrameCallback& onFrame,
                            const std::atomic<bool>* cancel) {
    return guarded<SampleResult>([&] {
        c10::InferenceMode inference;
        const auto started = std::chrono::steady_clock::now();
        const SampleSetup setup = checkSampleRequest(request);
        SampleResult result;
        const auto loaded = loadModel(m_impl->catalog, request.model, request.resolution, request.text, request.device,
                                      result.notes, request.trustModel, cancel);
        const auto model = conditionedModel(loaded, request.model, request.condition, request.guidance, *setup.path,
                                            setup.solver->isAdaptive());
        const auto* guided = dynamic_cast<const GuidedModel*>(model.get());
        const auto shape = model->sampleShape();
        const auto fullGrid =
            makeTimeGrid(setup.schedule, *setup.path, request.steps, fluxTokenCount(shape), request.tEnd);
        checkGrid(request, setup, shape, fullGrid, result.notes);

        const auto options = torch::TensorOptions().device(setup.device).dtype(setup.dtype);
        m_impl->graphs.prepare(*model, setup.device, setup.dtype);
        NoiseSource noise(shape, request.seed, request.batch);
        PreparedStart start = prepareStart(request, *model, *setup.path, fullGrid, noise, options);
        result.sampleShape = shape;
        result.device = describeDevice(setup.device);
        if (start.data.defined()) {
            fillWithData(result, start.data, *model, request);
            if (onFrame) {
                StepFrame frame;
                frame.t = 1.0;
                frame.final = true;
                frame.state = result.final;
                frame.prediction = result.final;
                if (model->hasPreview()) frame.statePreview = frame.predictionPreview = result.finalImage;
                onFrame(frame);
            }
            return result;
        }
        SamplingOptions sampling;
        sampling.recordTrajectory = request.recordTrajectory || request.analyze;
        sampling.cancel = cancel;
        sampling.graphs = &m_impl->graphs;
        // A guided model is made for this run: a graph captured for it would never be replayed. A
        // run with its own conditioning files is not captured either: the next files replace the
        // tensors a graph would read.
        sampling.captureGraphs = request.cudaGraphs && !guided && request.text.conditioning.empty() &&
                                 request.text.unconditioning.empty();
        sampling.history = start.history;
        FramePipeline frames(request, *model, onFrame, options);
        if (onFrame || request.analyze) sampling.onFrame = [&](const FrameView& view) { frames.observe(view); };
        SamplingOutcome outcome =
            runSampler(*model, *setup.path, *setup.solver, std::move(start.grid), start.x0, &noise, sampling);

        for (auto& note : outcome.notes) result.notes.push_back(std::move(note));
        for (auto& note : model->takeNotes()) result.notes.push_back(std::move(note));
        fillResult(result, outcome, request, *model, frames.velocityRms());
        result.noiseDraws = noise.draws();
        result.forwardPasses = guided ? static_cast<int>(guided->forwardPasses()) : outcome.nfe;
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        return result;
    }, [this] { m_impl->releaseMemory(); });
}

}  // namespace flowscope::core
