#pragma once

// The MMDiT of Stable Diffusion 3 and 3.5 in Stability AI's original key layout: a patch embedding
// with a learned position table cropped to the latent grid, timestep and pooled-text embeddings
// summed into the modulation vector, joint blocks in which the text (context) and image streams
// attend together under adaLN modulation, with 3.5's QK RMS norm and 3.5 Medium's MMDiT-X second
// image-only attention, and the final modulated projection back to patches. Every size comes from
// the tensors' shapes; the heads are 64 wide, the published constant.

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include <torch/types.h>

#include "core/models/NetworkParts.h"

namespace flowscope::core::sd3 {

struct MmditConfig {
    static constexpr int64_t kHeadDim = 64;
    int64_t hidden = 0;
    int64_t heads = 0;
    int64_t patch = 0;
    int64_t inChannels = 0;
    int64_t outChannels = 0;
    int64_t positionGrid = 0;  // the position table's side, in patches
    int64_t contextIn = 0;     // the joined text features' width (T5's)
    int64_t pooledIn = 0;      // the pooled text vector's width (CLIP-L's and CLIP-G's)
    int64_t mlpHidden = 0;
    int depth = 0;
    bool qkNorm = false;                   // 3.5
    std::vector<int> selfAttentionBlocks;  // MMDiT-X (3.5 Medium): blocks with a second image attention

    // Read from the shapes under `weights` (the transformer's prefix); throws CheckpointError.
    static MmditConfig infer(const Weights& weights);
    // The largest image side the position table covers, in pixels (8x latents).
    int64_t maxSide() const { return positionGrid * patch * 8; }
};

class MmditTransformer {
public:
    // Loads every tensor (in weights' dtype, on its device).
    explicit MmditTransformer(const Weights& weights);
    const MmditConfig& config() const { return m_config; }

    // x [B, C, h, w] latents (h, w multiples of the patch); sigma [B] (the network sees 1000 sigma);
    // context [1 or B, L, contextIn]; pooled [1 or B, pooledIn]. Returns [B, C, h, w].
    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& context,
                          const torch::Tensor& pooled) const;

    // The position table's rows for a grid of gh x gw patches, cropped from its centre, [1, gh gw, hidden].
    torch::Tensor croppedPositions(int64_t gh, int64_t gw) const;

private:
    struct Attention {
        layers::Linear qkv, proj;  // proj: empty in the last context block (pre-only)
        torch::Tensor queryNorm, keyNorm;
    };
    struct Stream {
        layers::Linear modulation, fc1, fc2;
        Attention attention;
        std::optional<Attention> second;  // MMDiT-X
        bool preOnly = false;
    };
    struct Block {
        Stream context, image;
    };
    struct Mlp {
        layers::Linear in, out;
        torch::Tensor operator()(const torch::Tensor& x) const;  // out(silu(in(x)))
    };

    Attention loadAttention(const Weights& weights, bool withProjection) const;
    Stream loadStream(const Weights& weights, bool preOnly, bool second) const;
    // q, k, v [B, H, L, 64] through the QK norm where there is one.
    std::array<torch::Tensor, 3> queryKeyValue(const Attention& attention, const torch::Tensor& x) const;
    void block(const Block& block, torch::Tensor& context, torch::Tensor& x, const torch::Tensor& c) const;

    MmditConfig m_config;
    layers::Conv2d m_patchEmbed;
    torch::Tensor m_positions;  // [grid, grid, hidden]
    Mlp m_timeEmbed, m_pooledEmbed;
    layers::Linear m_contextEmbed, m_finalModulation, m_finalLinear;
    std::vector<Block> m_blocks;
};

}  // namespace flowscope::core::sd3
