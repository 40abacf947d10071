#pragma once

// What the text-to-image checkpoints (FLUX.1, SD3 / 3.5) share as FlowScope models: each is a
// velocity network on the linear path in sigma time (DESIGN.md section 7), so every solver,
// schedule and path runs on it through NetworkDenoiser. Parts load when first needed, each sized
// against free memory before anything is allocated; the autoencoder turns latents into images
// and back; previews project latents to RGB. A family adds its transformer, its text encoders and
// its prompt conditioning.

#include <array>
#include <atomic>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "core/io/SafeTensorsFile.h"
#include "core/models/Checkpoint.h"
#include "core/models/NetworkDenoiser.h"
#include "core/models/PartPlacement.h"
#include "core/models/autoencoder/AutoEncoder.h"
#include "core/models/text/TokenizedPrompt.h"
#include "core/sampling/Model.h"

namespace flowscope::core {

// A family's latent space: the autoencoder's scaling (z = (raw - shift) * scale) and the
// latent-to-RGB factors of the previews (rgb = F^T z + b per latent pixel).
struct LatentFormat {
    double shift = 0.0;
    double scale = 1.0;
    std::array<std::array<double, 3>, 16> rgbFactors{};
    std::array<double, 3> rgbBias{};
};

class CheckpointModel : public Model {
public:
    static constexpr int kDefaultSide = 1024;

    CheckpointModel(CheckpointLayout layout, LatentFormat latent);
    ~CheckpointModel() override;

    const CheckpointLayout& layout() const { return m_layout; }

    std::string name() const override { return m_layout.familyName(); }
    std::vector<int64_t> sampleShape() const override { return {16, m_height / 8, m_width / 8}; }
    torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) override;
    Prediction predict(const torch::Tensor& x, const PathPoint& p) override;
    Prediction predictRows(const torch::Tensor& x, const std::vector<PathPoint>& points) override;
    torch::Tensor denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha, const std::vector<double>& sigma) override;
    void prepare(torch::Device device, torch::ScalarType dtype) override;
    std::vector<std::string> takeNotes() override;

    bool takesText() const override { return true; }
    std::vector<std::string> classNames() const override { return m_classNames; }
    void setRowClasses(std::vector<int64_t> classes) override;

    bool hasPreview() const override { return true; }
    bool hasDecoder() const override { return m_layout.autoencoder.found(); }
    torch::Tensor preview(const torch::Tensor& x, bool decode) override;
    bool encodesImages() const override { return m_layout.autoencoder.found(); }
    torch::Tensor encode(const torch::Tensor& images) override;

    // Latents in model space [B, 16, h, w] -> images [B, 3, 8h, 8w] in about [-1, 1].
    torch::Tensor decodeLatents(const torch::Tensor& z, const std::atomic<bool>* cancel);
    // The projection the lane previews use, [B, 3, h, w] (not upsampled).
    torch::Tensor latentToRgb(const torch::Tensor& z) const;

    // The CLI's sub-steps, the same for every family. encode-prompt's tensors (named as its file
    // stores them) and each tokenizer's ids with the prompt's tokens that fit.
    struct PromptFile {
        std::vector<std::pair<std::string, torch::Tensor>> tensors;
        struct Tokens {
            std::string tokenizer;  // "clip_l", "clip_g", "t5"
            TokenizedPrompt tokens;
            int limit = 0;          // how many of the prompt's tokens fit
        };
        std::vector<Tokens> tokens;
    };
    virtual PromptFile encodePromptFile(const std::string& prompt, const std::atomic<bool>* cancel) = 0;
    // The names of the tensors a forward pass takes from an encode-prompt file.
    virtual std::vector<std::string> conditioningNames() const = 0;
    // The transformer's raw output (eps - x0) for latents x [B, 16, h, w] at sigma [B], with the
    // conditioning an encode-prompt file holds (batch 1 applies to every sample). `guidance` is
    // FLUX.1 [dev]'s distilled guidance (ignored by families without that input).
    virtual torch::Tensor forwardFromFile(const torch::Tensor& x, const torch::Tensor& sigma, const SafeTensorsFile& cond,
                                          double guidance, const std::atomic<bool>* cancel) = 0;

    // A part's parameters, and those stored as float8.
    static PartSize partSize(const CheckpointPart& part);
    // What the user can do when a part does not fit, in words: on a GPU or the CPU, for a file
    // that stores float8 matrices or not.
    static std::string memoryRemedy(bool gpu, bool storesFloat8);

    // The bytes its transformer and autoencoder take in float32, and letting loaded weights go on
    // the CPU (encoded prompts stay; on a GPU captured runs read the weights, so they stay): the
    // catalog keeps several checkpoints open while these fit together.
    double weightBytes() const;
    void releaseWeights();

