// Where a run starts (RunStart): the seed's noise, an image noised to t_start, or a given state (a
// fork), and the grid the run takes from there. Also Engine::forkStart, which makes a fork's start
// from its parent's record.
#include <algorithm>
#include <cmath>

#include <c10/util/StringUtil.h>

#include "core/engine/EngineImpl.h"
#include "core/engine/HostArrays.h"
#include "core/sampling/DeviceTransfer.h"

namespace flowscope::core {
namespace {

std::string shapeText(const std::vector<int64_t>& shape) {
    std::string text = "[";
    for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
}

// Times closer than this are the same grid time (a t_start taken from a grid is that time).
constexpr double kSameTime = 1e-12;

}  // namespace

torch::Tensor batchOfSamples(const HostArray& array, const std::vector<int64_t>& sampleShape, int64_t batch,
                             const std::string& what) {
    std::vector<int64_t> shape = array.shape;
    const bool single = shape == sampleShape;
    const bool batched = shape.size() == sampleShape.size() + 1 &&
                         std::equal(sampleShape.begin(), sampleShape.end(), shape.begin() + 1) &&
                         (shape[0] == batch || shape[0] == 1);
    if (!single && !batched) {
        throw InvalidRequestError(what + " has shape " + shapeText(shape) + ", but this model's samples are " +
                                  shapeText(sampleShape) + " (give " + shapeText(sampleShape) + ", or a batch [" +
                                  std::to_string(batch) + ", ...] of them)");
    }
    if (static_cast<int64_t>(array.values.size()) != array.count()) {
        throw InvalidRequestError(what + " holds " + std::to_string(array.values.size()) + " values for shape " +
                                  shapeText(shape));
    }
    torch::Tensor values = fromHostArray(array);
    if (!torch::isfinite(values).all().item<bool>()) throw InvalidRequestError(what + " holds NaN or Inf values");
    if (single) values = values.unsqueeze(0);
    std::vector<int64_t> full{batch};
    full.insert(full.end(), sampleShape.begin(), sampleShape.end());
    return values.expand(full).contiguous();
}

torch::Tensor samplesFromImages(Model& model, const HostArray& images, bool isData, int64_t batch,
                                const torch::TensorOptions& options, const std::string& what) {
    const std::vector<int64_t> shape = model.sampleShape();
    if (isData) return batchOfSamples(images, shape, batch, what).to(options);
    if (!model.encodesImages()) {
        throw InvalidRequestError(shape.size() != 3 ? what + ": '" + model.name() + "' makes points, not images; give its " +
                                                          "samples as an .npy of shape [B, 2]"
                                                    : what + ": '" + model.name() + "' makes latents and has no encoder; " +
                                                          "give its latents as an .npy instead");
    }
    if (images.shape.size() != 4 || (images.shape[0] != batch && images.shape[0] != 1)) {
        throw InvalidRequestError(what + " has shape " + shapeText(images.shape) + "; images are [B, C, H, W] with B = 1 or " +
                                  std::to_string(batch));
    }
    torch::Tensor pixels = fromHostArray(images);
    if (!torch::isfinite(pixels).all().item<bool>()) throw InvalidRequestError(what + " holds NaN or Inf values");
    pixels = pixels.expand({batch, -1, -1, -1}).contiguous().to(options);
    if (!model.hasPreview()) {
        // An image model: the image is the sample, so it must have the sample's shape.
        if (pixels.sizes().slice(1).vec() != shape) {
            throw InvalidRequestError(what + " is " + shapeText(pixels.sizes().slice(1).vec()) + " (channels, height, width), but '" +
                                      model.name() + "' makes " + shapeText(shape) +
                                      " images: resize it, or choose the model's resolution to match");
        }
        return pixels;
    }
    c10::InferenceMode inference;
    return model.encode(pixels);
}

PreparedStart prepareStart(const SampleRequest& request, Model& model, const ProbabilityPath& path,
                           const std::vector<double>& fullGrid, NoiseSource& noise, const torch::TensorOptions& options) {
    const RunStart& start = request.start;
    const std::vector<int64_t> shape = model.sampleShape();
    PreparedStart prepared;

    // The first draw is always the seed's, so that the generators stand where the parent's do.
    torch::Tensor eps = noise.draw();
    if (!start.noise.values.empty() || !start.noise.shape.empty()) {
        eps = batchOfSamples(start.noise, shape, request.batch, "the starting noise");
    }
    if (start.noiseDraws > 1) noise.skip(start.noiseDraws - 1);

    double time = start.time;
    if (!std::isfinite(time) || time < 0.0 || time > request.tEnd ||
        (time == request.tEnd && start.kind != RunStart::Kind::Image)) {
        throw InvalidRequestError("the run's start t_start = " + c10::str(time) + " must lie in [0, t_end) = [0, " +
                                  c10::str(request.tEnd) + ")");
    }
    torch::Tensor state;
    switch (start.kind) {
        case RunStart::Kind::Noise:
            break;
        case RunStart::Kind::Image: {
            const torch::Tensor data =
                samplesFromImages(model, start.image, start.imageIsData, request.batch, options, "the starting image");
            if (time >= request.tEnd) {
                prepared.data = data;  // strength 0: the image itself
                return prepared;
            }
            // At t_start = 0 the data term is dropped, as every run from noise does (DESIGN.md):
            // strength 1 is plain sampling from the same noise.
            if (time > 0.0) {
                const PathPoint p = path.at(time);
                state = data * p.alpha + toDeviceAsync(eps, options) * p.sigma;
            }
            break;
        }
        case RunStart::Kind::State: {
            state = batchOfSamples(start.state, shape, request.batch, "the starting state").to(options);
            if (!start.statePath.empty() && start.statePath != path.name()) {
                // The same signal-to-noise ratio on this path: x' = (sigma'/sigma) x.
                const auto from = makePath(start.statePath);
                const double sigma = from->sigma(time);
                if (!(sigma > 0.0)) throw InvalidRequestError("the starting state has no noise left (t = 1): nothing to solve");
                const double moved = path.timeForLambda(from->lambda(time));
                state = state * (path.sigma(moved) / sigma);
                time = moved;
                if (!(time < request.tEnd)) {
                    throw InvalidRequestError("the starting state lies at t = " + c10::str(time) + " on '" + path.name() +
                                              "', not before t_end = " + c10::str(request.tEnd));
                }
            }
            break;
        }
    }

    const bool fromGridStart = start.kind == RunStart::Kind::Noise && time == 0.0;
    const bool plainImage = start.kind == RunStart::Kind::Image && time == 0.0;
    if (fromGridStart || plainImage || (start.kind == RunStart::Kind::State && time <= fullGrid.front())) {
        prepared.grid = fullGrid;
        if (start.kind == RunStart::Kind::State && time < fullGrid.front()) prepared.grid.insert(prepared.grid.begin(), time);
    } else if (start.newGrid) {
        // The schedule's shape over [t_start, t_end].
        const double first = fullGrid.front();
        const double scale = (request.tEnd - time) / (request.tEnd - first);
        prepared.grid.reserve(fullGrid.size());
        for (double t : fullGrid) prepared.grid.push_back(time + (t - first) * scale);
        prepared.grid.front() = time;
        prepared.grid.back() = request.tEnd;
    } else {
        // The remaining part of the same schedule: the grid's times after t_start.
        const auto after = std::find_if(fullGrid.begin(), fullGrid.end(), [&](double t) { return t > time + kSameTime; });
        // The first step is (the rest of) the grid's step k from the time before t_start.
        prepared.history.stepOffset = std::max(0, static_cast<int>(after - fullGrid.begin()) - 1);
        const bool onGrid = after != fullGrid.begin() && std::abs(*(after - 1) - time) <= kSameTime;
        prepared.grid.push_back(onGrid ? *(after - 1) : time);
        prepared.grid.insert(prepared.grid.end(), after, fullGrid.end());
    }
    if (!state.defined()) state = toDeviceAsync(eps, options) * path.sigma(prepared.grid.front());
    prepared.x0 = state;

    if (!start.previousPrediction.values.empty() && start.previousTime >= 0.0 && start.previousTime < prepared.grid.front()) {
        prepared.history.previousData = batchOfSamples(start.previousPrediction, shape, request.batch, "the previous prediction").to(options);
        prepared.history.previousTime = start.previousTime;
    }
    prepared.history.stepSize = start.stepSize > 0.0 && std::isfinite(start.stepSize) ? start.stepSize : 0.0;
    return prepared;
}

RunStart Engine::forkStart(const SampleRequest& parent, const SampleResult& parentResult, int step,
                           const SampleRequest& child) {
    const int frames = static_cast<int>(parentResult.times.size());
    if (step < 0 || step + 1 >= frames) {
        throw InvalidRequestError("a fork starts at one of the run's steps 0.." + std::to_string(std::max(0, frames - 2)) +
                                  " (got " + std::to_string(step) + "); after the last there is nothing left to solve");
    }
    const auto& trajectory = parentResult.trajectory;
    if (trajectory.shape.empty() || trajectory.shape[0] != frames) {
        throw InvalidRequestError("a fork needs the parent run's states: run it with its trajectory recorded");
    }
    const int64_t perFrame = trajectory.count() / frames;
    RunStart start;
    start.kind = RunStart::Kind::State;
    start.time = parentResult.times[static_cast<size_t>(step)];
    start.statePath = parent.path;
    start.state.shape.assign(trajectory.shape.begin() + 1, trajectory.shape.end());
    start.state.values.assign(trajectory.values.begin() + perFrame * step, trajectory.values.begin() + perFrame * (step + 1));

    // The solver's state, where it carries over: the same solver on the same grid.
    const bool sameGrid = child.path == parent.path && child.schedule == parent.schedule &&
                          child.steps == parent.steps && child.tEnd == parent.tEnd;
    if (sameGrid && child.solver == parent.solver) {
        const auto& predictions = parentResult.predictions;
        if (step > 0 && !predictions.shape.empty() && predictions.shape[0] == frames) {
            start.previousTime = parentResult.times[static_cast<size_t>(step - 1)];
            start.previousPrediction.shape = start.state.shape;
            start.previousPrediction.values.assign(predictions.values.begin() + perFrame * (step - 1),
                                                   predictions.values.begin() + perFrame * step);
        }
        if (static_cast<size_t>(step) < parentResult.stepSizes.size()) start.stepSize = parentResult.stepSizes[static_cast<size_t>(step)];
    }
    // The parent's generators: the initial noise, then one draw per step of a stochastic solver.
    bool stochastic = false;
    try {
        stochastic = makeSolver(parent.solver)->isStochastic();
    } catch (const std::invalid_argument&) {
    }
    start.noiseDraws = 1 + (stochastic ? step : 0);
    return start;
}

}  // namespace flowscope::core
