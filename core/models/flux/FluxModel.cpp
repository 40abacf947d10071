#include "core/models/flux/FluxModel.h"

#include <cmath>

#include <torch/torch.h>

#include "core/io/RegularFile.h"
#include "core/sampling/Device.h"
#include "core/sampling/ProbabilityPath.h"

namespace flowscope::core::flux {
namespace {

// DESIGN.md section 7: rgb = F^T z + b per latent pixel, each row one latent channel's (r, g, b).
constexpr double kRgbFactors[16][3] = {
    {-0.0346, 0.0244, 0.0681}, {0.0034, 0.0210, 0.0687},   {0.0275, -0.0668, -0.0433}, {-0.0174, 0.0160, 0.0617},
    {0.0859, 0.0721, 0.0329},  {0.0004, 0.0383, 0.0115},   {0.0405, 0.0861, 0.0915},   {-0.0236, -0.0185, -0.0259},
    {-0.0245, 0.0250, 0.1180}, {0.1008, 0.0755, -0.0421},  {-0.0515, 0.0201, 0.0011},  {0.0428, -0.0012, -0.0036},
    {0.0817, 0.0765, 0.0749},  {-0.1264, -0.0522, -0.1103}, {-0.0280, -0.0881, -0.0499}, {-0.1262, -0.0982, -0.0778},
};
constexpr double kRgbBias[3] = {-0.0329, -0.0718, -0.0851};

// Bytes of `part`'s tensors once loaded as `dtype`.
double partBytes(const CheckpointPart& part, torch::ScalarType dtype) {
    return double(Weights(part.files, part.prefix, dtype, torch::kCPU).parameters()) * double(c10::elementSize(dtype));
}

// What the user can do when a part does not fit, in words.
const char* kMemoryRemedy =
    "use a GPU, a smaller --width/--height, or the fp8 file of the model (about a quarter of the float32 size)";

}  // namespace

FluxModel::FluxModel(CheckpointLayout layout) : m_layout(std::move(layout)) {
    FluxConfig::infer(Weights(m_layout.transformer.files, m_layout.transformer.prefix, torch::kFloat32, torch::kCPU));
    rebuildNetwork();
}

FluxModel::~FluxModel() = default;

int FluxModel::t5Length() const { return m_layout.family == CheckpointLayout::Family::Flux1Dev ? 512 : 256; }

std::vector<int64_t> FluxModel::sampleShape() const { return {16, m_height / 8, m_width / 8}; }

void FluxModel::rebuildNetwork() {
    m_network = std::make_unique<NetworkDenoiser>(
        name(), [this](const torch::Tensor& x, const torch::Tensor& time, const torch::Tensor&) { return velocity(x, time); },
        sampleShape(), makePath("linear"), Parameterization::Velocity, TimeInput::Sigma, /*forwardMayWriteInput=*/false);
}

torch::Tensor FluxModel::denoise(const torch::Tensor& x, double alpha, double sigma) { return m_network->denoise(x, alpha, sigma); }

Model::Prediction FluxModel::predict(const torch::Tensor& x, const PathPoint& p) { return m_network->predict(x, p); }

Model::Prediction FluxModel::predictRows(const torch::Tensor& x, const std::vector<PathPoint>& points) {
    return m_network->predictRows(x, points);
}

torch::Tensor FluxModel::denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha, const std::vector<double>& sigma) {
    return m_network->denoiseRows(x, alpha, sigma);
}

std::vector<std::string> FluxModel::takeNotes() {
    std::vector<std::string> notes = m_network->takeNotes();
    notes.insert(notes.end(), m_notes.begin(), m_notes.end());
    m_notes.clear();
    return notes;
}

void FluxModel::prepare(torch::Device device, torch::ScalarType) {
    if (device != m_device) {
        m_transformer.reset();
        m_autoencoder.reset();
    }
    m_device = device;
}

