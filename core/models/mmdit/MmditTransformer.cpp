#include "core/models/mmdit/MmditTransformer.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

namespace flowscope::core::sd3 {
namespace {

using layers::modulate;
using layers::modulation;

std::string blockKey(int index, const char* stream) { return "joint_blocks." + std::to_string(index) + "." + stream + "."; }

}  // namespace

MmditConfig MmditConfig::infer(const Weights& w) {
    MmditConfig c;
    if (!w.has("joint_blocks.0.x_block.attn.qkv.weight")) {
        throw CheckpointError("the transformer under '" + w.prefix() + "' has no joint_blocks.0.x_block.attn.qkv.weight");
    }
    const std::vector<int64_t> patch = w.shape("x_embedder.proj.weight");
    if (patch.size() != 4 || patch[2] != patch[3]) {
        throw CheckpointError("'" + w.prefix() + "x_embedder.proj.weight' is " + describeShape(patch) +
                              "; the patch embedding is a square convolution [hidden, channels, p, p]");
    }
    c.hidden = patch[0];
    c.inChannels = patch[1];
    c.patch = patch[2];
    if (c.hidden % kHeadDim != 0) {
        throw CheckpointError("the transformer is " + std::to_string(c.hidden) + " wide, not a multiple of MMDiT's " +
                              std::to_string(kHeadDim) + "-wide heads");
    }
    c.heads = c.hidden / kHeadDim;
    const int64_t outputs = w.size("final_layer.linear.weight", 0);
    if (outputs % (c.patch * c.patch) != 0) {
        throw CheckpointError("'" + w.prefix() + "final_layer.linear.weight' gives " + std::to_string(outputs) +
                              " values per token, not a whole number of " + std::to_string(c.patch) + "x" +
                              std::to_string(c.patch) + " patches");
    }
    c.outChannels = outputs / (c.patch * c.patch);
    const std::vector<int64_t> positions = w.shape("pos_embed");
    const auto grid = positions.size() == 3 ? int64_t(std::llround(std::sqrt(double(positions[1])))) : 0;
    if (positions.size() != 3 || positions[0] != 1 || grid * grid != positions[1] || positions[2] != c.hidden) {
        throw CheckpointError("'" + w.prefix() + "pos_embed' is " + describeShape(positions) + "; expected [1, n*n, " +
                              std::to_string(c.hidden) + "] (a square grid of positions)");
    }
    c.positionGrid = grid;
    c.contextIn = w.size("context_embedder.weight", 1);
    c.pooledIn = w.size("y_embedder.mlp.0.weight", 1);
    c.mlpHidden = w.size("joint_blocks.0.x_block.mlp.fc1.weight", 0);
    c.depth = w.count("joint_blocks.");
    c.qkNorm = w.has("joint_blocks.0.x_block.attn.ln_q.weight");
    for (int i = 0; i < c.depth; ++i) {
        if (w.has(blockKey(i, "x_block") + "attn2.qkv.weight")) c.selfAttentionBlocks.push_back(i);
    }
    return c;
}

torch::Tensor MmditTransformer::Mlp::operator()(const torch::Tensor& x) const { return out(torch::silu(in(x))); }

MmditTransformer::Attention MmditTransformer::loadAttention(const Weights& w, bool withProjection) const {
    const MmditConfig& c = m_config;
    Attention a;
    a.qkv = layers::Linear::load(w, "qkv", c.hidden, 3 * c.hidden);
    if (withProjection) a.proj = layers::Linear::load(w, "proj", c.hidden, c.hidden);
    if (c.qkNorm) {
        a.queryNorm = w.get("ln_q.weight", {MmditConfig::kHeadDim});
        a.keyNorm = w.get("ln_k.weight", {MmditConfig::kHeadDim});
    }
    return a;
}

MmditTransformer::Stream MmditTransformer::loadStream(const Weights& w, bool preOnly, bool second) const {
    const MmditConfig& c = m_config;
    Stream s;
    s.preOnly = preOnly;
    const int64_t chunks = preOnly ? 2 : second ? 9 : 6;
    s.modulation = layers::Linear::load(w, "adaLN_modulation.1", c.hidden, chunks * c.hidden);
    s.attention = loadAttention(w.sub("attn."), !preOnly);
    if (second) s.second = loadAttention(w.sub("attn2."), true);
    if (!preOnly) {
        s.fc1 = layers::Linear::load(w, "mlp.fc1", c.hidden, c.mlpHidden);
        s.fc2 = layers::Linear::load(w, "mlp.fc2", c.mlpHidden, c.hidden);
    }
    return s;
}

MmditTransformer::MmditTransformer(const Weights& w) : m_config(MmditConfig::infer(w)) {
    const MmditConfig& c = m_config;
    m_patchEmbed = layers::Conv2d::load(w, "x_embedder.proj", c.inChannels, c.hidden, c.patch, c.patch, 0);
    m_positions = w.get("pos_embed").reshape({c.positionGrid, c.positionGrid, c.hidden});
    m_timeEmbed = {layers::Linear::load(w, "t_embedder.mlp.0", 256, c.hidden),
                   layers::Linear::load(w, "t_embedder.mlp.2", c.hidden, c.hidden)};
    m_pooledEmbed = {layers::Linear::load(w, "y_embedder.mlp.0", c.pooledIn, c.hidden),
                     layers::Linear::load(w, "y_embedder.mlp.2", c.hidden, c.hidden)};
    m_contextEmbed = layers::Linear::load(w, "context_embedder", c.contextIn, c.hidden);
    for (int i = 0; i < c.depth; ++i) {
        const bool last = i + 1 == c.depth;
        const bool second = std::find(c.selfAttentionBlocks.begin(), c.selfAttentionBlocks.end(), i) != c.selfAttentionBlocks.end();
        // The last context block only feeds the last attention: it has no output projection or MLP.
        m_blocks.push_back({loadStream(w.sub(blockKey(i, "context_block")), last, false),
                            loadStream(w.sub(blockKey(i, "x_block")), false, second)});
    }
    m_finalModulation = layers::Linear::load(w, "final_layer.adaLN_modulation.1", c.hidden, 2 * c.hidden);
    m_finalLinear = layers::Linear::load(w, "final_layer.linear", c.hidden, c.patch * c.patch * c.outChannels);
}

torch::Tensor MmditTransformer::croppedPositions(int64_t gh, int64_t gw) const {
    const int64_t grid = m_config.positionGrid;
    const int64_t top = (grid - gh) / 2, left = (grid - gw) / 2;
    return m_positions.narrow(0, top, gh).narrow(1, left, gw).reshape({1, gh * gw, m_config.hidden});
}

std::array<torch::Tensor, 3> MmditTransformer::queryKeyValue(const Attention& attention, const torch::Tensor& x) const {
    const int64_t b = x.size(0), l = x.size(1);
    const torch::Tensor split = attention.qkv(x).reshape({b, l, 3, m_config.heads, MmditConfig::kHeadDim}).permute({2, 0, 3, 1, 4});
    const torch::Tensor v = split[2];
    if (!attention.queryNorm.defined()) return {split[0], split[1], v};
    return {layers::rmsNorm(split[0], attention.queryNorm, 1e-6).to(v.scalar_type()),
            layers::rmsNorm(split[1], attention.keyNorm, 1e-6).to(v.scalar_type()), v};
}

namespace {

// softmax(q k^T / sqrt(64)) v over [B, H, L, 64], merged back to [B, L, H 64].
torch::Tensor attend(const std::array<torch::Tensor, 3>& qkv) {
    const torch::Tensor out = layers::attention(qkv[0], qkv[1], qkv[2], 1.0 / std::sqrt(double(MmditConfig::kHeadDim)));
    return out.permute({0, 2, 1, 3}).flatten(2);
}

}  // namespace

void MmditTransformer::block(const Block& block, torch::Tensor& context, torch::Tensor& x, const torch::Tensor& c) const {
    const Stream& cs = block.context;
    const Stream& xs = block.image;
    const auto cm = modulation(cs.modulation, c, cs.preOnly ? 2 : 6);
    const auto xm = modulation(xs.modulation, c, xs.second ? 9 : 6);
    const auto contextQkv = queryKeyValue(cs.attention, modulate(context, cm[0], cm[1]));
    const auto imageQkv = queryKeyValue(xs.attention, modulate(x, xm[0], xm[1]));
    std::array<torch::Tensor, 3> joint;
    for (size_t i = 0; i < 3; ++i) joint[i] = torch::cat({contextQkv[i], imageQkv[i]}, 2);
    const torch::Tensor attn = attend(joint);
    const int64_t textTokens = context.size(1);
    const torch::Tensor imageAttn = attn.narrow(1, textTokens, attn.size(1) - textTokens);
    if (!cs.preOnly) {
        context = context + cm[2] * cs.attention.proj(attn.narrow(1, 0, textTokens));
        context = context + cm[5] * cs.fc2(layers::geluTanh(cs.fc1(modulate(context, cm[3], cm[4]))));
    }
    // MMDiT-X: the image tokens also attend among themselves, from their own modulation.
    torch::Tensor second;
    if (xs.second) second = xs.second->proj(attend(queryKeyValue(*xs.second, modulate(x, xm[6], xm[7]))));
    x = x + xm[2] * xs.attention.proj(imageAttn);
    if (xs.second) x = x + xm[8] * second;
    x = x + xm[5] * xs.fc2(layers::geluTanh(xs.fc1(modulate(x, xm[3], xm[4]))));
}

torch::Tensor MmditTransformer::forward(const torch::Tensor& latents, const torch::Tensor& sigma, const torch::Tensor& contextIn,
                                        const torch::Tensor& pooledIn) const {
    const MmditConfig& c = m_config;
    const auto dtype = m_patchEmbed.weight.scalar_type();
    const int64_t batch = latents.size(0), h = latents.size(2), w = latents.size(3);
    const int64_t gh = h / c.patch, gw = w / c.patch;
    torch::Tensor x = m_patchEmbed(latents.to(dtype)).flatten(2).transpose(1, 2) + croppedPositions(gh, gw);
    // Conditioning with a batch of one applies to every sample.
    const torch::Tensor pooled = pooledIn.size(0) == batch ? pooledIn : pooledIn.expand({batch, -1});
    const torch::Tensor contextTokens = contextIn.size(0) == batch ? contextIn : contextIn.expand({batch, -1, -1});
    const torch::Tensor vec =
        m_timeEmbed(layers::timestepEmbedding(sigma, 256, 1000.0).to(dtype)) + m_pooledEmbed(pooled.to(dtype));
    torch::Tensor context = m_contextEmbed(contextTokens.to(dtype));
    for (const Block& b : m_blocks) block(b, context, x, vec);
    const auto mod = modulation(m_finalModulation, vec, 2);
    const torch::Tensor out = m_finalLinear(modulate(x, mod[0], mod[1]));
    // [B, gh gw, p p C] -> [B, C, h, w]
    return out.reshape({batch, gh, gw, c.patch, c.patch, c.outChannels})
        .permute({0, 5, 1, 3, 2, 4})
        .reshape({batch, c.outChannels, h, w});
}

}  // namespace flowscope::core::sd3
