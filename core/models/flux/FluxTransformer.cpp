#include "core/models/flux/FluxTransformer.h"

#include <cmath>

#include <torch/torch.h>

namespace flowscope::core::flux {
namespace {

// The published split of a 128-wide head (16/56/56); other widths w: w/8, then the rest halved.
std::array<int64_t, 3> ropeAxes(int64_t headDim) {
    if (headDim == 128) return {16, 56, 56};
    const int64_t first = headDim / 8;
    const int64_t rest = (headDim - first) / 2;
    return {first, rest, headDim - first - rest};
}

using layers::modulate;
using layers::modulation;

}  // namespace

FluxConfig FluxConfig::infer(const Weights& w) {
    FluxConfig c;
    if (!w.has("double_blocks.0.img_attn.qkv.weight") && !w.has("single_blocks.0.linear1.weight")) {
        throw CheckpointError("the transformer under '" + w.prefix() + "' has neither double_blocks nor single_blocks");
    }
    c.hidden = w.size("img_in.weight", 0);
    c.inChannels = w.size("img_in.weight", 1);
    c.outChannels = w.size("final_layer.linear.weight", 0);
    c.contextIn = w.size("txt_in.weight", 1);
    c.vectorIn = w.size("vector_in.in_layer.weight", 1);
    c.doubleBlocks = w.count("double_blocks.");
    c.singleBlocks = w.count("single_blocks.");
    c.guidance = w.has("guidance_in.in_layer.weight");
    if (c.doubleBlocks > 0) {
        c.headDim = w.size("double_blocks.0.img_attn.norm.query_norm.scale", 0);
        c.mlpHidden = w.size("double_blocks.0.img_mlp.0.weight", 0);
    } else {
        c.headDim = w.size("single_blocks.0.norm.query_norm.scale", 0);
        c.mlpHidden = w.size("single_blocks.0.linear1.weight", 0) - 3 * c.hidden;
    }
    if (c.headDim <= 0 || c.headDim % 2 != 0 || c.hidden % c.headDim != 0) {
        throw CheckpointError("the transformer's QK norm is " + std::to_string(c.headDim) + " wide, which does not split its " +
                              std::to_string(c.hidden) + "-wide tokens into heads");
    }
    if (c.inChannels % 4 != 0 || c.outChannels != c.inChannels) {
        throw CheckpointError("the transformer takes " + std::to_string(c.inChannels) + " and gives " +
                              std::to_string(c.outChannels) + " channels per token; FLUX.1 packs 2x2 latent patches into both");
    }
    c.heads = c.hidden / c.headDim;
    c.axes = ropeAxes(c.headDim);
    if (c.axes[0] % 2 || c.axes[1] % 2 || c.axes[2] % 2) {
        throw CheckpointError("a " + std::to_string(c.headDim) + "-wide head cannot be split into the three even RoPE axes");
    }
    return c;
}

torch::Tensor FluxTransformer::Mlp::operator()(const torch::Tensor& x) const { return out(torch::silu(in(x))); }

FluxTransformer::Stream FluxTransformer::loadStream(const Weights& w, const std::string& stem) const {
    const FluxConfig& c = m_config;
    Stream s;
    s.mod = layers::Linear::load(w, stem + "_mod.lin", c.hidden, 6 * c.hidden);
    s.qkv = layers::Linear::load(w, stem + "_attn.qkv", c.hidden, 3 * c.hidden);
    s.queryNorm = w.get(stem + "_attn.norm.query_norm.scale", {c.headDim});
    s.keyNorm = w.get(stem + "_attn.norm.key_norm.scale", {c.headDim});
    s.proj = layers::Linear::load(w, stem + "_attn.proj", c.hidden, c.hidden);
    s.mlpIn = layers::Linear::load(w, stem + "_mlp.0", c.hidden, c.mlpHidden);
    s.mlpOut = layers::Linear::load(w, stem + "_mlp.2", c.mlpHidden, c.hidden);
    return s;
}

FluxTransformer::FluxTransformer(const Weights& w) : m_config(FluxConfig::infer(w)) {
    const FluxConfig& c = m_config;
    m_imgIn = layers::Linear::load(w, "img_in", c.inChannels, c.hidden);
    m_timeIn = {layers::Linear::load(w, "time_in.in_layer", 256, c.hidden),
                layers::Linear::load(w, "time_in.out_layer", c.hidden, c.hidden)};
    m_vectorIn = {layers::Linear::load(w, "vector_in.in_layer", c.vectorIn, c.hidden),
                  layers::Linear::load(w, "vector_in.out_layer", c.hidden, c.hidden)};
    if (c.guidance) {
        m_guidanceIn = {layers::Linear::load(w, "guidance_in.in_layer", 256, c.hidden),
                        layers::Linear::load(w, "guidance_in.out_layer", c.hidden, c.hidden)};
    }
    m_txtIn = layers::Linear::load(w, "txt_in", c.contextIn, c.hidden);
    for (int i = 0; i < c.doubleBlocks; ++i) {
        const Weights block = w.sub("double_blocks." + std::to_string(i) + ".");
        m_double.push_back({loadStream(block, "img"), loadStream(block, "txt")});
    }
    for (int i = 0; i < c.singleBlocks; ++i) {
        const Weights block = w.sub("single_blocks." + std::to_string(i) + ".");
        SingleBlock s;
        s.mod = layers::Linear::load(block, "modulation.lin", c.hidden, 3 * c.hidden);
        s.linear1 = layers::Linear::load(block, "linear1", c.hidden, 3 * c.hidden + c.mlpHidden);
        s.linear2 = layers::Linear::load(block, "linear2", c.hidden + c.mlpHidden, c.hidden);
        s.queryNorm = block.get("norm.query_norm.scale", {c.headDim});
        s.keyNorm = block.get("norm.key_norm.scale", {c.headDim});
        m_single.push_back(std::move(s));
    }
    m_finalModulation = layers::Linear::load(w, "final_layer.adaLN_modulation.1", c.hidden, 2 * c.hidden);
    m_finalLinear = layers::Linear::load(w, "final_layer.linear", c.hidden, c.outChannels);
}

std::pair<torch::Tensor, torch::Tensor> ropeTables(const torch::Tensor& ids, const std::array<int64_t, 3>& axes, double theta) {
    std::vector<torch::Tensor> angles;
    const torch::Tensor positions = ids.to(torch::kFloat64);
    for (size_t axis = 0; axis < 3; ++axis) {
        const int64_t dim = axes[axis];
        const torch::Tensor scale =
            torch::arange(0, dim, 2, torch::TensorOptions().dtype(torch::kFloat64).device(ids.device())) / double(dim);
        const torch::Tensor omega = 1.0 / torch::pow(theta, scale);
        angles.push_back(positions.select(-1, int64_t(axis)).unsqueeze(-1) * omega);
    }
    const torch::Tensor angle = torch::cat(angles, -1);
    return {torch::cos(angle).to(torch::kFloat32), torch::sin(angle).to(torch::kFloat32)};
}

torch::Tensor applyRope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
    const torch::Tensor pairs = x.to(torch::kFloat32).unflatten(-1, {-1, 2});
    const torch::Tensor a = pairs.select(-1, 0), b = pairs.select(-1, 1);
    return torch::stack({cos * a - sin * b, sin * a + cos * b}, -1).flatten(-2).to(x.scalar_type());
}

