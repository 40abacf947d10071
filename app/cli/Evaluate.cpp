#include "app/cli/Evaluate.h"

#include <cstdio>
#include <iostream>
#include <set>
#include <sstream>
#include <utility>

#include <unistd.h>

#include "app/cli/Arguments.h"
#include "core/api/Engine.h"
#include "core/api/EvaluationJob.h"
#include "core/io/AtomicFile.h"
#include "core/io/JsonWriter.h"

namespace flowscope::app {
int runClassifier(const std::vector<std::string>& args, const std::atomic<bool>& cancel) {
    const Arguments options(args, {"out", "epochs", "batch", "lr", "seed"}, {"json"});
    const auto out = options.optionalText("out");
    if (!out) throw UsageError("classifier needs --out FILE (for example --out fashion-classifier.safetensors)");
    checkWritable(out, "out");
    core::ClassifierRequest request;
    request.outFile = *out;
    request.epochs = static_cast<int>(options.integer("epochs", request.epochs, 1, 1000));
    request.batch = static_cast<int>(options.integer("batch", request.batch, 1, 65536));
    request.learningRate = options.number("lr", request.learningRate);
    request.seed = options.seed(0);
    const bool json = options.has("json");
    const bool showProgress = ::isatty(STDERR_FILENO) && !json;

    const core::ClassifierOutcome outcome = core::EvaluationJob::trainClassifier(
        request,
        [&](int64_t done, int64_t total, double loss) {
            if (showProgress && (done % 10 == 0 || done == total)) {
                std::fprintf(stderr, "\rbatch %lld/%lld  loss %.4f   ", static_cast<long long>(done),
                             static_cast<long long>(total), loss);
            }
        },
        &cancel);
    if (showProgress) std::fprintf(stderr, "\n");
    if (!outcome.ok()) {
        std::cerr << "flowscope-cli: " << outcome.error << "\n";
        return exitCodeFor(outcome.failure);
    }
    if (json) {
        core::JsonWriter writer;
        writer.beginObject();
        writer.field("classifier", *out);
        writer.field("epochs", request.epochs);
        writer.field("test_accuracy", outcome.testAccuracy);
        writer.field("loss", outcome.loss);
        writer.field("seconds", outcome.seconds);
        writer.endObject();
        std::cout << writer.str() << "\n";
    } else {
        std::printf("trained the feature classifier for %d epochs in %.1f s: %.2f%% of the 10,000 test images right\n",
                    request.epochs, outcome.seconds, 100.0 * outcome.testAccuracy);
        std::printf("wrote %s\n", out->c_str());
    }
    return kExitOk;
}

int runEvaluate(const std::vector<std::string>& args, const std::atomic<bool>& cancel) {
    std::set<std::string> valued{"model",   "steps", "solver",     "path",      "schedule", "samples",
                                 "seed",    "batch", "classifier", "tolerance", "csv"};
    valued.insert(guidanceOptionNames().begin(), guidanceOptionNames().end());
    const Arguments options(args, valued, {"adaptive", "trust-model", "json"});
    const auto model = options.optionalText("model");
    if (!model) throw UsageError("evaluate needs --model SPEC (an image model of Fashion-MNIST's shape, e.g. bundle:DIR)");
    const auto csv = options.optionalText("csv");
    checkWritable(csv, "csv");
    app::checkExtension(csv, "csv", {".csv"});
    core::EvaluationRequest request;
    request.model = *model;
    request.path = options.text("path", request.path);
    request.solver = options.text("solver", request.solver);
    request.schedule = options.text("schedule", request.schedule);
    request.steps = options.integerList("steps", "1,2,4,8", 1, core::kMaxSteps);
    request.adaptive = options.has("adaptive");
    request.tolerance = options.number("tolerance", request.tolerance);
    request.samples = static_cast<int>(
        options.integer("samples", request.samples, core::kMinEvaluationSamples, 10'000'000));
    request.batch = static_cast<int>(options.integer("batch", request.batch, 1, 65536));
    request.seed = options.seed(0);
    request.classifier = options.text("classifier", "");
    request.trustModel = options.has("trust-model");
    request.condition = options.text("class", "");
    request.guidance = readGuidance(options, /*scaleList=*/true);
    request.cfgs = options.numberList("cfg");
    const bool guided = !request.condition.empty();
    const bool json = options.has("json");
    const bool showProgress = ::isatty(STDERR_FILENO) && !json;

    bool header = false;  // printed with the first row: a request refused before it prints no table
    const core::EvaluationOutcome outcome = core::EvaluationJob::run(
        request,
        [&](const core::EvaluationRow& row) {
            if (showProgress) std::fprintf(stderr, "\r%*s\r", 60, "");
            if (json) return;
            if (!std::exchange(header, true)) {
                std::printf("%-9s %6s %8s %10s %10s %8s %9s %9s", "solver", "steps", "nfe", "frechet", "S", "length",
                            "seconds", "diversity");
                if (guided) std::printf(" %6s %8s", "cfg", "accuracy");
                std::printf("\n");
            }
            std::printf("%-9s %6s %8.1f %10.3f %10.4f %8.4f %9.1f %9.4f", row.solver.c_str(),
                        row.steps ? std::to_string(row.steps).c_str() : "adapt", row.nfe, row.frechet,
                        row.straightness, row.pathLengthRatio, row.seconds, row.diversity);
            if (guided) std::printf(" %6g %7.1f%%", row.cfg, 100.0 * row.classAccuracy);
            std::printf("\n");
            std::fflush(stdout);
        },
        [&](const std::string& solver, int steps, int done, int total) {
            if (showProgress) std::fprintf(stderr, "\r%s %d: %d/%d samples", solver.c_str(), steps, done, total);
        },
        &cancel);
    if (!outcome.ok()) {
        if (showProgress) std::fprintf(stderr, "\n");
        std::cerr << "flowscope-cli: " << outcome.error << "\n";
        return exitCodeFor(outcome.failure);
    }
    if (csv) {
        std::ostringstream table;
        table.precision(9);
        // Columns after the first seven are added at the end, so that readers of those keep working.
        table << "solver,steps,nfe,frechet,straightness,path_length_ratio,seconds,diversity,cfg,class_accuracy\n";
        for (const auto& row : outcome.rows) {
            table << row.solver << "," << row.steps << "," << row.nfe << "," << row.frechet << "," << row.straightness
                  << "," << row.pathLengthRatio << "," << row.seconds << "," << row.diversity << "," << row.cfg << ",";
            if (guided) table << row.classAccuracy;
            table << "\n";
        }
        core::writeFileAtomically(*csv, table.str());
    }
    if (json) {
        core::JsonWriter writer;
        writer.beginObject();
        writer.field("model", *model);
        writer.field("path", outcome.path);
        writer.field("samples", request.samples);
        writer.field("classifier", outcome.classifier);
        writer.field("classifier_test_accuracy", outcome.classifierAccuracy);
        writer.field("frechet_floor", outcome.frechetFloor);
        if (guided) {
            writer.field("class", request.condition);
            writer.field("guidance", core::toString(request.guidance.method));
        }
        writer.key("rows");
        writer.beginArray();
        for (const auto& row : outcome.rows) {
            writer.beginObject();
            writer.field("solver", row.solver);
            writer.field("steps", row.steps);
            writer.field("nfe", row.nfe);
            writer.field("frechet", row.frechet);
            writer.field("straightness", row.straightness);
            writer.field("path_length_ratio", row.pathLengthRatio);
            writer.field("seconds", row.seconds);
            writer.field("diversity", row.diversity);
            if (guided) {
                writer.field("cfg", row.cfg);
                writer.field("class_accuracy", row.classAccuracy);
            }
            writer.endObject();
        }
        writer.endArray();
        writer.field("notes", outcome.notes);
        writer.endObject();
        std::cout << writer.str() << "\n";
    } else {
        std::printf("frechet: %d generated vs the %s test images in the features of %s (%.1f%% test accuracy); "
                    "%d training images score %.3f\n",
                    request.samples, guided ? ("1,000 '" + request.condition + "'").c_str() : "10,000",
                    outcome.classifier.c_str(), 100.0 * outcome.classifierAccuracy, outcome.floorImages,
                    outcome.frechetFloor);
        std::printf("diversity: mean distance between samples' features (RMS per feature)%s\n",
                    guided ? "; accuracy: the share the classifier names the class" : "");
        for (const auto& note : outcome.notes) std::printf("note: %s\n", note.c_str());
        if (csv) std::printf("wrote %s\n", csv->c_str());
    }
    return kExitOk;
}

}  // namespace flowscope::app
