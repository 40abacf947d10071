#include "core/train/Quality.h"

#include <filesystem>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>

#include "core/api/Errors.h"
#include "core/io/SafeTensors.h"

namespace flowscope::core {
namespace nn = torch::nn;

namespace {

constexpr const char* kFormat = "flowscope-classifier";

// Symmetric square root through the eigendecomposition (negative rounding noise clipped to 0).
torch::Tensor symmetricSqrt(const torch::Tensor& matrix) {
    const auto [values, vectors] = torch::linalg::eigh(matrix, "L");
    return vectors.matmul(torch::diag(values.clamp_min(0.0).sqrt())).matmul(vectors.transpose(0, 1));
}

}  // namespace

FeatureClassifier::FeatureClassifier() {
    m_conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1)));
    m_conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1)));
    m_conv3 = register_module("conv3", nn::Conv2d(nn::Conv2dOptions(64, 128, 3).padding(1)));
    m_features = register_module("features", nn::Linear(128 * 3 * 3, kFeatures));
    m_head = register_module("head", nn::Linear(kFeatures, kClasses));
}

torch::Tensor FeatureClassifier::features(const torch::Tensor& images) {
    TORCH_CHECK(images.dim() == 4 && images.size(1) == 1 && images.size(2) == 28 && images.size(3) == 28,
                "the classifier takes Fashion-MNIST images [B, 1, 28, 28], not ", images.sizes());
    torch::Tensor x = torch::max_pool2d(torch::relu(m_conv1->forward(images)), 2);  // 14 x 14
    x = torch::max_pool2d(torch::relu(m_conv2->forward(x)), 2);                      // 7 x 7
    x = torch::max_pool2d(torch::relu(m_conv3->forward(x)), 2);                      // 3 x 3
    return torch::relu(m_features->forward(x.flatten(1)));
}

torch::Tensor FeatureClassifier::forward(const torch::Tensor& images) { return m_head->forward(features(images)); }

std::shared_ptr<FeatureClassifier> trainFeatureClassifier(
    const torch::Tensor& images, const torch::Tensor& labels, const ClassifierSettings& settings,
    const std::function<void(int64_t, int64_t, double)>& onProgress, const std::atomic<bool>* cancel) {
    if (images.dim() != 4 || labels.dim() != 1 || images.size(0) != labels.size(0) || images.size(0) == 0) {
        throw InvalidRequestError("the classifier trains on images [N, 1, 28, 28] with one label each");
    }
    if (settings.epochs < 1 || settings.batch < 1 || !(settings.learningRate > 0.0)) {
        throw InvalidRequestError("classifier training needs epochs >= 1, batch >= 1 and a positive learning rate");
    }
    c10::InferenceMode normal(false);
    // Initialization draws from the default generator: seed it for this network, then restore it.
    auto defaultGenerator = at::detail::getDefaultCPUGenerator();
    const auto saved = defaultGenerator.get_state();
    defaultGenerator.set_current_seed(settings.seed);
    auto classifier = std::make_shared<FeatureClassifier>();
    defaultGenerator.set_state(saved);

    at::Generator generator = at::detail::createCPUGenerator(settings.seed ^ 0x5deece66dull);
    torch::optim::AdamW optimizer(classifier->parameters(),
                                  torch::optim::AdamWOptions(settings.learningRate).weight_decay(1e-4));
    const torch::Tensor targets = labels.to(torch::kLong);
    const int64_t count = images.size(0);
    const int64_t perEpoch = (count + settings.batch - 1) / settings.batch;
    const int64_t total = perEpoch * settings.epochs;
    int64_t done = 0;
    classifier->train();
    for (int epoch = 0; epoch < settings.epochs; ++epoch) {
        const torch::Tensor order = torch::randperm(count, generator, torch::TensorOptions().dtype(torch::kLong));
        for (int64_t start = 0; start < count; start += settings.batch) {
            if (cancel && cancel->load()) throw CancelledError();
            const torch::Tensor index = order.narrow(0, start, std::min<int64_t>(settings.batch, count - start));
            optimizer.zero_grad();
            const torch::Tensor loss =
                torch::cross_entropy_loss(classifier->forward(images.index_select(0, index)), targets.index_select(0, index));
            loss.backward();
            optimizer.step();
            ++done;
            if (onProgress) onProgress(done, total, loss.item<double>());
        }
    }
    classifier->eval();
    return classifier;
}

double classifierAccuracy(FeatureClassifier& classifier, const torch::Tensor& images, const torch::Tensor& labels) {
    torch::NoGradGuard noGrad;
    const torch::Tensor targets = labels.to(torch::kLong);
    int64_t correct = 0;
    for (int64_t start = 0; start < images.size(0); start += 1000) {
        const int64_t size = std::min<int64_t>(1000, images.size(0) - start);
        const torch::Tensor predicted = classifier.forward(images.narrow(0, start, size)).argmax(1);
        correct += predicted.eq(targets.narrow(0, start, size)).sum().item<int64_t>();
    }
    return images.size(0) > 0 ? static_cast<double>(correct) / static_cast<double>(images.size(0)) : 0.0;
}