torch::Tensor FluxTransformer::pack(const torch::Tensor& x) {
    const int64_t b = x.size(0), c = x.size(1), h = x.size(2) / 2, w = x.size(3) / 2;
    return x.reshape({b, c, h, 2, w, 2}).permute({0, 2, 4, 1, 3, 5}).reshape({b, h * w, c * 4});
}

torch::Tensor FluxTransformer::unpack(const torch::Tensor& tokens, int64_t height, int64_t width) {
    const int64_t b = tokens.size(0), c = tokens.size(2) / 4, h = height / 2, w = width / 2;
    return tokens.reshape({b, h, w, c, 2, 2}).permute({0, 3, 1, 4, 2, 5}).reshape({b, c, height, width});
}

torch::Tensor FluxTransformer::imageIds(int64_t height, int64_t width, torch::Device device) {
    const auto options = torch::TensorOptions().dtype(torch::kFloat64).device(device);
    const int64_t h = height / 2, w = width / 2;
    const torch::Tensor rows = torch::arange(h, options).unsqueeze(1).expand({h, w});
    const torch::Tensor columns = torch::arange(w, options).unsqueeze(0).expand({h, w});
    return torch::stack({torch::zeros({h, w}, options), rows, columns}, -1).reshape({1, h * w, 3});
}

std::array<torch::Tensor, 3> FluxTransformer::queryKeyValue(const torch::Tensor& qkv, const torch::Tensor& queryNorm,
                                                            const torch::Tensor& keyNorm) const {
    const int64_t b = qkv.size(0), l = qkv.size(1);
    const torch::Tensor split = qkv.reshape({b, l, 3, m_config.heads, m_config.headDim}).permute({2, 0, 3, 1, 4});
    const torch::Tensor v = split[2];
    return {layers::rmsNorm(split[0], queryNorm, 1e-6).to(v.scalar_type()),
            layers::rmsNorm(split[1], keyNorm, 1e-6).to(v.scalar_type()), v};
}

torch::Tensor FluxTransformer::attend(const std::array<torch::Tensor, 3>& qkv, const torch::Tensor& cos,
                                      const torch::Tensor& sin) const {
    const torch::Tensor q = applyRope(qkv[0], cos, sin), k = applyRope(qkv[1], cos, sin);
    const torch::Tensor out = layers::attention(q, k, qkv[2], 1.0 / std::sqrt(double(m_config.headDim)));
    return out.permute({0, 2, 1, 3}).flatten(2);  // [B, L, H D]
}

