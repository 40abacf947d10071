#include "core/models/autoencoder/AutoEncoder.h"

#include <cmath>

#include <torch/torch.h>

namespace flowscope::core {
namespace {

constexpr int64_t kGroups = 32;
constexpr double kEps = 1e-6;

}  // namespace

bool AutoEncoder::present(const Weights& weights) { return weights.has("decoder.conv_in.weight"); }

AutoEncoder::ResBlock AutoEncoder::loadBlock(const Weights& w, int64_t in, int64_t* out) {
    ResBlock block;
    *out = w.size("conv1.weight", 0);
    block.norm1 = layers::GroupNorm::load(w, "norm1", in, kGroups, kEps);
    block.conv1 = layers::Conv2d::load(w, "conv1", in, *out, 3);
    block.norm2 = layers::GroupNorm::load(w, "norm2", *out, kGroups, kEps);
    block.conv2 = layers::Conv2d::load(w, "conv2", *out, *out, 3);
    if (in != *out) block.shortcut = layers::Conv2d::load(w, "nin_shortcut", in, *out, 1);
    return block;
}

torch::Tensor AutoEncoder::ResBlock::operator()(const torch::Tensor& x) const {
    torch::Tensor h = conv1(torch::silu(norm1(x)));
    h = conv2(torch::silu(norm2(h)));
    return (shortcut ? (*shortcut)(x) : x) + h;
}

AutoEncoder::Attention AutoEncoder::loadAttention(const Weights& w, int64_t channels) {
    return {layers::GroupNorm::load(w, "norm", channels, kGroups, kEps), layers::Conv2d::load(w, "q", channels, channels, 1),
            layers::Conv2d::load(w, "k", channels, channels, 1), layers::Conv2d::load(w, "v", channels, channels, 1),
            layers::Conv2d::load(w, "proj_out", channels, channels, 1)};
}

torch::Tensor AutoEncoder::Attention::operator()(const torch::Tensor& x) const {
    const torch::Tensor h = norm(x);
    const int64_t b = x.size(0), c = x.size(1), height = x.size(2), width = x.size(3);
    // One head over the pixels: [B, 1, HW, C].
    auto tokens = [&](const torch::Tensor& t) { return t.reshape({b, 1, c, height * width}).transpose(-1, -2); };
    const torch::Tensor attended = layers::attention(tokens(q(h)), tokens(k(h)), tokens(v(h)), 1.0 / std::sqrt(double(c)));
    return x + out(attended.transpose(-1, -2).reshape({b, c, height, width}));
}

AutoEncoder::Half AutoEncoder::loadDecoder(const Weights& root, int64_t* latentChannels, int64_t* downscale) {
    const Weights w = root.sub("decoder.");
    Half half;
    *latentChannels = w.size("conv_in.weight", 1);
    int64_t channels = w.size("conv_in.weight", 0);
    half.convIn = layers::Conv2d::load(w, "conv_in", *latentChannels, channels, 3);
    int64_t out = 0;
    half.mid1 = loadBlock(w.sub("mid.block_1."), channels, &out);
    half.attention = loadAttention(w.sub("mid.attn_1."), out);
    half.mid2 = loadBlock(w.sub("mid.block_2."), out, &channels);
    const int levels = w.count("up.");
    if (levels == 0) throw CheckpointError("the autoencoder's decoder under '" + w.prefix() + "' has no up. levels");
    half.levels.resize(size_t(levels));
    *downscale = 1;
    // The decoder runs its levels from the last index down to 0.
    for (int level = levels - 1; level >= 0; --level) {
        const Weights lw = w.sub("up." + std::to_string(level) + ".");
        Level& stage = half.levels[size_t(level)];
        const int blocks = lw.count("block.");
        for (int i = 0; i < blocks; ++i) {
            stage.blocks.push_back(loadBlock(lw.sub("block." + std::to_string(i) + "."), channels, &out));
            channels = out;
        }
        if (lw.has("upsample.conv.weight")) {
            stage.resample = layers::Conv2d::load(lw, "upsample.conv", channels, channels, 3);
            *downscale *= 2;
        }
    }
    half.normOut = layers::GroupNorm::load(w, "norm_out", channels, kGroups, kEps);
    half.convOut = layers::Conv2d::load(w, "conv_out", channels, 3, 3);
    return half;
}

AutoEncoder::Half AutoEncoder::loadEncoder(const Weights& root, int64_t latentChannels) {
    const Weights w = root.sub("encoder.");
    Half half;
    int64_t channels = w.size("conv_in.weight", 0);
    half.convIn = layers::Conv2d::load(w, "conv_in", 3, channels, 3);
    const int levels = w.count("down.");
    int64_t out = 0;
    for (int level = 0; level < levels; ++level) {
        const Weights lw = w.sub("down." + std::to_string(level) + ".");
        Level stage;
        const int blocks = lw.count("block.");
        for (int i = 0; i < blocks; ++i) {
            stage.blocks.push_back(loadBlock(lw.sub("block." + std::to_string(i) + "."), channels, &out));
            channels = out;
        }
        if (lw.has("downsample.conv.weight")) stage.resample = layers::Conv2d::load(lw, "downsample.conv", channels, channels, 3, 2, 0);
        half.levels.push_back(std::move(stage));
    }
    half.mid1 = loadBlock(w.sub("mid.block_1."), channels, &out);
    half.attention = loadAttention(w.sub("mid.attn_1."), out);
    half.mid2 = loadBlock(w.sub("mid.block_2."), out, &channels);
    half.normOut = layers::GroupNorm::load(w, "norm_out", channels, kGroups, kEps);
    half.convOut = layers::Conv2d::load(w, "conv_out", channels, 2 * latentChannels, 3);
    return half;
}

AutoEncoder::AutoEncoder(const Weights& weights, double shift, double scale, bool withEncoder)
    : m_shift(shift), m_scale(scale), m_decoder(loadDecoder(weights, &m_latentChannels, &m_downscale)) {
    if (withEncoder) m_encoder = loadEncoder(weights, m_latentChannels);
}

torch::Tensor AutoEncoder::middle(const Half& half, const torch::Tensor& x) {
    return half.mid2(half.attention(half.mid1(x)));
}

torch::Tensor AutoEncoder::decode(const torch::Tensor& z) const {
    const auto dtype = m_decoder.convIn.weight.scalar_type();
    torch::Tensor h = middle(m_decoder, m_decoder.convIn((z / m_scale + m_shift).to(dtype)));
    for (size_t level = m_decoder.levels.size(); level-- > 0;) {
        const Level& stage = m_decoder.levels[level];
        for (const ResBlock& block : stage.blocks) h = block(h);
        if (stage.resample) {
            h = (*stage.resample)(torch::upsample_nearest2d(h, std::vector<int64_t>{h.size(2) * 2, h.size(3) * 2}));
        }
    }
    return m_decoder.convOut(torch::silu(m_decoder.normOut(h)));
}

torch::Tensor AutoEncoder::encode(const torch::Tensor& images) const {
    if (!m_encoder) throw std::logic_error("the autoencoder was loaded without its encoder");
    const Half& e = *m_encoder;
    torch::Tensor h = e.convIn(images.to(e.convIn.weight.scalar_type()));
    for (const Level& stage : e.levels) {
        for (const ResBlock& block : stage.blocks) h = block(h);
        if (stage.resample) h = (*stage.resample)(torch::constant_pad_nd(h, {0, 1, 0, 1}, 0.0));
    }
    h = e.convOut(torch::silu(e.normOut(middle(e, h))));
    const torch::Tensor mean = h.narrow(1, 0, m_latentChannels);
    return (mean - m_shift) * m_scale;
}

}  // namespace flowscope::core
