#include "core/train/Trainer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>

#include "core/api/Errors.h"
#include "core/io/AtomicFile.h"
#include "core/io/Json.h"
#include "core/io/RegularFile.h"
#include "core/io/SafeTensors.h"
#include "core/models/Datasets.h"
#include "core/models/GaussianMixture.h"
#include "core/models/ModelSpec.h"
#include "core/models/NetworkDenoiser.h"
#include "core/sampling/Parameterization.h"
#include "core/sampling/ProbabilityPath.h"
#include "core/sampling/Sampler.h"
#include "core/sampling/Schedule.h"

namespace flowscope::core {
namespace {

constexpr double kAdamBeta1 = 0.9;
constexpr double kAdamBeta2 = 0.999;
constexpr double kAdamEpsilon = 1e-8;

struct ObjectiveInfo {
    const char* path;
    const char* prediction;
};

ObjectiveInfo objectiveInfo(const std::string& objective) {
    if (objective == "rectified") return {"linear", "velocity"};
    if (objective == "diffusion") return {"vp", "epsilon"};
    if (objective == "v") return {"cosine", "v"};
    throw UnknownNameError("objective", objective, objectiveNames());
}

// The moving average's decay at its n-th update (n from 0), warmed up as TensorFlow's
// ExponentialMovingAverage(num_updates) and timm's ModelEma do: with a fixed 0.999 a run of a few
// hundred iterations would export mostly its initial weights, so early on the average follows the
// weights closely and reaches the requested decay only after about 10 / (1 - decay) updates.
double averageDecay(double requested, int update) {
    return std::min(requested, (1.0 + update) / (10.0 + update));
}

std::string numberText(double value) {
    std::ostringstream text;
    text.precision(17);
    text << value;
    return text.str();
}

}  // namespace

const std::vector<std::string>& objectiveNames() {
    static const std::vector<std::string> names{"rectified", "diffusion", "v"};
    return names;
}

const std::vector<std::string>& timeSamplingNames() {
    static const std::vector<std::string> names{"uniform", "logit-normal"};
    return names;
}

std::string TrainSettings::toJson() const {
    std::ostringstream json;
    json << "{\"dataset\": \"" << jsonEscaped(dataset) << "\", \"objective\": \"" << objective
         << "\", \"time_sampling\": \"" << timeSampling << "\", \"iterations\": " << iterations
         << ", \"batch\": " << batch << ", \"learning_rate\": " << numberText(learningRate)
         << ", \"weight_decay\": " << numberText(weightDecay) << ", \"ema_decay\": " << numberText(emaDecay)
         << ", \"gradient_clip\": " << numberText(gradientClip) << ", \"seed\": " << seed << ", \"width\": " << width
         << ", \"depth\": " << depth << ", \"resolution\": " << resolution << ", \"couplings\": \"" << couplings
         << "\", \"source\": \"" << jsonEscaped(source) << "\"";
    // Only for conditional networks, so an unconditional checkpoint's settings read as before.
    if (conditional()) {
        json << ", \"classes\": [";
        for (size_t i = 0; i < classes.size(); ++i) json << (i ? ", " : "") << "\"" << jsonEscaped(classes[i]) << "\"";
        json << "], \"label_dropout\": " << numberText(labelDropout);
        if (couplingCfg != 1.0) json << ", \"coupling_cfg\": " << numberText(couplingCfg);
    }
    json << "}";
    return json.str();
}

TrainSettings TrainSettings::fromJson(const std::string& text) {
    const JsonValue json = parseJson(text);
    if (!json.isObject()) throw std::invalid_argument("training settings must be a JSON object");
    const auto& object = json.object();
    auto field = [&](const char* name) -> const JsonValue& {
        const auto it = object.find(name);
        if (it == object.end()) throw std::invalid_argument(std::string("training settings lack \"") + name + "\"");
        return it->second;
    };
    auto number = [&](const char* name) {
        double value = 0.0;
        if (!field(name).toDouble(&value)) throw std::invalid_argument(std::string("\"") + name + "\" is not a number");
        return value;
    };
    auto string = [&](const char* name) {
        if (!field(name).isString()) throw std::invalid_argument(std::string("\"") + name + "\" is not a string");
        return field(name).string();
    };
    TrainSettings settings;
    settings.dataset = string("dataset");
    settings.objective = string("objective");
    settings.timeSampling = string("time_sampling");
    settings.iterations = static_cast<int>(number("iterations"));
    settings.batch = static_cast<int>(number("batch"));
    settings.learningRate = number("learning_rate");
    settings.weightDecay = number("weight_decay");
    settings.emaDecay = number("ema_decay");
    settings.gradientClip = number("gradient_clip");
    uint64_t seed = 0;
    if (!field("seed").toUnsigned(&seed)) throw std::invalid_argument("\"seed\" is not a whole number");
    settings.seed = seed;
    settings.width = static_cast<int64_t>(number("width"));
    settings.depth = static_cast<int64_t>(number("depth"));
    settings.resolution = static_cast<int>(number("resolution"));
    settings.couplings = string("couplings");
    settings.source = string("source");
    if (const auto classes = object.find("classes"); classes != object.end()) {
        if (!classes->second.isArray()) throw std::invalid_argument("\"classes\" is not a list of names");
        for (const JsonValue& name : classes->second.array()) {
            if (!name.isString()) throw std::invalid_argument("\"classes\" is not a list of names");
            settings.classes.push_back(name.string());
        }
        settings.labelDropout = number("label_dropout");
        if (object.count("coupling_cfg")) settings.couplingCfg = number("coupling_cfg");
    }
    return settings;
}

Trainer::Trainer(TrainSettings settings, std::vector<int64_t> sampleShape, DataSampler data)
    : m_settings(std::move(settings)),
      m_sampleShape(std::move(sampleShape)),
      m_data(std::move(data)),
      m_generator(at::detail::createCPUGenerator(m_settings.seed)) {
    objectiveInfo(m_settings.objective);
    if (m_settings.timeSampling != "uniform" && m_settings.timeSampling != "logit-normal") {
        throw UnknownNameError("time sampling", m_settings.timeSampling, timeSamplingNames());
    }
    if (m_settings.iterations < 1 || m_settings.batch < 1 || m_settings.batch > 65536) {
        throw InvalidRequestError("--iters must be at least 1 and --batch between 1 and 65536");
    }
    if (!(m_settings.learningRate > 0.0) || !(m_settings.emaDecay >= 0.0 && m_settings.emaDecay < 1.0)) {
        throw InvalidRequestError("--lr must be positive and --ema in [0, 1)");
    }
    const bool image = m_sampleShape.size() == 3;
    if (m_settings.width == 0) m_settings.width = image ? 32 : 256;
    if (m_settings.depth == 0) m_settings.depth = image ? 2 : 3;
    Architecture architecture;
    architecture.kind = image ? "unet" : "mlp";
    architecture.sampleShape = m_sampleShape;
    architecture.width = m_settings.width;
    architecture.depth = m_settings.depth;
    architecture.classes = static_cast<int64_t>(m_settings.classes.size());
    if (m_settings.conditional() && !(m_settings.labelDropout >= 0.0 && m_settings.labelDropout < 1.0)) {
        throw InvalidRequestError("--label-dropout must be in [0, 1) (0.1 is usual): the share of labels trained as the null class");
    }
    m_network = makeFlowNet(architecture, m_settings.seed);
    m_average = makeFlowNet(architecture, m_settings.seed);
    torch::NoGradGuard noGrad;
    auto parameters = m_network->parameters();
    auto averaged = m_average->parameters();
    for (size_t i = 0; i < parameters.size(); ++i) {
        averaged[i].copy_(parameters[i]);
        m_firstMoments.push_back(torch::zeros_like(parameters[i]));
        m_secondMoments.push_back(torch::zeros_like(parameters[i]));
    }
}

std::pair<torch::Tensor, torch::Tensor> Trainer::inputAndTarget(const torch::Tensor& data, const torch::Tensor& noise,
                                                                 const torch::Tensor& t) const {
    const auto path = makePath(objectiveInfo(m_settings.objective).path);
    const int64_t batch = data.size(0);
    std::vector<double> alphas(batch), sigmas(batch);
    const torch::Tensor times = t.to(torch::kFloat64).contiguous();
    for (int64_t b = 0; b < batch; ++b) {
        const PathPoint p = path->at(times.data_ptr<double>()[b]);
        alphas[b] = p.alpha;
        sigmas[b] = p.sigma;
    }
    std::vector<int64_t> broadcast(data.dim(), 1);
    broadcast[0] = batch;
    const auto alpha = torch::tensor(alphas, torch::kFloat64).to(torch::kFloat32).reshape(broadcast);
    const auto sigma = torch::tensor(sigmas, torch::kFloat64).to(torch::kFloat32).reshape(broadcast);
    const torch::Tensor x = alpha * data + sigma * noise;
    if (m_settings.objective == "rectified") return {x, data - noise};
    if (m_settings.objective == "diffusion") return {x, noise};
    return {x, alpha * noise - sigma * data};
}

double Trainer::loss(const torch::Tensor& data, const torch::Tensor& noise, const torch::Tensor& t, bool average,
                     const torch::Tensor& labels) {
    torch::NoGradGuard noGrad;
    const auto [x, target] = inputAndTarget(data, noise, t);
    FlowNet& network = average ? *m_average : *m_network;
    return (network.forward(x, t.to(torch::kFloat32), m_settings.conditional() ? labels : torch::Tensor()) - target)
        .pow(2)
        .mean()
        .item<double>();
}

double Trainer::step() {
    const int64_t batch = m_settings.batch;
    torch::Tensor data;
    torch::Tensor noise;
    torch::Tensor labels;
    if (m_couplingNoise.defined()) {
        const torch::Tensor index = torch::randint(m_couplingNoise.size(0), {batch}, m_generator, torch::kLong);
        data = m_couplingSamples.index_select(0, index);
        noise = m_couplingNoise.index_select(0, index);
        if (m_couplingLabels.defined()) labels = m_couplingLabels.index_select(0, index);
    } else {
        TrainingBatch drawn = m_data(batch, m_generator);
        data = std::move(drawn.data);
        labels = std::move(drawn.labels);
        noise = torch::randn(data.sizes(), m_generator, torch::kFloat32);
    }
    if (m_settings.conditional()) {
        if (!labels.defined()) throw InvalidRequestError("a conditional network needs labelled data (its classes)");
        // Label dropout: these rows learn the null class, the unconditional model guidance needs.
        const torch::Tensor dropped = torch::rand({batch}, m_generator, torch::kFloat64) < m_settings.labelDropout;
        labels = torch::where(dropped, torch::full_like(labels, Model::kNullClass), labels);
    } else {
        labels = torch::Tensor();
    }
    torch::Tensor t = m_settings.timeSampling == "uniform"
                          ? torch::rand({batch}, m_generator, torch::kFloat64)
                          : torch::sigmoid(torch::randn({batch}, m_generator, torch::kFloat64));
    if (m_settings.couplings == "distill") t = torch::zeros({batch}, torch::kFloat64);
    // Keep clear of the ends where a target is undefined (epsilon at sigma = 0, v nowhere).
    t = t.clamp(1e-5, 1.0 - 1e-5);
    const auto [x, target] = inputAndTarget(data, noise, t);

    m_network->zero_grad();
    const torch::Tensor loss = (m_network->forward(x, t.to(torch::kFloat32), labels) - target).pow(2).mean();
    loss.backward();
    if (m_settings.gradientClip > 0.0) torch::nn::utils::clip_grad_norm_(m_network->parameters(), m_settings.gradientClip);

    torch::NoGradGuard noGrad;
    // One average update per iteration: the iteration count is the update count, so the
    // checkpoint's iteration restores the warm-up exactly.
    const double decay = averageDecay(m_settings.emaDecay, m_iteration);
    ++m_iteration;
    const double correction1 = 1.0 - std::pow(kAdamBeta1, m_iteration);
    const double correction2 = 1.0 - std::pow(kAdamBeta2, m_iteration);
    auto parameters = m_network->parameters();
    auto averaged = m_average->parameters();
    for (size_t i = 0; i < parameters.size(); ++i) {
        torch::Tensor& parameter = parameters[i];
        const torch::Tensor gradient = parameter.grad();
        if (!gradient.defined()) continue;
        m_firstMoments[i].mul_(kAdamBeta1).add_(gradient, 1.0 - kAdamBeta1);
        m_secondMoments[i].mul_(kAdamBeta2).addcmul_(gradient, gradient, 1.0 - kAdamBeta2);
        if (m_settings.weightDecay > 0.0) parameter.mul_(1.0 - m_settings.learningRate * m_settings.weightDecay);
        const torch::Tensor denominator = (m_secondMoments[i] / correction2).sqrt_().add_(kAdamEpsilon);
        parameter.addcdiv_(m_firstMoments[i], denominator, -m_settings.learningRate / correction1);
        averaged[i].mul_(decay).add_(parameter, 1.0 - decay);
    }
    return loss.item<double>();
}

void Trainer::useCouplings(torch::Tensor noise, torch::Tensor samples, torch::Tensor labels) {
    if (m_settings.objective != "rectified") {
        throw InvalidRequestError("reflow and distillation train rectified flows (--objective rectified)");
    }
    if (noise.sizes() != samples.sizes() || noise.dim() < 2 ||
        std::vector<int64_t>(noise.sizes().begin() + 1, noise.sizes().end()) != m_sampleShape) {
        throw InvalidRequestError("the couplings do not match the network's sample shape");
    }
    if (m_settings.conditional() && (!labels.defined() || labels.size(0) != noise.size(0))) {
        throw InvalidRequestError("a conditional network's couplings need one class per pair");
    }
    m_couplingNoise = noise.to(torch::kFloat32).contiguous();
    m_couplingSamples = samples.to(torch::kFloat32).contiguous();
    m_couplingLabels = m_settings.conditional() ? labels.to(torch::kInt64).contiguous() : torch::Tensor();
}

void Trainer::initializeFrom(FlowNet& network) {
    torch::NoGradGuard noGrad;
    auto from = network.parameters();
    auto parameters = m_network->parameters();
    auto averaged = m_average->parameters();
    if (from.size() != parameters.size()) throw InvalidRequestError("the networks have different architectures");
    for (size_t i = 0; i < parameters.size(); ++i) {
        if (from[i].sizes() != parameters[i].sizes()) throw InvalidRequestError("the networks have different architectures");
        parameters[i].copy_(from[i]);
        averaged[i].copy_(from[i]);
    }
}

void Trainer::run(const std::function<void(const TrainStep&)>& onStep, const std::atomic<bool>* cancel) {
    while (m_iteration < m_settings.iterations) {
        if (cancel && cancel->load()) throw CancelledError();
        const double loss = step();
        if (!std::isfinite(loss)) {
            throw std::runtime_error("the training loss became " + std::to_string(loss) + " at iteration " +
                                     std::to_string(m_iteration) + "; lower --lr");
        }
        if (onStep) onStep({m_iteration, loss});
    }
}

torch::Tensor Trainer::previewSamples(const torch::Tensor& noise, int steps) {
    const ObjectiveInfo objective = objectiveInfo(m_settings.objective);
    std::shared_ptr<FlowNet> average = m_average;
    NetworkDenoiser model(
        "preview",
        [average](const torch::Tensor& x, const torch::Tensor& time, const torch::Tensor& labels) {
            return average->forward(x, time, labels);
        },
        m_sampleShape, makePath(objective.path), parseParameterization(objective.prediction), TimeInput::T);
    c10::InferenceMode inference;
    if (m_settings.conditional()) {
        // Sample k of class k mod the class count: the preview shows every class.
        model.setClasses(m_settings.classes);
        const torch::Tensor labels = cyclingLabels(noise.size(0), static_cast<int64_t>(m_settings.classes.size()));
        model.setRowClasses(std::vector<int64_t>(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel()));
    }
    const auto path = makePath(objective.path);
    const auto solver = makeSolver("euler");
    const int count = m_settings.couplings == "distill" ? 1 : std::max(steps, 1);
    const auto grid = makeTimeGrid(parseSchedule("uniform"), *path, count, 0, 1.0);
    return runSampler(model, *path, *solver, grid, noise, nullptr, SamplingOptions{}).final.to(torch::kFloat32);
}

void Trainer::saveCheckpoint(const std::string& path) const {
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& item : m_network->named_parameters()) tensors.emplace_back("weights/" + item.key(), item.value().detach());
    for (const auto& item : m_average->named_parameters()) tensors.emplace_back("average/" + item.key(), item.value().detach());
    const auto names = m_network->named_parameters().keys();
    for (size_t i = 0; i < names.size(); ++i) {
        tensors.emplace_back("adam_m/" + names[i], m_firstMoments[i]);
        tensors.emplace_back("adam_v/" + names[i], m_secondMoments[i]);
    }
    tensors.emplace_back("generator", m_generator.get_state());
    writeSafeTensors(path, tensors,
                     {{"format", "flowscope-checkpoint"},
                      {"iteration", std::to_string(m_iteration)},
                      {"settings", m_settings.toJson()},
                      {"architecture", m_network->architecture().toJson()}});
}

