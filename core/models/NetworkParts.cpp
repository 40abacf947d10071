#include "core/models/NetworkParts.h"

#include <cmath>
#include <limits>

#include <torch/torch.h>
#include <torch/version.h>

namespace flowscope::core::layers {

namespace {

// Float8 bytes as the table's values (the compute dtype), in their shape.
torch::Tensor widenFloat8(const torch::Tensor& table, const torch::Tensor& bytes) {
    return table.index_select(0, bytes.reshape({-1}).to(torch::kInt)).view(bytes.sizes());
}

}  // namespace

Linear Linear::load(const Weights& weights, const std::string& key, int64_t in, int64_t out, bool withBias) {
    Linear layer;
    layer.weight = weights.getMatrix(key + ".weight", {out, in});
    if (layer.weight.scalar_type() == torch::kByte) layer.table = weights.float8Table();
    if (withBias) layer.bias = weights.get(key + ".bias", {layer.weight.size(0)});
    return layer;
}

torch::Tensor Linear::widened() const {
    return table.defined() ? widenFloat8(table, weight) : weight;
}

torch::Tensor Linear::operator()(const torch::Tensor& x) const { return torch::linear(x, widened(), bias); }

Embedding Embedding::load(const Weights& weights, const std::string& key, const std::vector<int64_t>& expected) {
    Embedding embedding;
    embedding.weight = weights.getMatrix(key, expected);
    if (embedding.weight.dim() != 2) {
        throw CheckpointError("the tensor '" + weights.prefix() + key + "' is not a matrix");
    }
    if (embedding.weight.scalar_type() == torch::kByte) embedding.table = weights.float8Table();
    return embedding;
}

torch::Tensor Embedding::rows(const torch::Tensor& ids) const {
    std::vector<int64_t> shape = ids.sizes().vec();
    shape.push_back(width());
    const torch::Tensor picked = weight.index_select(0, ids.reshape({-1})).view(shape);
    return table.defined() ? widenFloat8(table, picked) : picked;
}

LayerNorm LayerNorm::load(const Weights& weights, const std::string& key, int64_t width, double eps) {
    LayerNorm norm = plain(width, eps);
    norm.weight = weights.get(key + ".weight", {width});
    norm.bias = weights.optional(key + ".bias", {width});
    return norm;
}

LayerNorm LayerNorm::plain(int64_t width, double eps) {
    LayerNorm norm;
    norm.width = width;
    norm.eps = eps;
    return norm;
}

torch::Tensor LayerNorm::operator()(const torch::Tensor& x) const {
    return torch::layer_norm(x, {width}, weight, bias, eps);
}

torch::Tensor rmsNorm(const torch::Tensor& x, const torch::Tensor& scale, double eps) {
    const torch::Tensor wide = x.to(torch::kFloat32);
    const torch::Tensor normed = (wide * torch::rsqrt(wide.square().mean(-1, true) + eps)).to(x.scalar_type());
    return normed * scale;
}

Conv2d Conv2d::load(const Weights& weights, const std::string& key, int64_t in, int64_t out, int64_t kernel,
                    int64_t stride, int64_t padding) {
    Conv2d conv;
    conv.weight = weights.get(key + ".weight", {out, in, kernel, kernel});
    conv.bias = weights.optional(key + ".bias", {out});
    conv.stride = stride;
    conv.padding = padding < 0 ? kernel / 2 : padding;
    return conv;
}

torch::Tensor Conv2d::operator()(const torch::Tensor& x) const {
    return torch::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
}

GroupNorm GroupNorm::load(const Weights& weights, const std::string& key, int64_t channels, int64_t groups, double eps) {
    if (channels % groups != 0) {
        throw CheckpointError("'" + weights.prefix() + key + "' normalizes " + std::to_string(channels) +
                              " channels, which " + std::to_string(groups) + " groups do not divide");
    }
    GroupNorm norm;
    norm.weight = weights.get(key + ".weight", {channels});
    norm.bias = weights.get(key + ".bias", {channels});
    norm.groups = groups;
    norm.eps = eps;
    return norm;
}

torch::Tensor GroupNorm::operator()(const torch::Tensor& x) const {
    return torch::group_norm(x, groups, weight, bias, eps);
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                        const torch::Tensor& bias, bool causal) {
#if TORCH_VERSION_MAJOR >= 2
    // The fused kernels (flash, memory-efficient) where LibTorch has them; they scale by
    // 1/sqrt(D), so q carries the rest of `scale`.
    const double adjust = scale * std::sqrt(double(q.size(-1)));
    const torch::Tensor query = adjust == 1.0 ? q : q * adjust;
    if (!bias.defined()) return at::scaled_dot_product_attention(query, k, v, {}, 0.0, causal);
    torch::Tensor mask = bias.to(q.scalar_type());
    if (causal) {
        const int64_t lq = q.size(-2), lk = k.size(-2);
        mask = mask + torch::full({lq, lk}, -std::numeric_limits<float>::infinity(), q.options()).triu(1);
    }
    return at::scaled_dot_product_attention(query, k, v, mask, 0.0, false);
#else
    torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1)) * scale;
    if (bias.defined()) scores = scores + bias.to(scores.scalar_type());
    if (causal) {
        const int64_t lq = q.size(-2), lk = k.size(-2);
        const torch::Tensor mask = torch::ones({lq, lk}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).triu(1);
        scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
    }
    return torch::matmul(torch::softmax(scores, -1, torch::kFloat32).to(v.scalar_type()), v);
#endif
}

torch::Tensor geluTanh(const torch::Tensor& x) { return torch::gelu(x, "tanh"); }

std::vector<torch::Tensor> modulation(const Linear& layer, const torch::Tensor& c, int64_t chunks) {
    return layer(torch::silu(c)).unsqueeze(1).chunk(chunks, -1);
}

torch::Tensor modulate(const torch::Tensor& x, const torch::Tensor& shift, const torch::Tensor& scale) {
    return (1 + scale) * torch::layer_norm(x, {x.size(-1)}, {}, {}, 1e-6) + shift;
}

torch::Tensor timestepEmbedding(const torch::Tensor& t, int64_t dim, double factor) {
    const int64_t half = dim / 2;
    const torch::Tensor freqs =
        torch::exp(-std::log(10000.0) * torch::arange(half, torch::TensorOptions().dtype(torch::kFloat32).device(t.device())) /
                   double(half));
    const torch::Tensor args = (t.to(torch::kFloat32) * factor).unsqueeze(1) * freqs.unsqueeze(0);
    return torch::cat({torch::cos(args), torch::sin(args)}, -1);
}

}  // namespace flowscope::core::layers
