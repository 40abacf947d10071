#include "core/api/Names.h"
#include "core/api/EvaluationJob.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/engine/HostArrays.h"
#include "core/models/Datasets.h"
#include "core/models/ShippedModels.h"
#include "core/sampling/Sampler.h"
#include "core/train/Quality.h"

namespace flowscope::core {
namespace {

using Clock = std::chrono::steady_clock;

// An engine run that failed: its failure passes through the job as it is.
struct EngineFailure {
    Failure failure;
    std::string message;
};

double secondsSince(Clock::time_point started) {
    return std::chrono::duration<double>(Clock::now() - started).count();
}

template <typename Outcome>
Outcome failed(Failure failure, const std::string& message) {
    Outcome outcome;
    outcome.failure = failure;
    outcome.error = message;
    return outcome;
}

// The solver the adaptive row uses: the first one that chooses its own steps.
std::string adaptiveSolverName() {
    for (const auto& name : solverNames()) {
        if (Engine::solverIsAdaptive(name)) return name;
    }
    throw std::logic_error("no adaptive solver");
}

// Every name and number of the request, before anything loads.
void checkRequest(const EvaluationRequest& request) {
    if (request.model.empty()) throw InvalidRequestError("an evaluation needs a model");
    if (request.steps.empty() && !request.adaptive) throw InvalidRequestError("an evaluation needs a step count");
    if (request.samples < kMinEvaluationSamples) {
        throw InvalidRequestError("an evaluation needs at least " + std::to_string(kMinEvaluationSamples) +
                                  " samples (more than the classifier's 128 features); 10000 is usual");
    }
    if (request.batch < 1) throw InvalidRequestError("the batch must be at least 1");
    // float32 resolves no finer; checked before any row runs (the adaptive row comes last).
    if (request.adaptive && !(request.tolerance >= double(std::numeric_limits<float>::epsilon()))) {
        throw InvalidRequestError("--tolerance must be at least 1.2e-7 (float32's resolution), e.g. 1e-3");
    }
    checkSeeds(request.seed, request.samples);  // sample j has seed + j throughout
    checkGuidance(request.guidance);
    for (const double cfg : request.cfgs) {
        GuidanceSettings scaled = request.guidance;
        scaled.scale = cfg;
        checkGuidance(scaled);
    }
    if (!request.cfgs.empty() && request.condition.empty()) {
        throw InvalidRequestError("--cfg lists guidance scales towards a class: give --class NAME|INDEX");
    }
}

// Diversity is measured on at most this many samples (their pairwise distances: N^2 numbers).
constexpr int64_t kDiversitySamples = 2000;

// The class an evaluation's condition names (kNullClass for none). Classes are checked against the
// classifier's: the model's class names must be Fashion-MNIST's.
int64_t evaluatedClass(const EvaluationRequest& request) {
    if (request.condition.empty()) return -1;
    const ModelDescription model = Engine::describeModel(request.model);
    if (!model.ok) throw InvalidRequestError(model.error);
    if (model.classes.empty()) {
        throw InvalidRequestError("'" + request.model + "' is unconditional: it has no classes, so leave out --class");
    }
    if (model.classes != fashionMnistClassNames()) {
        throw InvalidRequestError("evaluate --class scores samples with the Fashion-MNIST classifier, and the classes of '" +
                                  request.model + "' are not Fashion-MNIST's (" + joinNames(model.classes) + ")");
    }
    const auto& names = fashionMnistClassNames();
    const auto found = std::find(names.begin(), names.end(), request.condition);
    if (found != names.end()) return found - names.begin();
    if (request.condition.size() == 1 && std::isdigit(static_cast<unsigned char>(request.condition[0]))) {
        return request.condition[0] - '0';
    }
    throw InvalidRequestError("'" + request.model + "' has no class '" + request.condition + "'; its classes are 0-9: " +
                              joinNames(names));
}

// The share of `images` the classifier assigns to class c.
double classShare(FeatureClassifier& classifier, const torch::Tensor& images, int64_t c) {
    int64_t hits = 0;
    for (int64_t start = 0; start < images.size(0); start += 500) {
        const torch::Tensor batch = images.narrow(0, start, std::min<int64_t>(500, images.size(0) - start));
        hits += (classifier.forward(batch.clamp(-1.0, 1.0)).argmax(1) == c).sum().item<int64_t>();
    }
    return static_cast<double>(hits) / static_cast<double>(images.size(0));
}

// Mean pairwise distance of the first kDiversitySamples images' features, RMS per feature.
double featureDiversity(FeatureClassifier& classifier, const torch::Tensor& images) {
    const int64_t count = std::min<int64_t>(images.size(0), kDiversitySamples);
    std::vector<torch::Tensor> parts;
    for (int64_t start = 0; start < count; start += 500) {
        parts.push_back(classifier.features(images.narrow(0, start, std::min<int64_t>(500, count - start)).clamp(-1.0, 1.0)));
    }
    const torch::Tensor features = torch::cat(parts).to(torch::kFloat64);
    const torch::Tensor distances = torch::cdist(features, features);
    const double pairs = double(count) * double(count - 1);
    return distances.sum().item<double>() / pairs / std::sqrt(double(features.size(1)));
}

// One row: every sample at this solver, step count and guidance scale, scored against the test images.
EvaluationRow evaluateRow(Engine& engine, const EvaluationRequest& request, const std::string& path,
                          const std::string& solver, int steps, double cfg, int64_t classIndex,
                          FeatureClassifier& classifier, const GaussianStatistics& reference,
                          std::vector<std::string>& notes, const EvaluationJob::ProgressCallback& onProgress,
                          const std::atomic<bool>* cancel) {
    EvaluationRow row;
    row.solver = solver;
    row.steps = steps;
    row.cfg = cfg;
    std::vector<torch::Tensor> finals;
    const auto started = Clock::now();
    for (int done = 0; done < request.samples; done += request.batch) {
        SampleRequest sample;
        sample.model = request.model;
        sample.path = path;
        sample.solver = solver;
        sample.schedule = request.schedule;
        sample.steps = std::max(steps, 1);
        sample.seed = request.seed + static_cast<uint64_t>(done);  // sample j has seed + j throughout
        sample.batch = std::min(request.batch, request.samples - done);
        sample.rtol = request.tolerance;
        sample.atol = request.tolerance;
        sample.trustModel = request.trustModel;
        sample.condition = request.condition;
        sample.guidance = request.guidance;
        sample.guidance.scale = cfg;
        const SampleResult result = engine.sample(sample, {}, cancel);
        if (result.failure == Failure::Cancelled) throw CancelledError();
        if (!result.ok()) throw EngineFailure{result.failure, result.error};
        if (done == 0) {
            if (result.sampleShape != std::vector<int64_t>{1, 28, 28}) {
                throw InvalidRequestError("evaluate measures models of Fashion-MNIST's shape [1, 28, 28]; '" +
                                          request.model + "' makes other samples");
            }
            for (const auto& note : result.notes) {
                if (std::find(notes.begin(), notes.end(), note) == notes.end()) notes.push_back(note);
            }
        }
        const double share = static_cast<double>(sample.batch) / request.samples;
        row.nfe += share * result.nfe;
        row.straightness += share * result.straightness;
        row.pathLengthRatio += share * result.pathLengthRatio;
        finals.push_back(fromHostArray(result.final));
        if (onProgress) onProgress(solver, steps, std::min(done + request.batch, request.samples), request.samples);
    }
    row.seconds = secondsSince(started);
    const torch::Tensor samples = torch::cat(finals);
    row.frechet = frechetDistance(featureStatistics(classifier, samples), reference);
    if (classIndex >= 0) row.classAccuracy = classShare(classifier, samples, classIndex);
    row.diversity = featureDiversity(classifier, samples);
    return row;
}

}  // namespace

EvaluationOutcome EvaluationJob::run(const EvaluationRequest& request, const RowCallback& onRow,
                                     const ProgressCallback& onProgress, const std::atomic<bool>* cancel) {
    try {
        checkRequest(request);
        EvaluationOutcome outcome;
        const ModelDescription model = Engine::describeModel(request.model);
        outcome.path = !request.path.empty() ? request.path : !model.nativePath.empty() ? model.nativePath : "linear";
        outcome.classifier = request.classifier.empty() ? shippedClassifierPath() : request.classifier;
        if (outcome.classifier.empty()) {
            throw InvalidRequestError("no feature classifier found: pass --classifier FILE (flowscope-cli classifier "
                                      "--out FILE trains one)");
        }
        const int64_t classIndex = evaluatedClass(request);
        auto classifier = loadFeatureClassifier(outcome.classifier, &outcome.classifierAccuracy);
        torch::NoGradGuard noGrad;
        // With a class, the reference and the floor are that class's images only.
        const auto ofClass = [&](bool train) {
            torch::Tensor images = loadFashionMnist(train);
            if (classIndex < 0) return images;
            const torch::Tensor labels = loadFashionMnistLabels(train);
            return images.index_select(0, (labels == classIndex).nonzero().flatten());
        };
        const GaussianStatistics reference = featureStatistics(*classifier, ofClass(false));
        const torch::Tensor training = ofClass(true);
        outcome.floorImages = static_cast<int>(std::min<int64_t>(request.samples, training.size(0)));
        outcome.frechetFloor =
            frechetDistance(featureStatistics(*classifier, training.narrow(0, 0, outcome.floorImages)), reference);

        std::vector<std::pair<std::string, int>> plan;
        for (int steps : request.steps) plan.emplace_back(request.solver, steps);
        if (request.adaptive) plan.emplace_back(adaptiveSolverName(), 0);
        const std::vector<double> scales = request.cfgs.empty() ? std::vector<double>{request.guidance.scale} : request.cfgs;
        Engine engine;
        for (const double cfg : scales) {
            for (const auto& [solver, steps] : plan) {
                outcome.rows.push_back(evaluateRow(engine, request, outcome.path, solver, steps, cfg, classIndex,
                                                   *classifier, reference, outcome.notes, onProgress, cancel));
                if (onRow) onRow(outcome.rows.back());
            }
        }
        return outcome;
    } catch (const EngineFailure& failure) {
        return failed<EvaluationOutcome>(failure.failure, failure.message);
    } catch (const CancelledError&) {
        return failed<EvaluationOutcome>(Failure::Cancelled, "interrupted; nothing was written");
    } catch (const std::invalid_argument& error) {
        return failed<EvaluationOutcome>(Failure::InvalidRequest, error.what());
    } catch (const std::exception& error) {
        return failed<EvaluationOutcome>(Failure::Runtime, error.what());
    }
}

ClassifierOutcome EvaluationJob::trainClassifier(const ClassifierRequest& request, const ClassifierProgress& onProgress,
                                                 const std::atomic<bool>* cancel) {
    try {
        const auto started = Clock::now();
        ClassifierSettings settings;
        settings.epochs = request.epochs;
        settings.batch = request.batch;
        settings.learningRate = request.learningRate;
        settings.seed = request.seed;
        ClassifierOutcome outcome;
        const auto classifier = trainFeatureClassifier(
            loadFashionMnist(true), loadFashionMnistLabels(true), settings,
            [&](int64_t done, int64_t total, double loss) {
                outcome.loss = done == 1 ? loss : 0.98 * outcome.loss + 0.02 * loss;
                if (onProgress) onProgress(done, total, outcome.loss);
            },
            cancel);
        outcome.testAccuracy = classifierAccuracy(*classifier, loadFashionMnist(false), loadFashionMnistLabels(false));
        saveFeatureClassifier(*classifier, request.outFile, outcome.testAccuracy);
        outcome.seconds = secondsSince(started);
        return outcome;
    } catch (const CancelledError&) {
        return failed<ClassifierOutcome>(Failure::Cancelled, "interrupted; nothing was written");
    } catch (const std::invalid_argument& error) {
        return failed<ClassifierOutcome>(Failure::InvalidRequest, error.what());
    } catch (const std::exception& error) {
        return failed<ClassifierOutcome>(Failure::Runtime, error.what());
    }
}

}  // namespace flowscope::core