torch::ScalarType FluxModel::weightDtype(const CheckpointPart& part, const std::string& what, double activationBytes) {
    if (m_device.is_cuda()) return torch::kBFloat16;
    // The CPU computes in float32, in bfloat16 where float32 would not fit.
    const double memory = physicalMemoryBytes();
    const double wide = partBytes(part, torch::kFloat32) + activationBytes;
    if (memory <= 0.0 || wide <= 0.8 * memory) return torch::kFloat32;
    const double narrow = partBytes(part, torch::kBFloat16) + activationBytes;
    checkFitsInMemory(narrow, 0.8, what + " (in bfloat16, with its activations)", kMemoryRemedy);
    m_notes.push_back(what + " runs in bfloat16 on the CPU: in float32 it would need " + describeBytes(wide) +
                      " of this machine's " + describeBytes(memory));
    return torch::kBFloat16;
}

void FluxModel::ensureTransformer(const std::atomic<bool>* cancel) {
    if (m_transformer) return;
    const FluxConfig config =
        FluxConfig::infer(Weights(m_layout.transformer.files, m_layout.transformer.prefix, torch::kFloat32, torch::kCPU));
    // Activations: the attention scores of one sample (heads x tokens^2) and a few token copies.
    const double tokens = double(m_height / 16) * double(m_width / 16) + t5Length();
    const double activations = 4.0 * (double(config.heads) * tokens * tokens + 16.0 * tokens * double(config.hidden + config.mlpHidden));
    const torch::ScalarType dtype = weightDtype(m_layout.transformer, name() + "'s transformer", activations);
    const Weights weights(m_layout.transformer.files, m_layout.transformer.prefix, dtype, m_device, cancel);
    const ScopedLoad load("the transformer", weights.storedBytes());
    m_transformer = std::make_unique<FluxTransformer>(weights);
}

void FluxModel::ensureAutoEncoder(bool withEncoder, const std::atomic<bool>* cancel) {
    if (m_autoencoder && (!withEncoder || m_autoencoder->hasEncoder())) return;
    const CheckpointPart& part = m_layout.require(m_layout.autoencoder, "the autoencoder (ae.safetensors)");
    // The decoder's widest activations: 128 channels at full size, a few at once.
    const double activations = 4.0 * 128.0 * 6.0 * double(m_width) * double(m_height);
    const torch::ScalarType dtype = m_device.is_cuda() ? torch::kBFloat16 : weightDtype(part, "the autoencoder", activations);
    const Weights weights(part.files, part.prefix, dtype, m_device, cancel);
    const ScopedLoad load("the autoencoder", weights.storedBytes());
    m_autoencoder = std::make_unique<AutoEncoder>(weights, kLatentShift, kLatentScale, withEncoder);
}

torch::Tensor FluxModel::velocity(const torch::Tensor& x, const torch::Tensor& time) {
    ensureTransformer(m_cancel);
    if (!m_txt.defined()) setText(TextSettings{}, m_cancel);
    const torch::Tensor raw = forwardRaw(x, time, m_txt, m_vec, m_guidance, m_cancel);
    // The network predicts eps - x0 = dx/dsigma; the linear path's velocity is d/dt = -d/dsigma.
    return (-raw).to(x.scalar_type());
}

torch::Tensor FluxModel::forwardRaw(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& txt,
                                    const torch::Tensor& vec, double guidance, const std::atomic<bool>* cancel) {
    if (x.dim() != 4 || x.size(2) % 2 != 0 || x.size(3) % 2 != 0) {
        throw InvalidRequestError("FLUX.1 takes latents [B, C, h, w] with even h and w; got " + c10::str(x.sizes()));
    }
    ensureTransformer(cancel);
    const FluxConfig& config = m_transformer->config();
    if (x.size(1) != config.latentChannels()) {
        throw InvalidRequestError("the transformer takes latents of " + std::to_string(config.latentChannels()) +
                                  " channels; got " + c10::str(x.sizes()));
    }
    if (txt.dim() != 3 || txt.size(2) != config.contextIn || vec.dim() != 2 || vec.size(1) != config.vectorIn) {
        throw InvalidRequestError("the conditioning does not fit the transformer: txt must be [1 or B, L, " +
                                  std::to_string(config.contextIn) + "] and vec [1 or B, " + std::to_string(config.vectorIn) +
                                  "]; got " + c10::str(txt.sizes()) + " and " + c10::str(vec.sizes()));
    }
    const int64_t batch = x.size(0);
    for (const torch::Tensor* cond : {&txt, &vec}) {
        if (cond->size(0) != 1 && cond->size(0) != batch) {
            throw InvalidRequestError("conditioning with a batch of " + std::to_string(cond->size(0)) +
                                      " does not fit latents with a batch of " + std::to_string(batch) + " (give 1 or " +
                                      std::to_string(batch) + ")");
        }
    }
    const auto device = m_device;
    const torch::Tensor ids = FluxTransformer::imageIds(x.size(2), x.size(3), device);
    const torch::Tensor sigmas = sigma.to(device, torch::kFloat32).reshape({-1}).expand({batch});
    torch::Tensor guidanceTensor;
    if (config.guidance) guidanceTensor = torch::full({batch}, guidance, torch::TensorOptions().device(device));
    const torch::Tensor tokens = FluxTransformer::pack(x.to(device));
    const torch::Tensor out = m_transformer->forward(tokens, ids, txt.to(device), vec.to(device), sigmas, guidanceTensor);
    return FluxTransformer::unpack(out, x.size(2), x.size(3)).to(x.device(), x.scalar_type());
}

