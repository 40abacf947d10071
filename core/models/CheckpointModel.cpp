#include "core/models/CheckpointModel.h"

#include <torch/torch.h>

#include "core/io/RegularFile.h"
#include "core/models/flux/FluxModel.h"
#include "core/models/mmdit/Sd3Model.h"
#include "core/sampling/Device.h"
#include "core/sampling/ProbabilityPath.h"

namespace flowscope::core {

std::string CheckpointModel::memoryRemedy(bool gpu, bool storesFloat8) {
    const std::string fp8 = storesFloat8 ? "" : "the fp8 file of the model (its matrices stay at one byte per value), ";
    return gpu ? "use " + fp8 + "a smaller --width/--height, or --device cpu"
               : "use a GPU, " + fp8 + "a smaller --width/--height, or a machine with more memory";
}

CheckpointModel::CheckpointModel(CheckpointLayout layout, LatentFormat latent)
    : m_layout(std::move(layout)), m_latent(latent) {
    rebuildNetwork();
}

CheckpointModel::~CheckpointModel() = default;

void CheckpointModel::rebuildNetwork() {
    m_network = std::make_unique<NetworkDenoiser>(
        name(),
        [this](const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& labels) {
            // The network predicts eps - x0 = dx/dsigma; the linear path's velocity is d/dt = -d/dsigma.
            return (-rawOutput(x, sigma, labels)).to(x.scalar_type());
        },
        sampleShape(), makePath("linear"), Parameterization::Velocity, TimeInput::Sigma, /*forwardMayWriteInput=*/false);
    if (!m_classNames.empty()) m_network->setClasses(m_classNames);
}

void CheckpointModel::setClassNames(std::vector<std::string> names) {
    m_classNames = std::move(names);
    m_network->setClasses(m_classNames);
}

void CheckpointModel::setRowClasses(std::vector<int64_t> classes) { m_network->setRowClasses(std::move(classes)); }

void CheckpointModel::setSize(int width, int height) {
    if (width == m_width && height == m_height) return;
    m_width = width;
    m_height = height;
    rebuildNetwork();
}

torch::Tensor CheckpointModel::denoise(const torch::Tensor& x, double alpha, double sigma) {
    return m_network->denoise(x, alpha, sigma);
}

Model::Prediction CheckpointModel::predict(const torch::Tensor& x, const PathPoint& p) { return m_network->predict(x, p); }

Model::Prediction CheckpointModel::predictRows(const torch::Tensor& x, const std::vector<PathPoint>& points) {
    return m_network->predictRows(x, points);
}

torch::Tensor CheckpointModel::denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                                           const std::vector<double>& sigma) {
    return m_network->denoiseRows(x, alpha, sigma);
}

std::vector<std::string> CheckpointModel::takeNotes() {
    std::vector<std::string> notes = m_network->takeNotes();
    notes.insert(notes.end(), m_notes.begin(), m_notes.end());
    m_notes.clear();
    return notes;
}

void CheckpointModel::prepare(torch::Device device, torch::ScalarType) {
    if (device != m_device) {
        releaseParts();
        m_autoencoder.reset();
    }
    m_device = device;
}

double CheckpointModel::weightBytes() const {
    if (m_weightBytes < 0.0) {
        m_weightBytes = partBytes(m_layout.transformer, torch::kFloat32) +
                        (m_layout.autoencoder.found() ? partBytes(m_layout.autoencoder, torch::kFloat32) : 0.0);
    }
    return m_weightBytes;
}

void CheckpointModel::releaseWeights() {
    if (m_device.is_cuda()) return;
    releaseParts();
    m_autoencoder.reset();
}

double CheckpointModel::partBytes(const CheckpointPart& part, torch::ScalarType dtype) {
    return double(Weights(part.files, part.prefix, dtype, torch::kCPU).parameters()) * double(c10::elementSize(dtype));
}

