#include "core/models/mmdit/Sd3Model.h"

#include <cmath>

#include <torch/torch.h>

#include "core/models/text/ClipTokenizer.h"
#include "core/models/text/T5Tokenizer.h"
#include "core/models/text/TextEncoders.h"

namespace flowscope::core::sd3 {
namespace {

// DESIGN.md section 7: rgb = F^T z + b per latent pixel, each row one latent channel's (r, g, b).
constexpr LatentFormat kLatentFormat{
    kLatentShift,
    kLatentScale,
    {{{-0.0922, -0.0175, 0.0749}, {0.0311, 0.0633, 0.0954},  {0.1994, 0.0927, 0.0458},   {0.0856, 0.0339, 0.0902},
      {0.0587, 0.0272, -0.0496},  {-0.0006, 0.1104, 0.0309}, {0.0978, 0.0306, 0.0427},   {-0.0042, 0.1038, 0.1358},
      {-0.0194, 0.0020, 0.0669},  {-0.0488, 0.0130, -0.0268}, {0.0922, 0.0988, 0.0951},  {-0.0278, 0.0524, -0.0542},
      {0.0332, 0.0456, 0.0895},   {-0.0069, -0.0030, -0.0810}, {-0.0596, -0.0465, -0.0293}, {-0.1448, -0.1463, -0.1189}}},
    {0.2394, 0.2135, 0.1925},
};

// The class of the prompt; the null class (Model::kNullClass) is the negative prompt.
const std::vector<std::string> kClasses{"prompt"};

}  // namespace

LatentFormat Sd3Model::latentFormat() { return kLatentFormat; }

Sd3Model::Sd3Model(CheckpointLayout layout)
    : CheckpointModel(std::move(layout), kLatentFormat),
      m_config(MmditConfig::infer(Weights(m_layout.transformer.files, m_layout.transformer.prefix, torch::kFloat32, torch::kCPU))) {
    setClassNames(kClasses);
}

Sd3Model::~Sd3Model() = default;

void Sd3Model::setRowClasses(std::vector<int64_t> classes) {
    // The flag follows the network's classes only once they are set (the check may throw).
    const bool set = !classes.empty();
    CheckpointModel::setRowClasses(std::move(classes));
    m_rowClassesSet = set;
}

void Sd3Model::ensureTransformer(const std::atomic<bool>* cancel) {
    if (m_transformer) return;
    // Activations: the attention scores of a batch of two (the guided halves) and a few token copies.
    const double tokens = double(m_height / 16) * double(m_width / 16) + kClipLength + kT5Length;
    const double activations =
        2.0 * 4.0 * (double(m_config.heads) * tokens * tokens + 16.0 * tokens * double(m_config.hidden + m_config.mlpHidden));
    const Weights weights = placeWeights(m_layout.transformer, name() + "'s MMDiT", activations, cancel);
    const ScopedLoad load("the MMDiT", weights.storedBytes());
    m_transformer = std::make_unique<MmditTransformer>(weights);
}

torch::Tensor Sd3Model::forwardRaw(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& context,
                                   const torch::Tensor& pooled, const std::atomic<bool>* cancel) {
    const MmditConfig& c = m_config;
    if (x.dim() != 4 || x.size(1) != c.inChannels || x.size(2) % c.patch != 0 || x.size(3) % c.patch != 0) {
        throw InvalidRequestError("the MMDiT takes latents [B, " + std::to_string(c.inChannels) + ", h, w] with h and w multiples of " +
                                  std::to_string(c.patch) + "; got " + c10::str(x.sizes()));
    }
    if (x.size(2) / c.patch > c.positionGrid || x.size(3) / c.patch > c.positionGrid) {
        throw InvalidRequestError("latents of " + c10::str(x.sizes()) + " exceed the MMDiT's position table (" +
                                  std::to_string(c.positionGrid) + "x" + std::to_string(c.positionGrid) + " patches, " +
                                  std::to_string(c.maxSide()) + " pixels a side)");
    }
    if (context.dim() != 3 || context.size(2) != c.contextIn || pooled.dim() != 2 || pooled.size(1) != c.pooledIn) {
        throw InvalidRequestError("the conditioning does not fit the MMDiT: context must be [1 or B, L, " +
                                  std::to_string(c.contextIn) + "] and pooled [1 or B, " + std::to_string(c.pooledIn) +
                                  "]; got " + c10::str(context.sizes()) + " and " + c10::str(pooled.sizes()));
    }
    checkConditioningBatch({&context, &pooled}, x.size(0));
    ensureTransformer(cancel);
    const torch::Tensor sigmas = sigma.to(m_device, torch::kFloat32).reshape({-1}).expand({x.size(0)});
    const torch::Tensor out = m_transformer->forward(x.to(m_device), sigmas, context.to(m_device), pooled.to(m_device));
    return out.to(x.device(), x.scalar_type());
}

torch::Tensor Sd3Model::rawOutput(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& labels) {
    // Not setText: it may resize, which rebuilds the network this call runs inside.
    if (!m_context.defined()) condition(TextSettings{}, m_cancel);
    // Rows of the null class take the negative prompt (the unconditional half of guidance); rows
    // of an unguided run, where no classes were set, the prompt.
    if (!m_rowClassesSet || !labels.defined()) return forwardRaw(x, sigma, m_context, m_pooled, m_cancel);
    const torch::Tensor negative = labels.to(torch::kCPU).lt(0);
    const int64_t count = negative.sum().item<int64_t>();
    if (count == 0) return forwardRaw(x, sigma, m_context, m_pooled, m_cancel);
    if (count == x.size(0)) return forwardRaw(x, sigma, m_negativeContext, m_negativePooled, m_cancel);
    const torch::Tensor context = torch::where(negative.reshape({-1, 1, 1}), m_negativeContext, m_context);
    const torch::Tensor pooled = torch::where(negative.reshape({-1, 1}), m_negativePooled, m_pooled);
    return forwardRaw(x, sigma, context, pooled, m_cancel);
}

std::pair<torch::Tensor, torch::Tensor> Sd3Model::runClip(const CheckpointPart& part, const std::string& label,
                                                          const torch::Tensor& ids, int64_t endId,
                                                          const std::atomic<bool>* cancel) {
    std::pair<torch::Tensor, torch::Tensor> out;
    const double activations = 64.0 * double(kClipLength) * 1280.0 * 4.0;
    const auto activation = &part == &m_layout.clipG ? ClipTextModel::Activation::Gelu : ClipTextModel::Activation::QuickGelu;
    // Both pooled outputs projected, as the diffusers pipeline takes them (Stability's own script
    // leaves CLIP-L's unprojected; the two agree where CLIP-L's projection is the identity).
    runPart(part, "the " + label + " text encoder", label, activations, cancel, [&](const Weights& weights) {
        const ClipTextModel clip(weights, activation);
        if (!clip.hasProjection()) {
            m_notes.push_back(label + " has no text_projection: its pooled output is used as it is");
        }
        const auto result = clip.forward(ids.to(weights.device()), endId, true);
        out = {result.penultimate.to(torch::kCPU, torch::kFloat32), result.pooled.to(torch::kCPU, torch::kFloat32)};
    });
    return out;
}

Sd3Model::EncodedPrompt Sd3Model::encodePrompt(const std::string& prompt, const std::atomic<bool>* cancel) {
    if (const auto it = m_prompts.find(prompt); it != m_prompts.end()) return it->second;
    const CheckpointPart& clipL = m_layout.require(m_layout.clipL, "the CLIP-L text encoder");
    const CheckpointPart& clipG = m_layout.require(m_layout.clipG, "the CLIP-G text encoder");
    m_layout.requireTokenizers();
    EncodedPrompt encoded;
    encoded.withT5 = m_layout.t5.found();
    int64_t clipEnd = 0;
    try {
        const ClipTokenizer clipTokenizer = ClipTokenizer::load(m_layout.clipVocab, m_layout.clipMerges);
        encoded.clipL = clipTokenizer.encode(prompt, kClipLength);
        clipEnd = clipTokenizer.endId();
        // CLIP-G shares CLIP-L's vocabulary (tokenizer_2/ holds the same files) and pads with "!".
        const ClipTokenizer clipGTokenizer =
            m_layout.clipGVocab.empty() ? ClipTokenizer::load(m_layout.clipVocab, m_layout.clipMerges)
                                        : ClipTokenizer::load(m_layout.clipGVocab, m_layout.clipGMerges);
        encoded.clipG = clipGTokenizer.encode(prompt, kClipLength, clipGTokenizer.exclamationId());
        if (encoded.withT5) encoded.t5 = T5Tokenizer::load(m_layout.t5Model).encode(prompt, kT5Length);
    } catch (const TokenizerError& error) {
        throw CheckpointError(error.what());  // a tokenizer file or prompt that cannot be used
    }
    encoded.clipLIds = torch::tensor(encoded.clipL.ids, torch::kInt64).reshape({1, -1});
    encoded.clipGIds = torch::tensor(encoded.clipG.ids, torch::kInt64).reshape({1, -1});
    encoded.t5Ids = encoded.withT5 ? torch::tensor(encoded.t5.ids, torch::kInt64).reshape({1, -1})
                                   : torch::zeros({1, kT5Length}, torch::kInt64);
    if (encoded.withT5) makeRoomFor(m_layout.t5);
    const auto [hiddenL, pooledL] = runClip(clipL, "CLIP-L", encoded.clipLIds, clipEnd, cancel);
    const auto [hiddenG, pooledG] = runClip(clipG, "CLIP-G", encoded.clipGIds, clipEnd, cancel);
    const int64_t width = m_config.contextIn;
    torch::Tensor clip = torch::cat({hiddenL, hiddenG}, -1);
    if (clip.size(-1) > width) {
        throw CheckpointError("CLIP-L and CLIP-G give " + std::to_string(clip.size(-1)) + " channels together, more than the " +
                              "MMDiT's " + std::to_string(width) + "-wide context; the text encoders do not belong to this model");
    }
    clip = torch::constant_pad_nd(clip, {0, width - clip.size(-1)});
    torch::Tensor t5 = torch::zeros({1, kT5Length, width}, torch::kFloat32);
    if (encoded.withT5) {
        const double activations = 64.0 * double(kT5Length) * 4096.0 * 4.0;
        runPart(m_layout.t5, "the T5 text encoder", "T5", activations, cancel, [&](const Weights& weights) {
            t5 = T5Encoder(weights).forward(encoded.t5Ids.to(weights.device())).to(torch::kCPU, torch::kFloat32);
        });
        if (t5.size(-1) != width) {
            throw CheckpointError("T5 is " + std::to_string(t5.size(-1)) + " wide and the MMDiT's context " + std::to_string(width) +
                                  "; the text encoder does not belong to this model");
        }
    }
    encoded.context = torch::cat({clip, t5}, 1);
    encoded.pooled = torch::cat({pooledL, pooledG}, -1);
    if (encoded.pooled.size(-1) != m_config.pooledIn) {
        throw CheckpointError("CLIP-L's and CLIP-G's pooled outputs are " + std::to_string(encoded.pooled.size(-1)) +
                              " wide together and the MMDiT takes " + std::to_string(m_config.pooledIn) +
                              "; the text encoders do not belong to this model");
    }
    if (m_prompts.size() >= 16) m_prompts.erase(m_prompts.begin());
    m_prompts[prompt] = encoded;
    return encoded;
}

void Sd3Model::setText(const TextSettings& text, const std::atomic<bool>* cancel) {
    const int width = text.width > 0 ? text.width : kDefaultSide;
    const int height = text.height > 0 ? text.height : kDefaultSide;
    const int64_t side = 8 * m_config.patch;
    if (width % side != 0 || height % side != 0 || width > m_config.maxSide() || height > m_config.maxSide()) {
        throw InvalidRequestError("--width and --height must be multiples of " + std::to_string(side) + " up to " +
                                  std::to_string(m_config.maxSide()) + " for " + name() + " (its position table covers " +
                                  std::to_string(m_config.positionGrid) + " patches of " + std::to_string(side) +
                                  " pixels a side); got " + std::to_string(width) + "x" + std::to_string(height));
    }
    if (text.fluxGuidance != TextSettings{}.fluxGuidance) {
        m_notes.push_back("--flux-guidance applies to FLUX.1 [dev]; " + name() + " is guided with --cfg");
    }
    setSize(width, height);
    m_cancel = cancel;
    condition(text, cancel);
}

void Sd3Model::condition(const TextSettings& text, const std::atomic<bool>* cancel) {
    const EncodedPrompt positive = encodePrompt(text.prompt, cancel);
    const EncodedPrompt negative = encodePrompt(text.negativePrompt, cancel);
    if (!positive.withT5) {
        m_notes.push_back("the checkpoint has no T5 text encoder: its part of the context is zeros (give --t5 FILE to add it)");
    }
    for (const auto& [what, encoded] : {std::pair{"prompt", &positive}, std::pair{"negative prompt", &negative}}) {
        if (encoded->clipL.cut || encoded->clipG.cut || encoded->t5.cut) {
            m_notes.push_back(std::string("the ") + what + " was cut to fit " +
                              (encoded->t5.cut ? "CLIP's 77 and T5's 256 tokens" : "CLIP's 77 tokens"));
        }
    }
    m_context = positive.context;
    m_pooled = positive.pooled;
    m_negativeContext = negative.context;
    m_negativePooled = negative.pooled;
}

CheckpointModel::PromptFile Sd3Model::encodePromptFile(const std::string& prompt, const std::atomic<bool>* cancel) {
    const EncodedPrompt encoded = encodePrompt(prompt, cancel);
    PromptFile file;
    file.tensors = {{"context", encoded.context.contiguous()}, {"pooled", encoded.pooled.contiguous()},
                    {"clip_l_ids", encoded.clipLIds},          {"clip_g_ids", encoded.clipGIds}};
    if (encoded.withT5) file.tensors.emplace_back("t5_ids", encoded.t5Ids);
    file.tokens = {{"clip_l", encoded.clipL, kClipLength - 2}, {"clip_g", encoded.clipG, kClipLength - 2}};
    if (encoded.withT5) file.tokens.push_back({"t5", encoded.t5, kT5Length - 1});
    return file;
}

torch::Tensor Sd3Model::forwardFromFile(const torch::Tensor& x, const torch::Tensor& sigma, const SafeTensorsFile& cond, double,
                                        const std::atomic<bool>* cancel) {
    return forwardRaw(x, sigma, conditioningTensor(cond, "context"), conditioningTensor(cond, "pooled"), cancel);
}

}  // namespace flowscope::core::sd3