void Trainer::loadCheckpoint(const std::string& path) {
    // Nothing but the training wrote this file: whatever is wrong with it, starting over is the cure.
    const std::string folder = std::filesystem::path(path).parent_path().string();
    const std::string startOver = "; remove " + (folder.empty() ? "its folder" : "the folder '" + folder + "'") +
                                  " to start the training over, or choose another --out";
    try {
        // Checked before anything opens it: a FIFO would block the open for ever, a folder is no data.
        checkRegularFile(path, memoryReadLimit(), "the checkpoint");
    } catch (const FileReadError& error) {
        throw std::runtime_error(error.what() + startOver);
    }
    const SafeTensorsFile file = SafeTensorsFile::read(path);
    const auto& metadata = file.metadata();
    const auto format = metadata.find("format");
    if (format == metadata.end() || format->second != "flowscope-checkpoint") {
        throw std::runtime_error("'" + path + "' is not a FlowScope training checkpoint" + startOver);
    }
    if (!metadata.count("settings") || !metadata.count("iteration") || !file.contains("generator")) {
        throw std::runtime_error("'" + path + "' lacks its settings, iteration or generator state; it is damaged" +
                                 startOver);
    }
    TrainSettings saved;
    try {
        saved = TrainSettings::fromJson(metadata.at("settings"));
    } catch (const std::exception& error) {
        throw std::runtime_error("'" + path + "': its \"settings\" are not training settings (" + error.what() +
                                 "); it is damaged" + startOver);
    }
    const std::string& iterationText = metadata.at("iteration");
    int iteration = -1;
    const char* const end = iterationText.data() + iterationText.size();
    const auto parsed = std::from_chars(iterationText.data(), end, iteration);
    if (parsed.ec != std::errc() || parsed.ptr != end || iteration < 0) {
        throw std::runtime_error("'" + path + "': its \"iteration\" '" + iterationText +
                                 "' is not a count of iterations; it is damaged" + startOver);
    }
    saved.iterations = m_settings.iterations;
    if (saved.toJson() != m_settings.toJson()) {
        // The request, not the file, is at odds: a usage error (exit 2), like any refused request.
        throw InvalidRequestError("'" + path + "' was trained with other settings (" + metadata.at("settings") +
                                  "); resume with the same options, or choose a new --out");
    }
    torch::NoGradGuard noGrad;
    // Tensors share storage, so copying into a copy of the handle fills the network's own.
    auto restore = [&](const std::string& name, torch::Tensor into) {
        if (!file.contains(name)) throw std::runtime_error("'" + path + "' lacks '" + name + "'" + startOver);
        const torch::Tensor value = file.tensor(name);
        if (value.sizes() != into.sizes() || value.scalar_type() != into.scalar_type()) {
            throw std::runtime_error("'" + path + "': '" + name + "' has shape " + c10::str(value.sizes()) +
                                     ", the network needs " + c10::str(into.sizes()) + startOver);
        }
        into.copy_(value);
    };
    for (const auto& item : m_network->named_parameters()) restore("weights/" + item.key(), item.value());
    for (const auto& item : m_average->named_parameters()) restore("average/" + item.key(), item.value());
    const auto names = m_network->named_parameters().keys();
    for (size_t i = 0; i < names.size(); ++i) {
        restore("adam_m/" + names[i], m_firstMoments[i]);
        restore("adam_v/" + names[i], m_secondMoments[i]);
    }
    try {
        m_generator.set_state(file.tensor("generator"));
    } catch (const c10::Error&) {
        throw std::runtime_error("'" + path + "': its \"generator\" is not a random generator state" + startOver);
    }
    m_iteration = iteration;
}