PartSize CheckpointModel::partSize(const CheckpointPart& part) {
    const Weights weights(part.files, part.prefix, torch::kFloat32, torch::kCPU);
    return {double(weights.parameters()), double(weights.float8Parameters())};
}

Weights CheckpointModel::placeWeights(const CheckpointPart& part, const std::string& what, double activationBytes,
                                      const std::atomic<bool>* cancel, bool mayRunOnCpu) {
    const PartSize size = partSize(part);
    const bool storesFloat8 = size.float8Parameters > 0.0;
    torch::Device device = m_device;
    PartPlacement placement;
    if (device.is_cuda()) {
        const DeviceMemory gpu = cudaMemory(device.index());
        placement = placePart(size, activationBytes, kGpuMemoryShare * gpu.free, true);
        std::string onCpuToo;
        if (!placement.fits && mayRunOnCpu) {
            const double room = cpuRoomBytes(kCpuMemoryShare);
            const PartPlacement onCpu = placePart(size, activationBytes, room, false);
            if (onCpu.fits) {
                m_notes.push_back(what + " runs on the CPU: it needs about " + describeBytes(placement.bytes) +
                                  ", more than the GPU's free " + describeBytes(gpu.free));
                device = torch::kCPU;
                placement = onCpu;
            } else {
                onCpuToo = ", and about " + describeBytes(onCpu.bytes) + " on the CPU, where it may take " + describeBytes(room);
            }
        }
        if (!placement.fits) {
            throw InvalidRequestError(what + " needs about " + describeBytes(placement.bytes) + " (in " + placement.describe() +
                                      ", with its activations), more than the GPU's free memory (" + describeBytes(gpu.free) +
                                      ")" + onCpuToo + ": " +
                                      (onCpuToo.empty() ? memoryRemedy(true, storesFloat8)
                                                        : std::string("use a machine with more memory")));
        }
    } else {
        const double memory = machineMemoryBytes();
        const double room = cpuRoomBytes(kCpuMemoryShare);
        // Other programs hold the rest: what is free now is less than FlowScope's share.
        const bool busy = memory > 0.0 && room < kCpuMemoryShare * memory;
        placement = placePart(size, activationBytes, room, false);
        if (!placement.fits) {
            const std::string where = busy ? "the memory free now (" + describeBytes(room) + " of this machine's " +
                                                 describeBytes(memory) + "): close other programs, or "
                                           : "this machine's memory (" + describeBytes(memory) + ") can hold: ";
            throw InvalidRequestError(what + " needs about " + describeBytes(placement.bytes) + " (in " + placement.describe() +
                                      ", with its activations), more than " + where + memoryRemedy(false, storesFloat8));
        }
        if (placement.bfloat16 || placement.packFloat8) {
            m_notes.push_back(what + " runs in " + placement.describe() + " on the CPU: in float32 it would need " +
                              describeBytes(4.0 * size.parameters + activationBytes) + " of this machine's " + describeBytes(memory) +
                              (busy ? " (" + describeBytes(room) + " free now)" : std::string()));
        }
    }
    return Weights(part.files, part.prefix, placement.bfloat16 ? torch::kBFloat16 : torch::kFloat32, device, cancel,
                   placement.packFloat8);
}

void CheckpointModel::ensureAutoEncoder(bool withEncoder, const std::atomic<bool>* cancel) {
    if (m_autoencoder && (!withEncoder || m_autoencoder->hasEncoder())) return;
    const CheckpointPart& part = m_layout.require(m_layout.autoencoder, "the autoencoder");
    // The decoder's widest activations: 128 channels at full size, a few at once.
    const double activations = 4.0 * 128.0 * 6.0 * double(m_width) * double(m_height);
    const Weights weights = placeWeights(part, "the autoencoder", activations, cancel);
    const ScopedLoad load("the autoencoder", weights.storedBytes());
    m_autoencoder = std::make_unique<AutoEncoder>(weights, m_latent.shift, m_latent.scale, withEncoder);
}