FluxModel::EncodedPrompt FluxModel::encodePrompt(const std::string& prompt, const std::atomic<bool>* cancel) {
    if (const auto it = m_prompts.find(prompt); it != m_prompts.end()) return it->second;
    const CheckpointPart& clipPart = m_layout.require(m_layout.clipL, "the CLIP-L text encoder");
    const CheckpointPart& t5Part = m_layout.require(m_layout.t5, "the T5 text encoder");
    m_layout.requireTokenizers();
    EncodedPrompt encoded;
    int64_t clipEnd = 0;
    try {
        const ClipTokenizer clipTokenizer = ClipTokenizer::load(m_layout.clipVocab, m_layout.clipMerges);
        const T5Tokenizer t5Tokenizer = T5Tokenizer::load(m_layout.t5Model);
        encoded.clip = clipTokenizer.encode(prompt, 77);
        encoded.t5 = t5Tokenizer.encode(prompt, t5Length());
        clipEnd = clipTokenizer.endId();
    } catch (const TokenizerError& error) {
        throw CheckpointError(error.what());  // a tokenizer file or prompt that cannot be used
    }
    encoded.clipIds = torch::tensor(encoded.clip.ids, torch::kInt64).reshape({1, -1});
    encoded.t5Ids = torch::tensor(encoded.t5.ids, torch::kInt64).reshape({1, -1});
    // The encoders run where the transformer runs and are released right after: the transformer
    // makes room first when both would not fit.
    const double activations = 64.0 * double(t5Length()) * 4096.0 * 4.0;
    if (m_transformer && !m_device.is_cuda()) {
        const double memory = physicalMemoryBytes();
        if (memory > 0.0 && partBytes(t5Part, torch::kFloat32) + partBytes(m_layout.transformer, torch::kFloat32) > 0.8 * memory) {
            m_transformer.reset();
        }
    }
    {
        const torch::ScalarType dtype = weightDtype(clipPart, "the CLIP-L text encoder", activations);
        const Weights weights(clipPart.files, clipPart.prefix, dtype, m_device, cancel);
        const ScopedLoad load("CLIP-L", weights.storedBytes());
        const ClipTextModel clip(weights);
        encoded.vec = clip.forward(encoded.clipIds.to(m_device), clipEnd).pooled.to(torch::kCPU, torch::kFloat32);
    }
    {
        const torch::ScalarType dtype = weightDtype(t5Part, "the T5 text encoder", activations);
        const Weights weights(t5Part.files, t5Part.prefix, dtype, m_device, cancel);
        const ScopedLoad load("T5", weights.storedBytes());
        const T5Encoder t5(weights);
        encoded.txt = t5.forward(encoded.t5Ids.to(m_device)).to(torch::kCPU, torch::kFloat32);
    }
    if (m_prompts.size() >= 16) m_prompts.erase(m_prompts.begin());
    m_prompts[prompt] = encoded;
    return encoded;
}

