#pragma once

// The FLUX.1 transformer ([schnell] and [dev]) from the original Black Forest Labs checkpoint
// layout: double-stream blocks over text and image tokens, single-stream blocks over both, 3-axis
// rotary position embeddings, QK RMS norm and adaptive-norm modulation from the time, pooled-text
// and (for [dev]) distilled-guidance vector. Every size comes from the tensors' shapes; what the
// weights do not store is the published constant: RoPE theta 10,000 and axes 16/56/56 for its
// 128-wide heads (other head widths split as w/8 and the rest in two, so the small test networks
// follow the same rule).

#include <array>
#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "core/models/NetworkParts.h"

namespace flowscope::core::flux {

struct FluxConfig {
    int64_t hidden = 0;       // img_in's output width
    int64_t inChannels = 0;   // packed latent channels (16 x 2 x 2)
    int64_t outChannels = 0;
    int64_t heads = 0;
    int64_t headDim = 0;      // from the QK norm's scale
    int64_t mlpHidden = 0;
    int64_t contextIn = 0;    // T5's width (txt_in)
    int64_t vectorIn = 0;     // CLIP's pooled width (vector_in)
    int doubleBlocks = 0;
    int singleBlocks = 0;
    bool guidance = false;    // [dev]: the distilled guidance embedding
    std::array<int64_t, 3> axes{};
    double theta = 10000.0;

    // Read from the shapes under `weights` (the transformer's prefix); throws CheckpointError.
    static FluxConfig infer(const Weights& weights);
    int64_t latentChannels() const { return inChannels / 4; }
};

class FluxTransformer {
public:
    // Loads every tensor (in weights' dtype, on its device).
    explicit FluxTransformer(const Weights& weights);
    const FluxConfig& config() const { return m_config; }

    // img [B, N, inChannels] packed latent tokens with imgIds [B or 1, N, 3]; txt [B, M, contextIn];
    // vec [B, vectorIn] (CLIP's pooled output); timesteps [B] (sigma); guidance [B] for [dev]
    // (undefined otherwise). Returns [B, N, outChannels].
    torch::Tensor forward(const torch::Tensor& img, const torch::Tensor& imgIds, const torch::Tensor& txt,
                          const torch::Tensor& vec, const torch::Tensor& timesteps, const torch::Tensor& guidance) const;

    // The latent x [B, C, H, W] (H, W even) as tokens [B, (H/2)(W/2), 4C] and back.
    static torch::Tensor pack(const torch::Tensor& x);
    static torch::Tensor unpack(const torch::Tensor& tokens, int64_t height, int64_t width);
    // The ids of the tokens of a latent of H x W: (0, row, column) per 2x2 patch, [1, N, 3].
    static torch::Tensor imageIds(int64_t height, int64_t width, torch::Device device);


private:
    struct Mlp {
        layers::Linear in, out;
        torch::Tensor operator()(const torch::Tensor& x) const;  // out(silu(in(x)))
    };
    struct Stream {
        layers::Linear mod, qkv, proj, mlpIn, mlpOut;
        torch::Tensor queryNorm, keyNorm;
    };
    struct DoubleBlock {
        Stream img, txt;
    };
    struct SingleBlock {
        layers::Linear mod, linear1, linear2;
        torch::Tensor queryNorm, keyNorm;
    };

    Stream loadStream(const Weights& weights, const std::string& stem) const;
    // q, k, v [B, H, L, D] of tokens x through a fused qkv projection and the QK norm.
    std::array<torch::Tensor, 3> queryKeyValue(const torch::Tensor& qkv, const torch::Tensor& queryNorm,
                                               const torch::Tensor& keyNorm) const;
    torch::Tensor attend(const std::array<torch::Tensor, 3>& qkv, const torch::Tensor& cos, const torch::Tensor& sin) const;
    void doubleBlock(const DoubleBlock& block, torch::Tensor& img, torch::Tensor& txt, const torch::Tensor& vec,
                     const torch::Tensor& cos, const torch::Tensor& sin) const;
    void singleBlock(const SingleBlock& block, torch::Tensor& x, const torch::Tensor& vec, const torch::Tensor& cos,
                     const torch::Tensor& sin) const;

    FluxConfig m_config;
    layers::Linear m_imgIn, m_txtIn, m_finalModulation, m_finalLinear;
    Mlp m_timeIn, m_vectorIn, m_guidanceIn;
    std::vector<DoubleBlock> m_double;
    std::vector<SingleBlock> m_single;
};

// The rotary embedding's cos and sin per token and frequency, [N, D/2], for ids [N, 3], computed
// in float64 as the reference does and returned in float32.
std::pair<torch::Tensor, torch::Tensor> ropeTables(const torch::Tensor& ids, const std::array<int64_t, 3>& axes, double theta);
// Rotates each pair (x_2i, x_2i+1) of q or k [B, H, N, D] by the tables, in float32.
torch::Tensor applyRope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace flowscope::core::flux
