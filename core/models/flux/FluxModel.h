#pragma once

// A FLUX.1 checkpoint as a FlowScope model: the transformer is a velocity network on the linear
// path in sigma time (DESIGN.md section 7), so every solver, schedule and path runs on it through
// NetworkDenoiser. Parts load when first needed and the text encoders are released after each new
// prompt is encoded (its result is cached by prompt). Sizes of parts and activations are estimated
// against free memory before anything is allocated.

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/models/CheckpointModel.h"
#include "core/models/flux/FluxTransformer.h"

namespace flowscope::core::flux {

// FLUX.1's autoencoder scaling (DESIGN.md section 7).
constexpr double kLatentShift = 0.1159;
constexpr double kLatentScale = 0.3611;
constexpr int kDefaultSide = CheckpointModel::kDefaultSide;

class FluxModel final : public CheckpointModel {
public:
    explicit FluxModel(CheckpointLayout layout);
    ~FluxModel() override;

    // T5's token count: 256 for [schnell], 512 for [dev] (the official pipelines').
    int t5Length() const;
    // What the transformer's activations take at the current size, in bytes (of its memory check).
    double transformerActivationBytes() const;

    void setText(const TextSettings& text, const std::atomic<bool>* cancel) override;

    // The sub-steps the CLI exposes.
    struct EncodedPrompt {
        torch::Tensor txt;     // [1, L, D_t5]
        torch::Tensor vec;     // [1, D_clip]
        torch::Tensor clipIds; // [1, 77] int64
        torch::Tensor t5Ids;   // [1, L] int64
        TokenizedPrompt clip, t5;
    };
    EncodedPrompt encodePrompt(const std::string& prompt, const std::atomic<bool>* cancel);
    // The transformer's raw output (eps - x0) for latents x [B, 16, h, w] at sigma [B].
    torch::Tensor forwardRaw(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& txt,
                             const torch::Tensor& vec, double guidance, const std::atomic<bool>* cancel);
    // Conditions the runs that follow on given text features (txt [1, L, D_t5], vec [1, D_clip]),
    // as an encode-prompt file holds them, and sets the image size.
    void setConditioning(const torch::Tensor& txt, const torch::Tensor& vec, int width, int height);

    PromptFile encodePromptFile(const std::string& prompt, const std::atomic<bool>* cancel) override;
    std::vector<std::string> conditioningNames() const override { return {"txt", "vec"}; }
    torch::Tensor forwardFromFile(const torch::Tensor& x, const torch::Tensor& sigma, const SafeTensorsFile& cond,
                                  double guidance, const std::atomic<bool>* cancel) override;

    // FLUX.1's latent-to-RGB factors and scaling.
    static LatentFormat latentFormat();

private:
    torch::Tensor rawOutput(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& labels) override;
    void releaseParts() override { m_transformer.reset(); }
    bool partsLoaded() const override { return m_transformer != nullptr; }
    void ensureTransformer(const std::atomic<bool>* cancel);

    double m_guidance = 3.5;
    std::string m_prompt;
    torch::Tensor m_txt, m_vec;  // the current prompt's, on the CPU
    std::map<std::string, EncodedPrompt> m_prompts;
    std::unique_ptr<FluxTransformer> m_transformer;
};

}  // namespace flowscope::core::flux