void FluxTransformer::doubleBlock(const DoubleBlock& block, torch::Tensor& img, torch::Tensor& txt, const torch::Tensor& vec,
                                  const torch::Tensor& cos, const torch::Tensor& sin) const {
    const auto imgMod = modulation(block.img.mod, vec, 6);
    const auto txtMod = modulation(block.txt.mod, vec, 6);
    const auto imgQkv = queryKeyValue(block.img.qkv(modulate(img, imgMod[0], imgMod[1])), block.img.queryNorm, block.img.keyNorm);
    const auto txtQkv = queryKeyValue(block.txt.qkv(modulate(txt, txtMod[0], txtMod[1])), block.txt.queryNorm, block.txt.keyNorm);
    std::array<torch::Tensor, 3> joint;
    for (size_t i = 0; i < 3; ++i) joint[i] = torch::cat({txtQkv[i], imgQkv[i]}, 2);
    const torch::Tensor attn = attend(joint, cos, sin);
    const int64_t textTokens = txt.size(1);
    const torch::Tensor txtAttn = attn.narrow(1, 0, textTokens);
    const torch::Tensor imgAttn = attn.narrow(1, textTokens, attn.size(1) - textTokens);
    img = img + imgMod[2] * block.img.proj(imgAttn);
    img = img + imgMod[5] * block.img.mlpOut(layers::geluTanh(block.img.mlpIn(modulate(img, imgMod[3], imgMod[4]))));
    txt = txt + txtMod[2] * block.txt.proj(txtAttn);
    txt = txt + txtMod[5] * block.txt.mlpOut(layers::geluTanh(block.txt.mlpIn(modulate(txt, txtMod[3], txtMod[4]))));
}

void FluxTransformer::singleBlock(const SingleBlock& block, torch::Tensor& x, const torch::Tensor& vec,
                                  const torch::Tensor& cos, const torch::Tensor& sin) const {
    const auto mod = modulation(block.mod, vec, 3);
    const torch::Tensor fused = block.linear1(modulate(x, mod[0], mod[1]));
    const int64_t width = 3 * m_config.hidden;
    const auto qkv = queryKeyValue(fused.narrow(-1, 0, width), block.queryNorm, block.keyNorm);
    const torch::Tensor mlp = layers::geluTanh(fused.narrow(-1, width, m_config.mlpHidden));
    x = x + mod[2] * block.linear2(torch::cat({attend(qkv, cos, sin), mlp}, -1));
}

torch::Tensor FluxTransformer::forward(const torch::Tensor& imgTokens, const torch::Tensor& imgIds, const torch::Tensor& txtIn,
                                       const torch::Tensor& vectorIn, const torch::Tensor& timesteps,
                                       const torch::Tensor& guidance) const {
    const FluxConfig& c = m_config;
    const auto dtype = m_imgIn.dtype();
    torch::Tensor img = m_imgIn(imgTokens.to(dtype));
    const int64_t batch = img.size(0);
    // Conditioning with a batch of one applies to every sample.
    const torch::Tensor vector = vectorIn.size(0) == batch ? vectorIn : vectorIn.expand({batch, -1});
    const torch::Tensor txtTokens = txtIn.size(0) == batch ? txtIn : txtIn.expand({batch, -1, -1});
    torch::Tensor vec = m_timeIn(layers::timestepEmbedding(timesteps, 256, 1000.0).to(dtype));
    if (c.guidance) {
        if (!guidance.defined()) throw std::invalid_argument("FLUX.1 [dev] needs its guidance value");
        vec = vec + m_guidanceIn(layers::timestepEmbedding(guidance, 256, 1000.0).to(dtype));
    }
    vec = vec + m_vectorIn(vector.to(dtype));
    torch::Tensor txt = m_txtIn(txtTokens.to(dtype));
    const torch::Tensor ids = torch::cat({torch::zeros({txt.size(1), 3}, imgIds.options()), imgIds.reshape({-1, 3})}, 0);
    const auto [cos, sin] = ropeTables(ids, c.axes, c.theta);
    for (const DoubleBlock& block : m_double) doubleBlock(block, img, txt, vec, cos, sin);
    const int64_t textTokens = txt.size(1);
    torch::Tensor x = torch::cat({txt, img}, 1);
    for (const SingleBlock& block : m_single) singleBlock(block, x, vec, cos, sin);
    x = x.narrow(1, textTokens, x.size(1) - textTokens);
    const auto mod = m_finalModulation(torch::silu(vec)).unsqueeze(1).chunk(2, -1);
    return m_finalLinear(modulate(x, mod[0], mod[1]));
}

}  // namespace flowscope::core::flux
