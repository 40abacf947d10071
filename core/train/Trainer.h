#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/models/FlowNet.h"
#include "core/sampling/Model.h"

namespace flowscope::core {

// What to train and how. Objectives (README, "Train your own flows"):
//   rectified  linear path, velocity target x_data - eps (flow matching / rectified flow)
//   diffusion  vp path, epsilon target (DDPM)
//   v          cosine path, v target alpha eps - sigma x_data (Salimans and Ho)
struct TrainSettings {
    std::string dataset = "points:moons";  // fashion-mnist[:N], folder:PATH, points:*, gmm:*
    std::string objective = "rectified";
    std::string timeSampling = "uniform";  // uniform, logit-normal (SD3: m = 0, s = 1)
    int iterations = 1000;
    int batch = 256;
    double learningRate = 1e-3;
    double weightDecay = 0.0;
    double emaDecay = 0.999;
    double gradientClip = 1.0;
    uint64_t seed = 0;
    int64_t width = 0;  // 0: 256 for points, 32 for images
    int64_t depth = 0;  // 0: 3 for points, 2 for images
    int resolution = 0;
    // Reflow and distillation train on (noise, sample) couplings from another model's ODE
    // instead of independent noise and data: "" (plain training), "reflow" (a rectified flow on
    // the couplings at all t) or "distill" (a one-step map: the velocity at t = 0 only, so one
    // Euler step carries the noise to its sample).
    std::string couplings;
    std::string source;  // the model the couplings came from
    // A conditional network: the dataset's class names (empty: unconditional), and the chance
    // that a label is replaced by the null class in a batch (so one network is both models).
    std::vector<std::string> classes;
    double labelDropout = 0.1;
    double couplingCfg = 1.0;  // reflow and distill of a conditional source: the scale baked in
    bool conditional() const { return !classes.empty(); }

    std::string toJson() const;
    static TrainSettings fromJson(const std::string& json);  // throws std::invalid_argument
};

const std::vector<std::string>& objectiveNames();
const std::vector<std::string>& timeSamplingNames();

// A batch of training data [B, ...sampleShape] and, for labelled data, each item's class [B] (int64).
struct TrainingBatch {
    torch::Tensor data;
    torch::Tensor labels;  // undefined for unlabelled data
};
// Draws a batch from a generator.
using DataSampler = std::function<TrainingBatch(int64_t batch, at::Generator& generator)>;

struct TrainStep {
    int iteration = 0;  // completed iterations
    double loss = 0.0;
};

// Trains a FlowNet with AdamW (bias-corrected, decoupled weight decay), gradient clipping and an
// exponential moving average of the weights whose decay warms up to `emaDecay`: at update n
// (from 0) it is min(emaDecay, (1 + n) / (10 + n)). Everything that decides the next step (weights,
// average, optimizer moments, iteration, and the generator that draws data, noise and times) is
// in the checkpoint, so a resumed run continues exactly as an uninterrupted one would.
class Trainer {
public:
    Trainer(TrainSettings settings, std::vector<int64_t> sampleShape, DataSampler data);

    const TrainSettings& settings() const { return m_settings; }
    int iteration() const { return m_iteration; }
    FlowNet& network() { return *m_network; }
    FlowNet& average() { return *m_average; }

    // Runs until `settings().iterations` or the cancel flag; calls onStep after each iteration.
    void run(const std::function<void(const TrainStep&)>& onStep = {}, const std::atomic<bool>* cancel = nullptr);
    double step();  // one iteration; returns its loss
    // Trains on fixed couplings (noise [N, ...], sample [N, ...], and for a conditional network
    // each pair's class [N]) from here on (reflow, distill).
    void useCouplings(torch::Tensor noise, torch::Tensor samples, torch::Tensor labels = {});
    // Starts from another network's weights (and sets the average to them).
    void initializeFrom(FlowNet& network);
    // The objective's loss on given data, noise and times (no gradients), for the network or its
    // moving average.
    double loss(const torch::Tensor& data, const torch::Tensor& noise, const torch::Tensor& t, bool average,
                const torch::Tensor& labels = {});
    // The regression target and the noisy input of the objective at t.
    std::pair<torch::Tensor, torch::Tensor> inputAndTarget(const torch::Tensor& data, const torch::Tensor& noise,
                                                           const torch::Tensor& t) const;

    // Samples of the moving average from the given noise [n, ...sampleShape]: `steps` Euler steps
    // on the objective's own path (one step for a distilled map), as a user would see them. A
    // conditional network's sample k is of class k mod the class count.
    torch::Tensor previewSamples(const torch::Tensor& noise, int steps);

    void saveCheckpoint(const std::string& path) const;
    // Restores a checkpoint written by saveCheckpoint with the same settings (the iteration
    // target may differ). Throws InvalidRequestError when the settings differ, std::runtime_error
    // naming the file and the field when it is not a regular file or is damaged.
    void loadCheckpoint(const std::string& path);
    // Writes a "flowscope-net" bundle of the averaged weights into `directory`.
    void exportBundle(const std::string& directory, const std::string& name) const;

private:
    TrainSettings m_settings;
    std::vector<int64_t> m_sampleShape;
    DataSampler m_data;
    std::shared_ptr<FlowNet> m_network;
    std::shared_ptr<FlowNet> m_average;
    std::vector<torch::Tensor> m_firstMoments;
    std::vector<torch::Tensor> m_secondMoments;
    at::Generator m_generator;
    int m_iteration = 0;
    torch::Tensor m_couplingNoise;
    torch::Tensor m_couplingSamples;
    torch::Tensor m_couplingLabels;
};

// The classes k mod `classes` for k = 0..count-1 ([count] int64): how previews and couplings
// spread their samples over a conditional network's classes.
torch::Tensor cyclingLabels(int64_t count, int64_t classes);

// Noise and the samples a model's ODE carries it to (linear path, `steps` RK4 steps), in batches:
// the couplings reflow and distillation train on. Deterministic in `seed`. A conditional model
// keeps its condition: pair k is of class k mod its class count (`labels`), guided with cfg
// scale `cfg` (1: the class's own model).
struct Couplings {
    torch::Tensor noise, samples;
    torch::Tensor labels;  // conditional models only
};
Couplings makeCouplings(const std::shared_ptr<Model>& model, int64_t count, int steps, uint64_t seed,
                        const std::function<void(int64_t done)>& onProgress = {},
                        const std::atomic<bool>* cancel = nullptr, double cfg = 1.0);

// The data of a dataset spec as a sampler, and the shape of one sample. `classes` (when given)
// receives the dataset's class names (empty for unlabelled data); `loadFolder` reads one folder.
DataSampler datasetSampler(const std::string& dataset, int resolution, std::vector<int64_t>* sampleShape,
                           const std::function<torch::Tensor(const std::string&, int)>& loadFolder = {},
                           std::vector<std::string>* classes = nullptr);

}  // namespace flowscope::core