void Trainer::exportBundle(const std::string& directory, const std::string& name) const {
    std::filesystem::create_directories(directory);
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& item : m_average->named_parameters()) tensors.emplace_back(item.key(), item.value().detach());
    writeSafeTensors((std::filesystem::path(directory) / "weights.safetensors").string(), tensors,
                     {{"format", "flowscope-net"}, {"iteration", std::to_string(m_iteration)}});
    const ObjectiveInfo objective = objectiveInfo(m_settings.objective);
    std::ostringstream shape;
    for (size_t i = 0; i < m_sampleShape.size(); ++i) shape << (i ? ", " : "") << m_sampleShape[i];
    std::ostringstream manifest;
    manifest << "{\n  \"name\": \"" << jsonEscaped(name) << "\",\n  \"format\": \"flowscope-net\",\n"
             << "  \"file\": \"weights.safetensors\",\n  \"prediction\": \"" << objective.prediction << "\",\n"
             << "  \"path\": \"" << objective.path << "\",\n  \"time_input\": \"t\",\n"
             << "  \"sample_shape\": [" << shape.str() << "],\n  \"value_range\": [-1, 1],\n"
             << "  \"architecture\": " << m_network->architecture().toJson() << ",\n";
    if (m_settings.conditional()) {
        manifest << "  \"classes\": [";
        for (size_t i = 0; i < m_settings.classes.size(); ++i) {
            manifest << (i ? ", " : "") << "\"" << jsonEscaped(m_settings.classes[i]) << "\"";
        }
        manifest << "],\n";
    }
    manifest << "  \"training\": {\"iterations\": " << m_iteration << ", \"settings\": " << m_settings.toJson()
             << "}\n}\n";
    writeFileAtomically((std::filesystem::path(directory) / "flowscope.json").string(), manifest.str());
}

}  // namespace flowscope::core
