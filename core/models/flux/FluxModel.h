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

#include "core/models/Checkpoint.h"
#include "core/models/NetworkDenoiser.h"
#include "core/models/autoencoder/AutoEncoder.h"
#include "core/models/flux/FluxTransformer.h"
#include "core/models/text/TextEncoders.h"
#include "core/models/text/ClipTokenizer.h"
#include "core/models/text/T5Tokenizer.h"
#include "core/sampling/Model.h"

namespace flowscope::core::flux {

// FLUX.1's autoencoder scaling and its latent-to-RGB factors (DESIGN.md section 7).
constexpr double kLatentShift = 0.1159;
constexpr double kLatentScale = 0.3611;
constexpr int kDefaultSide = 1024;

class FluxModel final : public Model {
public:
    explicit FluxModel(CheckpointLayout layout);
    ~FluxModel() override;

    const CheckpointLayout& layout() const { return m_layout; }
    // T5's token count: 256 for [schnell], 512 for [dev] (the official pipelines').
    int t5Length() const;

    std::string name() const override { return m_layout.familyName(); }
    std::vector<int64_t> sampleShape() const override;
    torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) override;
    Prediction predict(const torch::Tensor& x, const PathPoint& p) override;
    Prediction predictRows(const torch::Tensor& x, const std::vector<PathPoint>& points) override;
    torch::Tensor denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha, const std::vector<double>& sigma) override;
    void prepare(torch::Device device, torch::ScalarType dtype) override;
    std::vector<std::string> takeNotes() override;

    bool takesText() const override { return true; }
    void setText(const TextSettings& text, const std::atomic<bool>* cancel) override;

    bool hasPreview() const override { return true; }
    bool hasDecoder() const override { return m_layout.autoencoder.found(); }
    torch::Tensor preview(const torch::Tensor& x, bool decode) override;
    bool encodesImages() const override { return m_layout.autoencoder.found(); }
    torch::Tensor encode(const torch::Tensor& images) override;

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
    // Latents in model space [B, 16, h, w] -> images [B, 3, 8h, 8w] in about [-1, 1].
    torch::Tensor decodeLatents(const torch::Tensor& z, const std::atomic<bool>* cancel);

    // The projection the lane previews use, [B, 3, h, w] (not upsampled).
    static torch::Tensor latentToRgb(const torch::Tensor& z);

private:
    void ensureTransformer(const std::atomic<bool>* cancel);
    void ensureAutoEncoder(bool withEncoder, const std::atomic<bool>* cancel);
    torch::ScalarType weightDtype(const CheckpointPart& part, const std::string& what, double activationBytes);
    torch::Tensor velocity(const torch::Tensor& x, const torch::Tensor& time);
    void rebuildNetwork();

    CheckpointLayout m_layout;
    torch::Device m_device = torch::kCPU;
    int m_width = kDefaultSide;
    int m_height = kDefaultSide;
    double m_guidance = 3.5;
    std::string m_prompt;
    torch::Tensor m_txt, m_vec;  // the current prompt's, on the CPU
    std::map<std::string, EncodedPrompt> m_prompts;
    std::unique_ptr<FluxTransformer> m_transformer;
    std::unique_ptr<AutoEncoder> m_autoencoder;
    std::unique_ptr<NetworkDenoiser> m_network;
    std::vector<std::string> m_notes;
    const std::atomic<bool>* m_cancel = nullptr;
};

}  // namespace flowscope::core::flux
