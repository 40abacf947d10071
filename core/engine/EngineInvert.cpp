// Engine::invert: the probability-flow ODE from data (t = 1) back to the noise that makes it,
// then forwards again from that noise; how well the round trip closes measures a path's
// straightness and a solver's accuracy.
#include <chrono>

#include <c10/util/StringUtil.h>

#include "core/api/Engine.h"
#include "core/engine/EngineImpl.h"
#include "core/engine/FramePipeline.h"
#include "core/engine/HostArrays.h"
#include "core/engine/Normality.h"
#include "core/sampling/Guidance.h"

namespace flowscope::core {
namespace {

// The checks that inversion adds to a sample request's.
void checkInvertRequest(const InvertRequest& request, const SampleSetup& setup) {
    if (setup.solver->isStochastic()) {
        throw InvalidRequestError("'" + request.settings.solver +
                                  "' draws fresh noise at every step: inversion needs a deterministic solver "
                                  "(euler, heun, midpoint, rk4, ddim, dpm++2m, dopri5)");
    }
    if (request.settings.tEnd != 1.0) {
        throw InvalidRequestError("inversion starts from the data at t = 1: leave out --t-end");
    }
    if (request.settings.guidance.method == GuidanceMethod::CfgZero && request.settings.guidance.cfgZeroSteps > 0) {
        throw InvalidRequestError("--cfg-zero-steps holds the first steps from noise still; inversion starts from the "
                                  "data: use --cfg-zero-steps 0");
    }
}

// RMS per element of a - b, per sample.
torch::Tensor rmsPerSample(const torch::Tensor& a, const torch::Tensor& b) {
    return (a - b).to(torch::kFloat64).reshape({a.size(0), -1}).pow(2).mean(1).sqrt();
}

}  // namespace

InvertResult Engine::invert(const InvertRequest& request, const FrameCallback& onFrame, const std::atomic<bool>* cancel) {
    return guarded<InvertResult>([&] {
        c10::InferenceMode inference;
        const auto started = std::chrono::steady_clock::now();
        if (request.images.shape.empty() || request.images.count() == 0) {
            throw InvalidRequestError("inversion needs an image (or a batch of them) to invert");
        }
        SampleRequest settings = request.settings;
        settings.batch = 1;  // until the model's sample shape says how many the images are
        settings.seed = 0;
        settings.start = {};
        const SampleSetup setup = checkSampleRequest(settings);
        checkInvertRequest(request, setup);
        InvertResult result;
        const auto loaded = loadModel(m_impl->catalog, settings.model, settings.resolution, settings.text, settings.device,
                                      result.notes, settings.trustModel, cancel);
        const auto model = conditionedModel(loaded, settings.model, settings.condition, settings.guidance, *setup.path,
                                            setup.solver->isAdaptive());
        const auto* guided = dynamic_cast<const GuidedModel*>(model.get());
        const auto shape = model->sampleShape();
        const bool single = request.imageIsData && request.images.shape == shape;
        settings.batch = single ? 1 : static_cast<int>(request.images.shape[0]);
        checkRanges(settings.steps, settings.batch, 1.0);
        const auto grid = makeTimeGrid(setup.schedule, *setup.path, settings.steps, fluxTokenCount(shape), 1.0);
        checkGrid(settings, setup, shape, grid, result.notes);
        if (!(setup.path->alpha(1.0) > 0.0)) throw std::logic_error("internal: a path without data at t = 1");

        const auto options = torch::TensorOptions().device(setup.device).dtype(setup.dtype);
        m_impl->graphs.prepare(*model, setup.device, setup.dtype);
        const torch::Tensor data =
            samplesFromImages(*model, request.images, request.imageIsData, settings.batch, options, "the image");

        SamplingOptions sampling;
        sampling.recordTrajectory = settings.recordTrajectory;
        sampling.cancel = cancel;
        sampling.graphs = &m_impl->graphs;
        sampling.captureGraphs = settings.cudaGraphs && !guided;
        FramePipeline frames(settings, *model, onFrame, options);
        if (onFrame) sampling.onFrame = [&](const FrameView& view) { frames.observe(view); };

        const std::vector<double> backwards(grid.rbegin(), grid.rend());
        SamplingOutcome inversion = runSampler(*model, *setup.path, *setup.solver, backwards, data, nullptr, sampling);
        const double sigmaStart = setup.path->sigma(grid.front());
        const torch::Tensor noise = inversion.final / sigmaStart;

        result.sampleShape = shape;
        result.device = describeDevice(setup.device);
        result.data = toHostArray(data);
        result.noise = toHostArray(noise);
        result.nfe = inversion.nfe;
        result.steps = inversion.steps;
        result.times = inversion.times;
        if (settings.recordTrajectory) result.trajectory = toHostArray(torch::stack(inversion.trajectory));
        const NormalityFigures figures = normalityOf(std::vector<double>(result.noise.values.begin(), result.noise.values.end()));
        result.noiseMean = figures.mean;
        result.noiseStd = figures.std;
        result.noiseSkewness = figures.skewness;
        result.noiseKurtosis = figures.kurtosis;
        result.normalityDistance = figures.distance;
        result.normalityP = figures.p;

        if (request.roundtrip) {
            SamplingOutcome forward = runSampler(*model, *setup.path, *setup.solver, grid, inversion.final, nullptr, sampling);
            const torch::Tensor rms = rmsPerSample(forward.final, data);
            result.roundtrip = toHostArray(forward.final);
            result.roundtripNfe = forward.nfe;
            result.roundtripRmses = toVector(rms);
            result.roundtripRmse = std::sqrt(rms.pow(2).mean().item<double>());
            if (model->hasPreview()) result.roundtripImage = toHostArray(model->preview(forward.final, true));
        }
        for (auto& note : model->takeNotes()) result.notes.push_back(std::move(note));
        if (settings.guidance.guides() && settings.guidance.scale > 1.0) {
            result.notes.push_back("the noise is the guided ODE's at scale " + c10::str(settings.guidance.scale) +
                                   ": sampled at another scale (or unguided) it makes another image; few steps "
                                   "leave it less Gaussian than an unguided inversion's");
        }
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        return result;
    }, [this] { m_impl->releaseMemory(); });
}

}  // namespace flowscope::core