protected:
    // The network's velocity input: x [B, 16, h, w] on the run's device, sigma [B], each row's
    // class (undefined for unconditional families). Returns the raw output (eps - x0).
    virtual torch::Tensor rawOutput(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& labels) = 0;
    // Sets the image size; the network is rebuilt when it changes.
    void setSize(int width, int height);
    // A part's weights, placed by placePart against the memory of the run's device: the view
    // to load them through (dtype, device, float8 packing), with a note where they do not compute
    // in the device's first choice. A text encoder (`mayRunOnCpu`) that does not fit the GPU runs
    // on the CPU instead. Throws InvalidRequestError in words when the part fits nowhere.
    Weights placeWeights(const CheckpointPart& part, const std::string& what, double activationBytes,
                         const std::atomic<bool>* cancel, bool mayRunOnCpu = false);
    // Bytes of `part`'s tensors once loaded as `dtype`.
    static double partBytes(const CheckpointPart& part, torch::ScalarType dtype);
    void ensureAutoEncoder(bool withEncoder, const std::atomic<bool>* cancel);
    // Loads `part` (`what` in messages, `label` in the load's progress) in the dtype that fits
    // beside `activations`, lets `run` use its weights, and releases it.
    void runPart(const CheckpointPart& part, const std::string& what, const std::string& label, double activations,
                 const std::atomic<bool>* cancel, const std::function<void(const Weights&)>& run);
    // On the CPU, releases the transformer first where it and `part` would not both fit.
    void makeRoomFor(const CheckpointPart& part);
    // Conditioning tensors must have a batch of 1 or x's; InvalidRequestError otherwise.
    static void checkConditioningBatch(std::initializer_list<const torch::Tensor*> conditioning, int64_t batch);
    // Classes the network distinguishes (SD3's prompt against its negative prompt; empty: none).
    void setClassNames(std::vector<std::string> names);

    CheckpointLayout m_layout;
    LatentFormat m_latent;
    torch::Device m_device = torch::kCPU;
    mutable double m_weightBytes = -1.0;  // weightBytes(), once read
    int m_width = kDefaultSide;
    int m_height = kDefaultSide;
    std::vector<std::string> m_notes;
    const std::atomic<bool>* m_cancel = nullptr;
    std::unique_ptr<NetworkDenoiser> m_network;
    std::unique_ptr<AutoEncoder> m_autoencoder;

private:
    void rebuildNetwork();
    // The transformer, released when the device changes or to make room for a text encoder.
    virtual void releaseParts() = 0;
    virtual bool partsLoaded() const = 0;

    std::vector<std::string> m_classNames;
};

// The conditioning tensor `name` of an encode-prompt file, as float32; InvalidRequestError
// saying how to write it when the file lacks it.
torch::Tensor conditioningTensor(const SafeTensorsFile& cond, const std::string& name);

// The model of the checkpoint `layout` describes: FLUX.1 or SD3 by its family.
std::unique_ptr<CheckpointModel> makeCheckpointModel(CheckpointLayout layout);

}  // namespace flowscope::core
