#pragma once
// Measuring a model's samples as a job, for the CLI and the app alike: plain structs in and out,
// no LibTorch types. An evaluation samples an image model of Fashion-MNIST's shape at several
// step counts from the same seeds and scores each row by the Frechet distance of its samples to
// the test images in a feature classifier's space (standing in for FID), with the run's
// straightness and path length ratio. Training that classifier is a job here too.
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/api/Engine.h"

namespace flowscope::core {

// A Frechet distance compares covariances of the classifier's 128 features: fewer samples than
// this leave them singular.
constexpr int kMinEvaluationSamples = 129;

struct EvaluationRequest {
    std::string model;
    std::string path;  // "" = the model's native path (a network's), else linear
    std::string solver = "euler";
    std::string schedule = "uniform";
    std::vector<int> steps{1, 2, 4, 8};
    bool adaptive = false;     // one more row with the adaptive solver
    double tolerance = 1e-3;   // its rtol and atol
    int samples = 10000;
    int batch = 500;           // samples per engine call
    uint64_t seed = 0;         // sample j has seed + j in every row
    std::string classifier;    // a file `trainClassifier` wrote; "" = the shipped one
    bool trustModel = false;
    // A conditional model's class (name or index; "" = unconditional) and its guidance. With a
    // class, rows also report how often the classifier names it, and the Frechet distance is to
    // the test images of that class. `cfgs` (non-empty) repeats every row per guidance scale.
    std::string condition;
    GuidanceSettings guidance;
    std::vector<double> cfgs;
};

struct EvaluationRow {
    std::string solver;
    int steps = 0;     // 0 for the adaptive solver
    double nfe = 0.0;  // mean per sample
    double frechet = 0.0;
    double straightness = 0.0;
    double pathLengthRatio = 0.0;
    double seconds = 0.0;
    double cfg = 1.0;  // the row's guidance scale
    // With a class: the share of samples the classifier assigns to it, in [0, 1].
    double classAccuracy = 0.0;
    // Mean pairwise distance between the samples' classifier features (RMS per feature): how
    // varied the samples are.
    double diversity = 0.0;
};

struct EvaluationOutcome {
    Failure failure = Failure::None;
    std::string error;  // a message a user can act on
    bool ok() const { return failure == Failure::None; }
    std::string path;  // the path sampled
    std::string classifier;
    double classifierAccuracy = 0.0;  // on the 10,000 test images
    // The floor: as many real training images (at most 60,000) against the test images.
    double frechetFloor = 0.0;
    int floorImages = 0;
    std::vector<EvaluationRow> rows;
    std::vector<std::string> notes;
};

struct ClassifierRequest {
    std::string outFile;  // safetensors
    int epochs = 3;
    int batch = 128;
    double learningRate = 1e-3;
    uint64_t seed = 0;
};

struct ClassifierOutcome {
    Failure failure = Failure::None;
    std::string error;
    bool ok() const { return failure == Failure::None; }
    double testAccuracy = 0.0;
    double loss = 0.0;  // smoothed over the last batches
    double seconds = 0.0;
};

// Jobs run on the calling thread and never throw: failures come back in the outcome.
class EvaluationJob {
public:
    using RowCallback = std::function<void(const EvaluationRow&)>;
    // (row's solver, its steps, samples done, samples in all)
    using ProgressCallback = std::function<void(const std::string&, int, int, int)>;
    static EvaluationOutcome run(const EvaluationRequest& request, const RowCallback& onRow = {},
                                 const ProgressCallback& onProgress = {}, const std::atomic<bool>* cancel = nullptr);

    // (batches done, batches in all, smoothed loss)
    using ClassifierProgress = std::function<void(int64_t, int64_t, double)>;
    // Trains on the 60,000 Fashion-MNIST training images and writes the weights with their test accuracy.
    static ClassifierOutcome trainClassifier(const ClassifierRequest& request, const ClassifierProgress& onProgress = {},
                                             const std::atomic<bool>* cancel = nullptr);
};

}  // namespace flowscope::core