void FluxModel::setText(const TextSettings& text, const std::atomic<bool>* cancel) {
    const int width = text.width > 0 ? text.width : kDefaultSide;
    const int height = text.height > 0 ? text.height : kDefaultSide;
    if (width % 16 != 0 || height % 16 != 0 || width < 16 || height < 16 || width > 4096 || height > 4096) {
        throw InvalidRequestError("--width and --height must be multiples of 16 from 16 to 4096 (FLUX.1 packs 2x2 patches of "
                                  "its 1/8-size latents); got " + std::to_string(width) + "x" + std::to_string(height));
    }
    if (!std::isfinite(text.fluxGuidance) || text.fluxGuidance < 0.0) {
        throw InvalidRequestError("--flux-guidance must be a finite number of at least 0");
    }
    if (m_layout.family != CheckpointLayout::Family::Flux1Dev && text.fluxGuidance != TextSettings{}.fluxGuidance) {
        m_notes.push_back("--flux-guidance applies to FLUX.1 [dev]; " + name() + " has no guidance input");
    }
    if (width != m_width || height != m_height) {
        m_width = width;
        m_height = height;
        rebuildNetwork();
    }
    m_guidance = text.fluxGuidance;
    m_cancel = cancel;
    const EncodedPrompt encoded = encodePrompt(text.prompt, cancel);
    if (encoded.clip.cut || encoded.t5.cut) {
        m_notes.push_back(std::string("the prompt was cut to fit ") +
                          (encoded.clip.cut ? "CLIP's 77 tokens" + std::string(encoded.t5.cut ? " and " : "") : "") +
                          (encoded.t5.cut ? "T5's " + std::to_string(t5Length()) + " tokens" : ""));
    }
    m_prompt = text.prompt;
    m_txt = encoded.txt;
    m_vec = encoded.vec;
}

void FluxModel::setConditioning(const torch::Tensor& txt, const torch::Tensor& vec, int width, int height) {
    if (width != m_width || height != m_height) {
        m_width = width;
        m_height = height;
        rebuildNetwork();
    }
    m_txt = txt.to(torch::kCPU, torch::kFloat32);
    m_vec = vec.to(torch::kCPU, torch::kFloat32);
}

torch::Tensor FluxModel::latentToRgb(const torch::Tensor& z) {
    const torch::Tensor factors = torch::from_blob(const_cast<double*>(&kRgbFactors[0][0]), {16, 3}, torch::kFloat64)
                                      .to(z.device(), z.scalar_type());
    const torch::Tensor bias = torch::from_blob(const_cast<double*>(kRgbBias), {1, 3, 1, 1}, torch::kFloat64)
                                   .to(z.device(), z.scalar_type());
    return torch::einsum("bchw,cr->brhw", {z, factors}) + bias;
}

torch::Tensor FluxModel::preview(const torch::Tensor& x, bool decode) {
    if (decode && hasDecoder()) return decodeLatents(x, m_cancel).clamp(-1.0, 1.0);
    const torch::Tensor rgb = latentToRgb(x);
    return rgb.repeat_interleave(8, 2).repeat_interleave(8, 3);
}

torch::Tensor FluxModel::decodeLatents(const torch::Tensor& z, const std::atomic<bool>* cancel) {
    if (z.dim() != 4) throw InvalidRequestError("latents must be [B, C, h, w]; got " + c10::str(z.sizes()));
    ensureAutoEncoder(false, cancel);
    if (z.size(1) != m_autoencoder->latentChannels()) {
        throw InvalidRequestError("the autoencoder takes latents of " + std::to_string(m_autoencoder->latentChannels()) +
                                  " channels; got " + c10::str(z.sizes()));
    }
    return m_autoencoder->decode(z.to(m_device)).to(z.device(), z.scalar_type());
}

torch::Tensor FluxModel::encode(const torch::Tensor& images) {
    ensureAutoEncoder(true, m_cancel);
    if (images.dim() != 4 || images.size(1) != 3 || images.size(2) % 8 != 0 || images.size(3) % 8 != 0) {
        throw InvalidRequestError("FLUX.1's autoencoder takes RGB images whose sides are multiples of 8; got " +
                                  c10::str(images.sizes()));
    }
    return m_autoencoder->encode(images.to(m_device)).to(images.device(), images.scalar_type());
}

}  // namespace flowscope::core::flux
