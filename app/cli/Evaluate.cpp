#include "app/cli/Evaluate.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <sstream>

#include <unistd.h>

#include "app/cli/Arguments.h"
#include "app/cli/Json.h"
#include "core/AtomicFile.h"
#include "core/Bundle.h"
#include "core/Datasets.h"
#include "core/Engine.h"
#include "core/Errors.h"
#include "core/HostTensor.h"
#include "core/Quality.h"
#include "core/ShippedModels.h"

namespace flowscope::app {
namespace fs = std::filesystem;

namespace {

struct EvaluationRow {
    std::string solver;
    int steps = 0;  // 0 for adaptive solvers
    double nfe = 0.0;  // mean per sample batch
    double frechet = 0.0;
    double straightness = 0.0;
    double pathLengthRatio = 0.0;
    double seconds = 0.0;
};

}  // namespace

int runClassifier(const std::vector<std::string>& args, const std::atomic<bool>& cancel) {
    const Arguments options(args, {"out", "epochs", "batch", "lr", "seed"}, {"json"});
    const auto out = options.optionalText("out");
    if (!out) throw UsageError("classifier needs --out FILE (for example --out fashion-classifier.safetensors)");
    checkWritable(out, "out");
    core::ClassifierSettings settings;
    settings.epochs = static_cast<int>(options.integer("epochs", settings.epochs, 1, 1000));
    settings.batch = static_cast<int>(options.integer("batch", settings.batch, 1, 65536));
    settings.learningRate = options.number("lr", settings.learningRate);
    settings.seed = options.seed(0);
    const bool json = options.has("json");
    const bool showProgress = ::isatty(STDERR_FILENO) && !json;

    const auto started = std::chrono::steady_clock::now();
    const torch::Tensor images = core::loadFashionMnist(true);
    const torch::Tensor labels = core::loadFashionMnistLabels(true);
    double recentLoss = 0.0;
    std::shared_ptr<core::FeatureClassifier> classifier;
    try {
        classifier = core::trainFeatureClassifier(
            images, labels, settings,
            [&](int64_t done, int64_t total, double loss) {
                recentLoss = done == 1 ? loss : 0.98 * recentLoss + 0.02 * loss;
                if (showProgress && (done % 10 == 0 || done == total)) {
                    std::fprintf(stderr, "\rbatch %lld/%lld  loss %.4f   ", static_cast<long long>(done),
                                 static_cast<long long>(total), recentLoss);
                }
            },
            &cancel);
    } catch (const core::CancelledError&) {
        if (showProgress) std::fprintf(stderr, "\n");
        std::cerr << "flowscope-cli: interrupted; nothing was written\n";
        return kExitCancelled;
    }
    if (showProgress) std::fprintf(stderr, "\n");
    const double accuracy = core::classifierAccuracy(*classifier, core::loadFashionMnist(false),
                                                     core::loadFashionMnistLabels(false));
    core::saveFeatureClassifier(*classifier, *out, accuracy);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (json) {
        JsonWriter writer;
        writer.beginObject();
        writer.field("classifier", *out);
        writer.field("epochs", settings.epochs);
        writer.field("test_accuracy", accuracy);
        writer.field("loss", recentLoss);
        writer.field("seconds", seconds);
        writer.endObject();
        std::cout << writer.str() << "\n";
    } else {
        std::printf("trained the feature classifier for %d epochs in %.1f s: %.2f%% of the 10,000 test images right\n",
                    settings.epochs, seconds, 100.0 * accuracy);
        std::printf("wrote %s\n", out->c_str());
    }
    return kExitOk;
}

int runEvaluate(const std::vector<std::string>& args, const std::atomic<bool>& cancel) {
    const Arguments options(args,
                            {"model", "steps", "solver", "path", "schedule", "samples", "seed", "batch", "classifier",
                             "tolerance", "csv"},
                            {"adaptive", "trust-model", "json"});
    const auto model = options.optionalText("model");
    if (!model) throw UsageError("evaluate needs --model SPEC (an image model of Fashion-MNIST's shape, e.g. bundle:DIR)");
    const auto csv = options.optionalText("csv");
    checkWritable(csv, "csv");
    app::checkExtension(csv, "csv", {".csv"});
    std::string path = "linear";
    if (const std::string bundle = core::bundleDirectoryOf(*model); !bundle.empty()) {
        path = core::readBundleManifest(bundle).path;
    }
    path = options.text("path", path);
    const std::string solver = options.text("solver", "euler");
    const std::string schedule = options.text("schedule", "uniform");
    const std::vector<int> steps = options.integerList("steps", "1,2,4,8", 1, 10000);
    const bool adaptive = options.has("adaptive");
    const double tolerance = options.number("tolerance", 1e-3);
    // Checked before any row runs (the adaptive row comes last); float32 resolves no finer.
    if (adaptive && !(tolerance >= double(std::numeric_limits<float>::epsilon()))) {
        throw UsageError("--tolerance must be at least 1.2e-7 (float32's resolution), e.g. 1e-3");
    }
    // A Frechet distance compares covariances of the 128 features: fewer samples leave them singular.
    const int samples = static_cast<int>(
        options.integer("samples", 10000, core::FeatureClassifier::kFeatures + 1, 10'000'000));
    const int batch = static_cast<int>(options.integer("batch", 500, 1, 65536));
    const uint64_t seed = options.seed(0);
    core::checkSeeds(seed, samples);  // sample j has seed + j throughout: refused before any row runs
    std::string classifierPath = options.text("classifier", "");
    if (classifierPath.empty()) classifierPath = core::shippedClassifierPath();
    if (classifierPath.empty()) {
        throw UsageError("no feature classifier found: pass --classifier FILE (flowscope-cli classifier --out FILE "
                         "trains one)");
    }
    const bool json = options.has("json");
    const bool showProgress = ::isatty(STDERR_FILENO) && !json;

    double classifierAccuracy = 0.0;
    auto classifier = core::loadFeatureClassifier(classifierPath, &classifierAccuracy);
    torch::NoGradGuard noGrad;
    const torch::Tensor test = core::loadFashionMnist(false);
    const core::GaussianStatistics reference = core::featureStatistics(*classifier, test);
    // The floor: as many real training images against the test images.
    const core::GaussianStatistics trainingImages =
        core::featureStatistics(*classifier, core::loadFashionMnist(true, std::min<int64_t>(samples, 60000)));
    const double floor = core::frechetDistance(trainingImages, reference);

    std::vector<std::pair<std::string, int>> plan;
    for (int count : steps) plan.emplace_back(solver, count);
    if (adaptive) plan.emplace_back("dopri5", 0);

    core::Engine engine;
    std::vector<EvaluationRow> rows;
    std::vector<std::string> notes;
    for (const auto& [rowSolver, rowSteps] : plan) {
        EvaluationRow row;
        row.solver = rowSolver;
        row.steps = rowSteps;
        std::vector<torch::Tensor> finals;
        const auto started = std::chrono::steady_clock::now();
        for (int done = 0; done < samples; done += batch) {
            core::SampleRequest request;
            request.model = *model;
            request.path = path;
            request.solver = rowSolver;
            request.schedule = schedule;
            request.steps = std::max(rowSteps, 1);
            request.seed = seed + static_cast<uint64_t>(done);  // sample j has seed + j throughout
            request.batch = std::min(batch, samples - done);
            request.rtol = tolerance;
            request.atol = tolerance;
            request.trustModel = options.has("trust-model");
            const core::SampleResult result = engine.sample(request, {}, &cancel);
            if (!result.ok()) {
                std::cerr << "flowscope-cli: " << result.error << "\n";
                return exitCodeFor(result.failure);
            }
            if (done == 0) {
                if (result.sampleShape != std::vector<int64_t>{1, 28, 28}) {
                    throw UsageError("evaluate measures models of Fashion-MNIST's shape [1, 28, 28]; '" + *model +
                                     "' makes other samples");
                }
                for (const auto& note : result.notes) {
                    if (std::find(notes.begin(), notes.end(), note) == notes.end()) notes.push_back(note);
                }
            }
            const double share = static_cast<double>(request.batch) / samples;
            row.nfe += share * result.nfe;
            row.straightness += share * result.straightness;
            row.pathLengthRatio += share * result.pathLengthRatio;
            finals.push_back(core::fromHostArray(result.final));
            if (showProgress) {
                std::fprintf(stderr, "\r%s %d: %d/%d samples", rowSolver.c_str(), rowSteps,
                             std::min(done + batch, samples), samples);
            }
        }
        if (showProgress) std::fprintf(stderr, "\r%*s\r", 60, "");
        row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        row.frechet = core::frechetDistance(core::featureStatistics(*classifier, torch::cat(finals)), reference);
        if (!json) {
            // The header comes with the first row: a request refused before it prints no table.
            if (rows.empty()) {
                std::printf("%-9s %6s %8s %10s %10s %8s %9s\n", "solver", "steps", "nfe", "frechet", "S", "length",
                            "seconds");
            }
            std::printf("%-9s %6s %8.1f %10.3f %10.4f %8.4f %9.1f\n", row.solver.c_str(),
                        row.steps ? std::to_string(row.steps).c_str() : "adapt", row.nfe, row.frechet, row.straightness,
                        row.pathLengthRatio, row.seconds);
            std::fflush(stdout);
        }
        rows.push_back(row);
    }
    if (csv) {
        std::ostringstream table;
        table.precision(9);
        table << "solver,steps,nfe,frechet,straightness,path_length_ratio,seconds\n";
        for (const auto& row : rows) {
            table << row.solver << "," << row.steps << "," << row.nfe << "," << row.frechet << "," << row.straightness
                  << "," << row.pathLengthRatio << "," << row.seconds << "\n";
        }
        core::writeFileAtomically(*csv, table.str());
    }
    if (json) {
        JsonWriter writer;
        writer.beginObject();
        writer.field("model", *model);
        writer.field("path", path);
        writer.field("samples", samples);
        writer.field("classifier", classifierPath);
        writer.field("classifier_test_accuracy", classifierAccuracy);
        writer.field("frechet_floor", floor);
        writer.key("rows");
        writer.beginArray();
        for (const auto& row : rows) {
            writer.beginObject();
            writer.field("solver", row.solver);
            writer.field("steps", row.steps);
            writer.field("nfe", row.nfe);
            writer.field("frechet", row.frechet);
            writer.field("straightness", row.straightness);
            writer.field("path_length_ratio", row.pathLengthRatio);
            writer.field("seconds", row.seconds);
            writer.endObject();
        }
        writer.endArray();
        writer.field("notes", notes);
        writer.endObject();
        std::cout << writer.str() << "\n";
    } else {
        std::printf("frechet: %d generated vs the 10,000 test images in the features of %s (%.1f%% test accuracy); "
                    "%d training images score %.3f\n",
                    samples, classifierPath.c_str(), 100.0 * classifierAccuracy, std::min(samples, 60000), floor);
        for (const auto& note : notes) std::printf("note: %s\n", note.c_str());
        if (csv) std::printf("wrote %s\n", csv->c_str());
    }
    return kExitOk;
}

}  // namespace flowscope::app