void saveFeatureClassifier(FeatureClassifier& classifier, const std::string& path, double testAccuracy) {
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& item : classifier.named_parameters()) tensors.emplace_back(item.key(), item.value().detach());
    std::ostringstream accuracy;
    accuracy.precision(6);
    accuracy << testAccuracy;
    writeSafeTensors(path, tensors, {{"format", kFormat}, {"test_accuracy", accuracy.str()}});
}

std::shared_ptr<FeatureClassifier> loadFeatureClassifier(const std::string& path, double* testAccuracy) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        throw std::runtime_error("no classifier at '" + path +
                                 "': train one with flowscope-cli classifier --out FILE, or pass --classifier FILE");
    }
    const SafeTensorsFile file = SafeTensorsFile::read(path);
    const auto format = file.metadata().find("format");
    if (format == file.metadata().end() || format->second != kFormat) {
        throw std::runtime_error("'" + path + "' is not a FlowScope feature classifier (flowscope-cli classifier writes one)");
    }
    c10::InferenceMode normal(false);
    torch::NoGradGuard noGrad;
    auto classifier = std::make_shared<FeatureClassifier>();
    const auto parameters = classifier->named_parameters();
    if (file.entries().size() != parameters.size()) {
        throw std::runtime_error("'" + path + "' holds " + std::to_string(file.entries().size()) +
                                 " tensors; this version's classifier has " + std::to_string(parameters.size()));
    }
    for (const auto& item : parameters) {
        torch::Tensor stored;
        try {
            stored = file.tensor(item.key());
        } catch (const std::exception&) {
            throw std::runtime_error("'" + path + "' lacks the classifier tensor '" + item.key() + "'");
        }
        if (stored.sizes() != item.value().sizes()) {
            std::ostringstream message;
            message << "'" << path << "': tensor '" << item.key() << "' is " << stored.sizes() << ", expected "
                    << item.value().sizes();
            throw std::runtime_error(message.str());
        }
        item.value().copy_(stored.to(torch::kFloat32));
    }
    if (testAccuracy) {
        const auto accuracy = file.metadata().find("test_accuracy");
        *testAccuracy = accuracy == file.metadata().end() ? 0.0 : std::atof(accuracy->second.c_str());
    }
    classifier->eval();
    return classifier;
}

GaussianStatistics gaussianStatistics(const torch::Tensor& samples) {
    if (samples.dim() != 2 || samples.size(0) < 2) {
        throw InvalidRequestError("Gaussian statistics need at least 2 samples as rows of a matrix");
    }
    const torch::Tensor x = samples.to(torch::kFloat64);
    GaussianStatistics statistics;
    statistics.count = x.size(0);
    statistics.mean = x.mean(0);
    const torch::Tensor centred = x - statistics.mean;
    statistics.covariance = centred.transpose(0, 1).matmul(centred) / static_cast<double>(statistics.count - 1);
    return statistics;
}

GaussianStatistics featureStatistics(FeatureClassifier& classifier, const torch::Tensor& images, int64_t batch) {
    torch::NoGradGuard noGrad;
    std::vector<torch::Tensor> features;
    for (int64_t start = 0; start < images.size(0); start += batch) {
        const int64_t size = std::min(batch, images.size(0) - start);
        features.push_back(classifier.features(images.narrow(0, start, size).to(torch::kFloat32).clamp(-1.0, 1.0)));
    }
    if (features.empty()) throw InvalidRequestError("no images to measure");
    return gaussianStatistics(torch::cat(features));
}

double frechetDistance(const GaussianStatistics& a, const GaussianStatistics& b) {
    if (!a.mean.defined() || !b.mean.defined() || a.mean.sizes() != b.mean.sizes()) {
        throw InvalidRequestError("the Frechet distance needs statistics of the same dimension");
    }
    const torch::Tensor rootA = symmetricSqrt(a.covariance.to(torch::kFloat64));
    torch::Tensor product = rootA.matmul(b.covariance.to(torch::kFloat64)).matmul(rootA);
    product = 0.5 * (product + product.transpose(0, 1));  // symmetric up to rounding; make it exact
    const torch::Tensor productValues = torch::linalg::eigvalsh(product, "L");
    const double traceRoot = productValues.clamp_min(0.0).sqrt().sum().item<double>();
    const double meanTerm = (a.mean - b.mean).pow(2).sum().item<double>();
    const double value = meanTerm + a.covariance.trace().item<double>() + b.covariance.trace().item<double>() -
                         2.0 * traceRoot;
    return std::max(value, 0.0);
}

}  // namespace flowscope::core
