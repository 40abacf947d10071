#pragma once

// A Stable Diffusion 3 / 3.5 checkpoint as a FlowScope model (DESIGN.md section 7): the MMDiT is a
// velocity network on the linear path in sigma time (it sees 1000 sigma). Its text conditioning is
// SD3's: the penultimate hidden states of CLIP-L and CLIP-G joined along channels and padded to
// T5's width, then joined with T5's hidden states along the sequence (zeros where the checkpoint
// has no T5); the pooled vector is both CLIPs' projected pooled outputs joined. The model has one
// class, the prompt; its null class is the negative prompt, so classifier-free guidance and its
// variants (GuidedModel) evaluate both halves in one batched forward pass.

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/models/CheckpointModel.h"
#include "core/models/mmdit/MmditTransformer.h"

namespace flowscope::core::sd3 {

// SD3's autoencoder scaling (DESIGN.md section 7).
constexpr double kLatentShift = 0.0609;
constexpr double kLatentScale = 1.5305;

class Sd3Model final : public CheckpointModel {
public:
    // T5's token count (the diffusers pipelines' default) and CLIP's.
    static constexpr int kT5Length = 256;
    static constexpr int kClipLength = 77;

    explicit Sd3Model(CheckpointLayout layout);
    ~Sd3Model() override;

    void setText(const TextSettings& text, const std::atomic<bool>* cancel) override;
    void setRowClasses(std::vector<int64_t> classes) override;

    struct EncodedPrompt {
        torch::Tensor context;  // [1, 77 + 256, D_t5]
        torch::Tensor pooled;   // [1, D_clip_l + D_clip_g]
        torch::Tensor clipLIds, clipGIds, t5Ids;  // [1, 77], [1, 77], [1, 256] int64
        TokenizedPrompt clipL, clipG, t5;
        bool withT5 = false;
    };
    EncodedPrompt encodePrompt(const std::string& prompt, const std::atomic<bool>* cancel);
    // The MMDiT's raw output (eps - x0) for latents x [B, 16, h, w] at sigma [B].
    torch::Tensor forwardRaw(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& context,
                             const torch::Tensor& pooled, const std::atomic<bool>* cancel);

    PromptFile encodePromptFile(const std::string& prompt, const std::atomic<bool>* cancel) override;
    std::vector<std::string> conditioningNames() const override { return {"context", "pooled"}; }
    torch::Tensor forwardFromFile(const torch::Tensor& x, const torch::Tensor& sigma, const SafeTensorsFile& cond,
                                  double guidance, const std::atomic<bool>* cancel) override;

    static LatentFormat latentFormat();

private:
    torch::Tensor rawOutput(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& labels) override;
    void releaseParts() override { m_transformer.reset(); }
    bool partsLoaded() const override { return m_transformer != nullptr; }
    void ensureTransformer(const std::atomic<bool>* cancel);
    // Encodes the prompt and negative prompt the runs that follow are conditioned on.
    void condition(const TextSettings& text, const std::atomic<bool>* cancel);
    // The CLIP text model of `part` on `ids`: its penultimate hidden states and projected pooled output.
    std::pair<torch::Tensor, torch::Tensor> runClip(const CheckpointPart& part, const std::string& label, const torch::Tensor& ids,
                                                    int64_t endId, const std::atomic<bool>* cancel);

    MmditConfig m_config;
    std::map<std::string, EncodedPrompt> m_prompts;
    torch::Tensor m_context, m_pooled, m_negativeContext, m_negativePooled;  // on the CPU
    bool m_rowClassesSet = false;
    std::unique_ptr<MmditTransformer> m_transformer;
};

}  // namespace flowscope::core::sd3
