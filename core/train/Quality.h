#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include <torch/torch.h>

namespace flowscope::core {

// A quality measure that works offline. FID needs Inception weights that cannot be downloaded
// here, so FlowScope trains its own small classifier (three convolutions and two linear layers) on the Fashion-MNIST labels and measures the
// Frechet distance between Gaussians fitted to its penultimate features (128 numbers per image)
// of generated and of real test images. It stands in for FID: lower is better, 0 for identical
// feature statistics; numbers are comparable only between runs with the same classifier and the
// same sample counts (the estimate is biased upward for small counts).
class FeatureClassifier : public torch::nn::Module {
public:
    static constexpr int64_t kFeatures = 128;
    static constexpr int64_t kClasses = 10;

    FeatureClassifier();
    // Images [B, 1, 28, 28] in engine space [-1, 1] -> features [B, kFeatures].
    torch::Tensor features(const torch::Tensor& images);
    // Images -> class logits [B, kClasses].
    torch::Tensor forward(const torch::Tensor& images);

private:
    torch::nn::Conv2d m_conv1{nullptr}, m_conv2{nullptr}, m_conv3{nullptr};
    torch::nn::Linear m_features{nullptr}, m_head{nullptr};
};

struct ClassifierSettings {
    int epochs = 3;
    int batch = 128;
    double learningRate = 1e-3;
    uint64_t seed = 0;
};

// Trains on images [N, 1, 28, 28] and labels [N] (int64 or uint8, 0..9) with AdamW; the order of
// the images and the initial weights follow `seed`. onProgress gets (done, total) batches and the
// batch loss. Throws CancelledError when `cancel` is set.
std::shared_ptr<FeatureClassifier> trainFeatureClassifier(
    const torch::Tensor& images, const torch::Tensor& labels, const ClassifierSettings& settings,
    const std::function<void(int64_t done, int64_t total, double loss)>& onProgress = {},
    const std::atomic<bool>* cancel = nullptr);

// The share of images classified as their label.
double classifierAccuracy(FeatureClassifier& classifier, const torch::Tensor& images, const torch::Tensor& labels);

// A safetensors file with the weights (metadata: format "flowscope-classifier", test accuracy).
void saveFeatureClassifier(FeatureClassifier& classifier, const std::string& path, double testAccuracy);
// Throws std::runtime_error naming the file and what is wrong with it.
std::shared_ptr<FeatureClassifier> loadFeatureClassifier(const std::string& path, double* testAccuracy = nullptr);

// Mean and covariance (float64, unbiased) of the rows of `samples` [N, D], N >= 2.
struct GaussianStatistics {
    torch::Tensor mean;
    torch::Tensor covariance;
    int64_t count = 0;
};
GaussianStatistics gaussianStatistics(const torch::Tensor& samples);
// The classifier's features of images [N, 1, 28, 28] (values outside [-1, 1] are clamped first,
// as an exported image would be), in batches.
GaussianStatistics featureStatistics(FeatureClassifier& classifier, const torch::Tensor& images, int64_t batch = 500);

// The squared Frechet (2-Wasserstein) distance between two Gaussians:
// |m1 - m2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), through symmetric eigendecompositions in
// float64 (eigenvalues below zero from rounding are treated as zero).
double frechetDistance(const GaussianStatistics& a, const GaussianStatistics& b);

}  // namespace flowscope::core
