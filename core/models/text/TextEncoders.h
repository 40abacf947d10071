#pragma once

// The text encoders of FLUX.1 and SD3, in Hugging Face transformers' key layout: CLIP's text
// transformer (ViT-L/14's for both, bigG's for SD3) and the T5 v1.1 encoder. Sizes come from the
// shapes; CLIP's heads are 64 wide (the published constant: its config is not needed), T5's head
// count is the width of its relative-attention bias table.

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/models/NetworkParts.h"

namespace flowscope::core {

class ClipTextModel {
public:
    // The MLP's activation, as the published configurations have it (the weights do not say):
    // quick_gelu for ViT-L/14 (CLIP-L), the exact GELU for OpenCLIP's bigG (CLIP-G).
    enum class Activation { QuickGelu, Gelu };
    // `weights` views the part's prefix, where `text_model.` begins.
    ClipTextModel(const Weights& weights, Activation activation);
    struct Output {
        torch::Tensor hidden;        // [B, 77, width], after the final layer norm
        torch::Tensor penultimate;   // [B, 77, width], the second-to-last layer's output (SD3)
        torch::Tensor pooled;        // [B, width] at the first end token (projected where the
                                     // checkpoint has text_projection and `project` is asked)
    };
    // ids [B, L] (int64); `endId` marks the end token whose position is pooled.
    Output forward(const torch::Tensor& ids, int64_t endId, bool project = false) const;
    int64_t width() const { return m_width; }
    bool hasProjection() const { return m_projection.weight.defined(); }

private:
    struct Layer {
        layers::LayerNorm norm1, norm2;
        layers::Linear q, k, v, out, fc1, fc2;
    };
    int64_t m_width = 0;
    int64_t m_heads = 0;
    bool m_quickGelu = true;
    layers::Embedding m_tokenEmbedding, m_positionEmbedding;
    layers::Linear m_projection;  // undefined weight where the file has none
    std::vector<Layer> m_layers;
    layers::LayerNorm m_finalNorm;
};

class T5Encoder {
public:
    // `weights` views the part's prefix, where `shared.` and `encoder.` begin.
    explicit T5Encoder(const Weights& weights);
    // ids [B, L] (int64) -> the last hidden state [B, L, width] after the final RMS norm; every
    // token attends to every other (the pipelines pass no mask).
    torch::Tensor forward(const torch::Tensor& ids) const;
    int64_t width() const { return m_width; }
    // The bytes its weights hold (float8 matrices kept packed count one byte per value).
    int64_t heldBytes() const;

    // T5's bidirectional relative-position bucket for key - query = `relative` (32 buckets,
    // exact below 8 either way, logarithmic to 128).
    static int64_t bucket(int64_t relative, int64_t buckets = 32, int64_t maxDistance = 128);

private:
    struct Block {
        torch::Tensor attentionNorm, feedNorm;
        layers::Linear q, k, v, o, wi0, wi1, wo;
    };
    int64_t m_width = 0;
    int64_t m_heads = 0;
    int64_t m_inner = 0;
    layers::Embedding m_embedding, m_relativeBias;
    torch::Tensor m_finalNorm;
    std::vector<Block> m_blocks;
};

}  // namespace flowscope::core
