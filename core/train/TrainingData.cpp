// The data a training draws from: labelled batches of a dataset spec, and the couplings reflow
// and distillation draw from another model's ODE (declared in Trainer.h).
#include <algorithm>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/models/Datasets.h"
#include "core/models/GaussianMixture.h"
#include "core/models/ModelCatalog.h"
#include "core/models/ModelSpec.h"
#include "core/sampling/Guidance.h"
#include "core/sampling/ProbabilityPath.h"
#include "core/sampling/Sampler.h"
#include "core/sampling/Schedule.h"
#include "core/train/Trainer.h"

namespace flowscope::core {

DataSampler datasetSampler(const std::string& dataset, int resolution, std::vector<int64_t>* sampleShape,
                           const std::function<torch::Tensor(const std::string&, int)>& loadFolder,
                           std::vector<std::string>* classes) {
    const ModelSpec spec = parseModelSpec(dataset);
    torch::Tensor points;
    torch::Tensor labels;  // per item, for labelled data
    std::vector<std::string> names;
    switch (spec.kind) {
        case ModelSpec::Kind::Mixture: {
            std::shared_ptr<GaussianMixture> mixture = GaussianMixture::named(spec.name);
            *sampleShape = mixture->sampleShape();
            if (classes) *classes = mixture->classNames();
            const torch::Tensor componentClasses = torch::tensor(mixture->componentClasses(), torch::kInt64);
            return [mixture, componentClasses](int64_t batch, at::Generator& generator) {
                const auto component = torch::multinomial(mixture->weights(), batch, true, generator);
                const auto means = mixture->means().index_select(0, component);
                const auto stds = mixture->stds().index_select(0, component).unsqueeze(1);
                return TrainingBatch{
                    (means + stds * torch::randn(means.sizes(), generator, torch::kFloat64)).to(torch::kFloat32),
                    componentClasses.index_select(0, component)};
            };
        }
        case ModelSpec::Kind::Points:
            points = makePointCloud(spec.name);
            break;
        case ModelSpec::Kind::FashionMnist:
            points = loadFashionMnist(true, spec.limit);
            labels = loadFashionMnistLabels(true, spec.limit);
            names = fashionMnistClassNames();
            break;
        case ModelSpec::Kind::Folder: {
            if (!loadFolder) throw InvalidRequestError("training on 'folder:' needs FlowScope built with OpenCV");
            const int side = resolution > 0 ? resolution : 32;
            names = folderClasses(spec.name);
            if (names.empty()) {
                points = loadFolder(spec.name, side);
                break;
            }
            // Sub-folders are classes, as for the folder model.
            std::vector<torch::Tensor> parts, partLabels;
            for (size_t c = 0; c < names.size(); ++c) {
                parts.push_back(loadFolder(spec.name + "/" + names[c], side));
                partLabels.push_back(torch::full({parts.back().size(0)}, static_cast<int64_t>(c), torch::kInt64));
            }
            points = torch::cat(parts);
            labels = torch::cat(partLabels);
            break;
        }
        case ModelSpec::Kind::Bundle:
        case ModelSpec::Kind::Checkpoint:
            throw InvalidRequestError("a bundle or checkpoint is a model, not a dataset: train on fashion-mnist, folder:PATH, "
                                      "points:NAME or gmm:NAME");
    }
    if (points.dim() == 4 && resolution > 0 && points.size(2) != resolution) {
        namespace F = torch::nn::functional;
        points = F::interpolate(points, F::InterpolateFuncOptions()
                                            .size(std::vector<int64_t>{resolution, resolution})
                                            .mode(torch::kArea));
    }
    *sampleShape = std::vector<int64_t>(points.sizes().begin() + 1, points.sizes().end());
    if (classes) *classes = names;
    return [points, labels](int64_t batch, at::Generator& generator) {
        const torch::Tensor index = torch::randint(points.size(0), {batch}, generator, torch::kLong);
        return TrainingBatch{points.index_select(0, index), labels.defined() ? labels.index_select(0, index) : torch::Tensor()};
    };
}

torch::Tensor cyclingLabels(int64_t count, int64_t classes) {
    return torch::arange(count, torch::kInt64).remainder(std::max<int64_t>(classes, 1));
}

Couplings makeCouplings(const std::shared_ptr<Model>& model, int64_t count, int steps, uint64_t seed,
                        const std::function<void(int64_t done)>& onProgress, const std::atomic<bool>* cancel,
                        double cfg) {
    c10::InferenceMode inference;
    const auto path = makePath("linear");
    const auto solver = makeSolver("rk4");
    const auto grid = makeTimeGrid(parseSchedule("uniform"), *path, steps, 0, 1.0);
    const auto shape = model->sampleShape();
    std::vector<int64_t> full{count};
    full.insert(full.end(), shape.begin(), shape.end());
    at::Generator generator = at::detail::createCPUGenerator(seed);
    Couplings couplings;
    couplings.noise = torch::randn(full, generator, torch::kFloat32);
    // A conditional source: pair k of class k mod the class count, guided with `cfg`.
    std::shared_ptr<GuidedModel> guided;
    if (model->isConditional()) {
        GuidanceSettings guidance;
        guidance.method = GuidanceMethod::Cfg;
        guidance.scale = cfg;
        guided = std::make_shared<GuidedModel>(model, 0, guidance, *path);
        couplings.labels = cyclingLabels(count, static_cast<int64_t>(model->classNames().size()));
    } else if (cfg != 1.0) {
        throw InvalidRequestError("--cfg bakes guidance into a conditional source's couplings; '" + model->name() +
                                  "' is unconditional");
    }
    std::vector<torch::Tensor> samples;
    constexpr int64_t kChunk = 1024;
    SamplingOptions options;
    options.cancel = cancel;
    for (int64_t start = 0; start < count; start += kChunk) {
        const torch::Tensor z = couplings.noise.narrow(0, start, std::min(kChunk, count - start));
        Model* run = model.get();
        if (guided) {
            const torch::Tensor labels = couplings.labels.narrow(0, start, z.size(0));
            guided->setRowClasses(std::vector<int64_t>(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel()));
            run = guided.get();
        }
        samples.push_back(runSampler(*run, *path, *solver, grid, z, nullptr, options).final.to(torch::kFloat32));
        if (onProgress) onProgress(start + z.size(0));
    }
    couplings.samples = torch::cat(samples);
    return couplings;
}

}  // namespace flowscope::core
