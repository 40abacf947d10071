#pragma once

// The KL autoencoder of FLUX.1 and SD3 in the original (LDM / Black Forest Labs) key layout:
// encoder.* and decoder.*, ResNet blocks with 32-group normalization, one single-head attention
// block in the middle, stride-2 downsampling and nearest-neighbour upsampling. Levels, blocks,
// channels and latent channels come from the shapes; the groups (32) and eps (1e-6) are the
// published constants. Latents in model space are z = (raw - shift) * scale.

#include <cstdint>
#include <optional>
#include <vector>

#include <torch/types.h>

#include "core/models/NetworkParts.h"

namespace flowscope::core {

class AutoEncoder {
public:
    // `weights` views the autoencoder's prefix (where encoder. and decoder. begin). The encoder is
    // loaded only when asked for (image to image, inversion).
    AutoEncoder(const Weights& weights, double shift, double scale, bool withEncoder);

    int64_t latentChannels() const { return m_latentChannels; }
    int64_t downscale() const { return m_downscale; }
    bool hasEncoder() const { return m_encoder.has_value(); }

    // z [B, C, h, w] in model space -> images [B, 3, f h, f w] in about [-1, 1].
    torch::Tensor decode(const torch::Tensor& z) const;
    // images [B, 3, H, W] in [-1, 1] -> the posterior mean in model space [B, C, H/f, W/f].
    torch::Tensor encode(const torch::Tensor& images) const;

    // Whether `weights` holds a decoder in this layout.
    static bool present(const Weights& weights);

private:
    struct ResBlock {
        layers::GroupNorm norm1, norm2;
        layers::Conv2d conv1, conv2;
        std::optional<layers::Conv2d> shortcut;
        torch::Tensor operator()(const torch::Tensor& x) const;
    };
    struct Attention {
        layers::GroupNorm norm;
        layers::Conv2d q, k, v, out;
        torch::Tensor operator()(const torch::Tensor& x) const;
    };
    struct Level {
        std::vector<ResBlock> blocks;
        std::optional<layers::Conv2d> resample;  // downsample (encoder) or upsample (decoder)
    };
    struct Half {
        layers::Conv2d convIn, convOut;
        std::vector<Level> levels;  // in the order of their indices
        ResBlock mid1, mid2;
        Attention attention;
        layers::GroupNorm normOut;
    };

    static ResBlock loadBlock(const Weights& weights, int64_t in, int64_t* out);
    static Attention loadAttention(const Weights& weights, int64_t channels);
    static Half loadDecoder(const Weights& weights, int64_t* latentChannels, int64_t* downscale);
    static Half loadEncoder(const Weights& weights, int64_t latentChannels);
    static torch::Tensor middle(const Half& half, const torch::Tensor& x);

    double m_shift, m_scale;
    int64_t m_latentChannels = 0;
    int64_t m_downscale = 1;
    Half m_decoder;
    std::optional<Half> m_encoder;
};

}  // namespace flowscope::core
