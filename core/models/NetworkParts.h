#pragma once

// The layers the real networks share (FLUX.1, SD3's MMDiT, CLIP, T5, the autoencoder), as plain
// tensors loaded from a checkpoint's weights and applied with LibTorch's functional operations.

#include <string>
#include <vector>

#include <torch/types.h>

#include "core/models/Weights.h"

namespace flowscope::core::layers {

// y = x W^T + b; `key` names the layer (key.weight, key.bias). in/out -1: as stored. Where the
// weights keep float8 packed (Weights' packFloat8), W stays one byte per value and is widened
// through `table` for each product: a quarter of float32's memory, the same values.
struct Linear {
    torch::Tensor weight, bias;
    torch::Tensor table;  // defined when `weight` holds E4M3 bytes: their values in the compute dtype
    static Linear load(const Weights& weights, const std::string& key, int64_t in = -1, int64_t out = -1,
                       bool withBias = true);
    torch::Tensor operator()(const torch::Tensor& x) const;
    int64_t in() const { return weight.size(1); }
    int64_t out() const { return weight.size(0); }
    // The dtype the layer computes in.
    torch::ScalarType dtype() const { return table.defined() ? table.scalar_type() : weight.scalar_type(); }
    // W in the compute dtype.
    torch::Tensor widened() const;
};

// A table of rows looked up by id (token and position embeddings, T5's position-bias buckets);
// like Linear, kept as float8 bytes where the weights pack them, and only the rows looked up are
// widened.
struct Embedding {
    torch::Tensor weight;
    torch::Tensor table;  // defined when `weight` holds E4M3 bytes
    // `expected` as for Weights::get (empty: any matrix).
    static Embedding load(const Weights& weights, const std::string& key, const std::vector<int64_t>& expected = {});
    // The rows of `ids` (int64, any shape) -> [ids..., width], in the compute dtype.
    torch::Tensor rows(const torch::Tensor& ids) const;
    int64_t count() const { return weight.size(0); }
    int64_t width() const { return weight.size(1); }
    torch::Device device() const { return weight.device(); }
};

// LayerNorm with an optional affine (key.weight, key.bias).
struct LayerNorm {
    torch::Tensor weight, bias;
    int64_t width = 0;
    double eps = 1e-5;
    static LayerNorm load(const Weights& weights, const std::string& key, int64_t width, double eps);
    static LayerNorm plain(int64_t width, double eps);  // no affine
    torch::Tensor operator()(const torch::Tensor& x) const;
};

// x / rms(x) * scale, the mean of squares taken in float32 (FLUX.1's QK norm, T5's layer norm).
torch::Tensor rmsNorm(const torch::Tensor& x, const torch::Tensor& scale, double eps);

struct Conv2d {
    torch::Tensor weight, bias;
    int64_t stride = 1, padding = 0;
    static Conv2d load(const Weights& weights, const std::string& key, int64_t in, int64_t out, int64_t kernel,
                       int64_t stride = 1, int64_t padding = -1);
    torch::Tensor operator()(const torch::Tensor& x) const;
};

struct GroupNorm {
    torch::Tensor weight, bias;
    int64_t groups = 32;
    double eps = 1e-6;
    static GroupNorm load(const Weights& weights, const std::string& key, int64_t channels, int64_t groups, double eps);
    torch::Tensor operator()(const torch::Tensor& x) const;
};

// softmax(q k^T * scale + bias) v for q, k, v [B, H, L, D]; bias (broadcast to [B, H, Lq, Lk]) may
// be undefined; `causal` masks the keys after each query.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                        const torch::Tensor& bias = {}, bool causal = false);

// The adaptive norm's parameters: the chunks of silu(c) W^T + b, each [B, 1, width] (FLUX.1's and
// SD3's modulation from the time and pooled-text vector c [B, width]).
std::vector<torch::Tensor> modulation(const Linear& layer, const torch::Tensor& c, int64_t chunks);
// (1 + scale) LN(x) + shift, LN without affine and eps 1e-6.
torch::Tensor modulate(const torch::Tensor& x, const torch::Tensor& shift, const torch::Tensor& scale);

// The sinusoidal embedding of FLUX.1 and SD3: t scaled by `factor`, cos then sin, [B, dim], float32.
torch::Tensor timestepEmbedding(const torch::Tensor& t, int64_t dim, double factor);

// GELU with the tanh approximation (FLUX.1's MLPs, T5's gated GELU).
torch::Tensor geluTanh(const torch::Tensor& x);

}  // namespace flowscope::core::layers
