#include "core/api/Names.h"
#include "core/api/EvaluationJob.h"

#include <algorithm>
#include <chrono>
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
}

// One row: every sample at this solver and step count, scored against the test images.
EvaluationRow evaluateRow(Engine& engine, const EvaluationRequest& request, const std::string& path,
                          const std::string& solver, int steps, FeatureClassifier& classifier,
                          const GaussianStatistics& reference, std::vector<std::string>& notes,
                          const EvaluationJob::ProgressCallback& onProgress, const std::atomic<bool>* cancel) {
    EvaluationRow row;
    row.solver = solver;
    row.steps = steps;
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
    row.frechet = frechetDistance(featureStatistics(classifier, torch::cat(finals)), reference);
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
        auto classifier = loadFeatureClassifier(outcome.classifier, &outcome.classifierAccuracy);
        torch::NoGradGuard noGrad;
        const GaussianStatistics reference = featureStatistics(*classifier, loadFashionMnist(false));
        outcome.floorImages = std::min(request.samples, 60000);
        outcome.frechetFloor =
            frechetDistance(featureStatistics(*classifier, loadFashionMnist(true, outcome.floorImages)), reference);

        std::vector<std::pair<std::string, int>> plan;
        for (int steps : request.steps) plan.emplace_back(request.solver, steps);
        if (request.adaptive) plan.emplace_back(adaptiveSolverName(), 0);
        Engine engine;
        for (const auto& [solver, steps] : plan) {
            outcome.rows.push_back(evaluateRow(engine, request, outcome.path, solver, steps, *classifier, reference,
                                               outcome.notes, onProgress, cancel));
            if (onRow) onRow(outcome.rows.back());
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
