#pragma once
// Training as a job, for the CLI and the app alike: plain structs in and out, no LibTorch types,
// so the UI can include it. A job trains (or reflows, or distills) into an output folder and
// keeps everything needed to resume there: run the same request again after a cancel or a crash
// and it continues from the last checkpoint.
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/api/Engine.h"

namespace flowscope::core {

struct TrainRequest {
    std::string mode = "train";  // train, reflow (a 2-rectified flow), distill (a one-step map)
    std::string outDirectory;    // the bundle folder written (created when missing)
    std::string name;            // the bundle's name ("" = made from the settings)
    // train: the data and what to learn.
    std::string dataset;  // fashion-mnist[:N], folder:PATH, points:*, gmm:*
    std::string objective = "rectified";
    int64_t width = 0;  // 0: the architecture's default for the data
    int64_t depth = 0;
    int resolution = 0;
    // A conditional network: a class embedding (the dataset's labels: fashion-mnist's ten,
    // gmm:*'s classes, a folder's sub-folders) and a null class, trained by label dropout (each
    // label replaced by the null class with this probability), for classifier-free guidance.
    bool conditional = false;
    double labelDropout = 0.1;
    // reflow and distill: the rectified flow FlowScope trained whose ODE makes the couplings
    // (bundle:DIR, shipped:NAME or DIR), how many (noise, sample) pairs, and its RK4 steps.
    std::string source;
    int64_t pairs = 10000;
    int couplingSteps = 32;
    // A conditional source keeps its condition: pair k is made for class k mod the class count,
    // guided with this cfg scale (1: the class's own model), which the new network bakes in.
    double couplingCfg = 1.0;
    // Optimization; unset fields take the defaults (train) or the source's settings (reflow,
    // distill; there 2,000 iterations and EMA 0.999).
    std::optional<std::string> timeSampling;
    std::optional<int> iterations;
    std::optional<int> batch;
    std::optional<double> learningRate;
    std::optional<double> weightDecay;
    std::optional<double> emaDecay;
    std::optional<uint64_t> seed;
    int checkpointEvery = 500;  // iterations between checkpoints (and bundle updates)
    // Previews of the averaged network's samples every `previewEvery` iterations (0 = none):
    // `previewCount` samples (0: 1,000 points or 16 images) from fixed noise, `previewSteps` Euler steps.
    int previewEvery = 0;
    int previewCount = 0;
    int previewSteps = 16;
};

struct TrainProgress {
    enum class Phase { Couplings, Training };
    Phase phase = Phase::Training;
    int64_t done = 0;   // couplings made, or iterations completed
    int64_t total = 0;
    int resumedFrom = 0;
    double loss = 0.0;          // this iteration's
    double smoothedLoss = 0.0;  // exponential average (0.98)
    double seconds = 0.0;       // since the job started
    double etaSeconds = -1.0;   // < 0 while unknown
    HostArray preview;          // when a preview is due: [n, 2] points or [n, C, H, W] images in [-1, 1]
};

struct TrainOutcome {
    Failure failure = Failure::None;
    std::string error;  // what to do about it; for Cancelled: that the checkpoint is saved
    bool ok() const { return failure == Failure::None; }
    std::string directory;  // the bundle folder (written at every checkpoint, also when cancelled)
    std::string dataset;
    std::string objective;
    std::string couplings;
    int iterations = 0;   // completed
    int resumedFrom = 0;  // where this run started
    double loss = 0.0;    // smoothed, at the end
    double seconds = 0.0;
    // Of those seconds, making the couplings (reflow, distill; 0 when an earlier run's are reused):
    // pairs x steps x 4 network evaluations, often more than a short training itself.
    double couplingSeconds = 0.0;
    int64_t parameters = 0;
    std::vector<std::string> classes;  // a conditional network's class names
    std::vector<std::string> notes;
};

class TrainingJob {
public:
    using ProgressCallback = std::function<void(const TrainProgress&)>;
    // Never throws: failures come back in the outcome. While `*pause` is set the job waits
    // (cancel still works); after `*cancel` it saves a checkpoint and the bundle and returns
    // Failure::Cancelled. `folderLoader` reads folder:PATH datasets (as the Engine's).
    static TrainOutcome run(const TrainRequest& request, const ProgressCallback& onProgress = {},
                            const std::atomic<bool>* cancel = nullptr, const std::atomic<bool>* pause = nullptr,
                            const Engine::FolderLoader& folderLoader = {});
    static const std::vector<std::string>& modes();
};

}  // namespace flowscope::core
