#include "core/models/flux/FluxModel.h"

#include <cmath>

#include <torch/torch.h>

#include "core/models/text/ClipTokenizer.h"
#include "core/models/text/T5Tokenizer.h"
#include "core/models/text/TextEncoders.h"

namespace flowscope::core::flux {
namespace {

// DESIGN.md section 7: rgb = F^T z + b per latent pixel, each row one latent channel's (r, g, b).
constexpr LatentFormat kLatentFormat{
    kLatentShift,
    kLatentScale,
    {{{-0.0346, 0.0244, 0.0681}, {0.0034, 0.0210, 0.0687},   {0.0275, -0.0668, -0.0433}, {-0.0174, 0.0160, 0.0617},
      {0.0859, 0.0721, 0.0329},  {0.0004, 0.0383, 0.0115},   {0.0405, 0.0861, 0.0915},   {-0.0236, -0.0185, -0.0259},
      {-0.0245, 0.0250, 0.1180}, {0.1008, 0.0755, -0.0421},  {-0.0515, 0.0201, 0.0011},  {0.0428, -0.0012, -0.0036},
      {0.0817, 0.0765, 0.0749},  {-0.1264, -0.0522, -0.1103}, {-0.0280, -0.0881, -0.0499}, {-0.1262, -0.0982, -0.0778}}},
    {-0.0329, -0.0718, -0.0851},
};

}  // namespace

LatentFormat FluxModel::latentFormat() { return kLatentFormat; }

FluxModel::FluxModel(CheckpointLayout layout) : CheckpointModel(std::move(layout), kLatentFormat) {
    FluxConfig::infer(Weights(m_layout.transformer.files, m_layout.transformer.prefix, torch::kFloat32, torch::kCPU));
}

FluxModel::~FluxModel() = default;

int FluxModel::t5Length() const { return m_layout.defaults().t5Tokens; }

double FluxModel::transformerActivationBytes() const {
    const FluxConfig config =
        FluxConfig::infer(Weights(m_layout.transformer.files, m_layout.transformer.prefix, torch::kFloat32, torch::kCPU));
    // The attention scores of one sample (heads x tokens^2) and a few token copies.
    const double tokens = double(m_height / 16) * double(m_width / 16) + t5Length();
    return 4.0 * (double(config.heads) * tokens * tokens + 16.0 * tokens * double(config.hidden + config.mlpHidden));
}

void FluxModel::ensureTransformer(const std::atomic<bool>* cancel) {
    if (m_transformer) return;
    const double activations = transformerActivationBytes();
    const Weights weights = placeWeights(m_layout.transformer, name() + "'s transformer", activations, cancel);
    const ScopedLoad load("the transformer", weights.storedBytes());
    m_transformer = std::make_unique<FluxTransformer>(weights);
}

torch::Tensor FluxModel::rawOutput(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor&) {
    ensureTransformer(m_cancel);
    if (!m_txt.defined()) {
        // Not setText: it may resize, which rebuilds the network this call runs inside.
        const EncodedPrompt empty = encodePrompt("", m_cancel);
        m_txt = empty.txt;
        m_vec = empty.vec;
    }
    return forwardRaw(x, sigma, m_txt, m_vec, m_guidance, m_cancel);
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
    checkConditioningBatch({&txt, &vec}, batch);
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
    // The encoders run where the transformer runs (on the CPU where they do not fit the GPU) and
    // are released right after: on the CPU the transformer makes room first when both would not fit.
    const double activations = 64.0 * double(t5Length()) * 4096.0 * 4.0;
    makeRoomFor(t5Part);
    runPart(clipPart, "the CLIP-L text encoder", "CLIP-L", activations, cancel, [&](const Weights& weights) {
        const ClipTextModel clip(weights, ClipTextModel::Activation::QuickGelu);
        encoded.vec = clip.forward(encoded.clipIds.to(weights.device()), clipEnd).pooled.to(torch::kCPU, torch::kFloat32);
    });
    runPart(t5Part, "the T5 text encoder", "T5", activations, cancel, [&](const Weights& weights) {
        encoded.txt = T5Encoder(weights).forward(encoded.t5Ids.to(weights.device())).to(torch::kCPU, torch::kFloat32);
    });
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
    if (!text.negativePrompt.empty()) {
        m_notes.push_back(name() + " has no negative prompt (it is guidance-distilled): --negative-prompt is not used");
    }
    setSize(width, height);
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
    setSize(width, height);
    m_txt = txt.to(torch::kCPU, torch::kFloat32);
    m_vec = vec.to(torch::kCPU, torch::kFloat32);
}

CheckpointModel::PromptFile FluxModel::encodePromptFile(const std::string& prompt, const std::atomic<bool>* cancel) {
    const EncodedPrompt encoded = encodePrompt(prompt, cancel);
    PromptFile file;
    file.tensors = {{"txt", encoded.txt.contiguous()},
                    {"vec", encoded.vec.contiguous()},
                    {"clip_l_ids", encoded.clipIds},
                    {"t5_ids", encoded.t5Ids}};
    file.tokens = {{"clip_l", encoded.clip, 75}, {"t5", encoded.t5, t5Length() - 1}};
    return file;
}

torch::Tensor FluxModel::forwardFromFile(const torch::Tensor& x, const torch::Tensor& sigma, const SafeTensorsFile& cond,
                                         double guidance, const std::atomic<bool>* cancel) {
    return forwardRaw(x, sigma, conditioningTensor(cond, "txt"), conditioningTensor(cond, "vec"), guidance, cancel);
}

}  // namespace flowscope::core::flux