void CheckpointModel::runPart(const CheckpointPart& part, const std::string& what, const std::string& label,
                              double activations, const std::atomic<bool>* cancel,
                              const std::function<void(const Weights&)>& run) {
    const Weights weights = placeWeights(part, what, activations, cancel, /*mayRunOnCpu=*/true);
    const ScopedLoad load(label, weights.storedBytes());
    run(weights);
}

void CheckpointModel::makeRoomFor(const CheckpointPart& part) {
    if (!partsLoaded() || m_device.is_cuda()) return;
    const double memory = machineMemoryBytes();
    if (memory > 0.0 && partBytes(part, torch::kFloat32) + partBytes(m_layout.transformer, torch::kFloat32) > kCpuMemoryShare * memory) {
        releaseParts();
    }
}

void CheckpointModel::checkConditioningBatch(std::initializer_list<const torch::Tensor*> conditioning, int64_t batch) {
    for (const torch::Tensor* cond : conditioning) {
        if (cond->size(0) != 1 && cond->size(0) != batch) {
            throw InvalidRequestError("conditioning with a batch of " + std::to_string(cond->size(0)) +
                                      " does not fit latents with a batch of " + std::to_string(batch) + " (give 1 or " +
                                      std::to_string(batch) + ")");
        }
    }
}

torch::Tensor CheckpointModel::latentToRgb(const torch::Tensor& z) const {
    const torch::Tensor factors = torch::from_blob(const_cast<double*>(m_latent.rgbFactors[0].data()), {16, 3}, torch::kFloat64)
                                      .to(z.device(), z.scalar_type());
    const torch::Tensor bias = torch::from_blob(const_cast<double*>(m_latent.rgbBias.data()), {1, 3, 1, 1}, torch::kFloat64)
                                   .to(z.device(), z.scalar_type());
    return torch::einsum("bchw,cr->brhw", {z, factors}) + bias;
}

torch::Tensor CheckpointModel::preview(const torch::Tensor& x, bool decode) {
    if (decode && hasDecoder()) return decodeLatents(x, m_cancel).clamp(-1.0, 1.0);
    const torch::Tensor rgb = latentToRgb(x);
    return rgb.repeat_interleave(8, 2).repeat_interleave(8, 3);
}

torch::Tensor CheckpointModel::decodeLatents(const torch::Tensor& z, const std::atomic<bool>* cancel) {
    if (z.dim() != 4) throw InvalidRequestError("latents must be [B, C, h, w]; got " + c10::str(z.sizes()));
    ensureAutoEncoder(false, cancel);
    if (z.size(1) != m_autoencoder->latentChannels()) {
        throw InvalidRequestError("the autoencoder takes latents of " + std::to_string(m_autoencoder->latentChannels()) +
                                  " channels; got " + c10::str(z.sizes()));
    }
    return m_autoencoder->decode(z.to(m_device)).to(z.device(), z.scalar_type());
}

torch::Tensor CheckpointModel::encode(const torch::Tensor& images) {
    ensureAutoEncoder(true, m_cancel);
    if (images.dim() != 4 || images.size(1) != 3 || images.size(2) % 8 != 0 || images.size(3) % 8 != 0) {
        throw InvalidRequestError(name() + "'s autoencoder takes RGB images whose sides are multiples of 8; got " +
                                  c10::str(images.sizes()));
    }
    return m_autoencoder->encode(images.to(m_device)).to(images.device(), images.scalar_type());
}

torch::Tensor conditioningTensor(const SafeTensorsFile& cond, const std::string& name) {
    if (!cond.contains(name)) {
        throw InvalidRequestError("the --cond file has no tensor '" + name + "'; write it with encode-prompt for this model");
    }
    return cond.tensor(name).to(torch::kFloat32);
}

std::unique_ptr<CheckpointModel> makeCheckpointModel(CheckpointLayout layout) {
    if (layout.isSd3()) return std::make_unique<sd3::Sd3Model>(std::move(layout));
    return std::make_unique<flux::FluxModel>(std::move(layout));
}

}  // namespace flowscope::core
