#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "core/api/TextSettings.h"
#include "core/sampling/ProbabilityPath.h"

namespace flowscope::core {

// A denoiser: the posterior mean x̂0 = E[x_data | x] for x = alpha x_data + sigma eps.
// Models take the noise level (alpha, sigma) rather than a time, so one model serves every path
// (DESIGN.md, "The unified view"). Models are used from one thread at a time.
class Model {
public:
    virtual ~Model() = default;

    virtual std::string name() const = 0;
    // The shape of one sample: {C, H, W} for images, {2} for 2-D point models.
    virtual std::vector<int64_t> sampleShape() const = 0;
    // x: [B, ...sampleShape]; alpha >= 0 and sigma > 0. Returns x̂0 with x's shape, dtype and device.
    virtual torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) = 0;
    // Row b of x at its own noise level (alpha[b], sigma[b]): a batched sweep runs lanes at
    // different times in one batch. The default evaluates each distinct level on its rows.
    virtual torch::Tensor denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                                      const std::vector<double>& sigma);
    // x̂0 at the point p of the run's path and, from a model that predicts the velocity of that
    // path natively, that velocity as it came out (undefined otherwise: the caller derives it
    // from x̂0). Saves a launch-bound GPU loop the conversion to x̂0 and back.
    struct Prediction {
        torch::Tensor data;
        torch::Tensor velocity;
    };
    virtual Prediction predict(const torch::Tensor& x, const PathPoint& p) { return {denoise(x, p.alpha, p.sigma), {}}; }
    // The same with a point per row (a sweep's lanes). Where the velocity is defined, it is the
    // model's own on the rows it predicts natively and the one derived from x̂0 on the others.
    virtual Prediction predictRows(const torch::Tensor& x, const std::vector<PathPoint>& points);
    // The rows' alpha and sigma, as denoiseRows takes them.
    static std::pair<std::vector<double>, std::vector<double>> levelsOf(const std::vector<PathPoint>& points);
    // Moves whatever the model holds to the device and dtype of the upcoming run. When it is there
    // already, the model must keep the very tensors it holds: a captured CUDA graph reads them.
    virtual void prepare(torch::Device device, torch::ScalarType dtype) = 0;
    // Conditional models: the names of their classes, in index order (empty: unconditional).
    virtual std::vector<std::string> classNames() const { return {}; }
    bool isConditional() const { return !classNames().empty(); }
    // The class of each row of the evaluations that follow (kNullClass: the unconditional model,
    // the mixture over all classes or a network's null class); empty: every row unconditional.
    // Conditional models only; the caller clears it after its call.
    virtual void setRowClasses(std::vector<int64_t> classes);
    static constexpr int64_t kNullClass = -1;
    // The sampler's step index (0-based) for the evaluations that follow.
    virtual void setStep(int /*step*/) {}

    // Text-to-image models (FLUX.1 checkpoints): the prompt and image size of the runs that
    // follow, set before sampleShape() is asked. The prompt is encoded here (and cached); `cancel`
    // stops a long load with CancelledError.
    virtual bool takesText() const { return false; }
    virtual void setText(const TextSettings& /*text*/, const std::atomic<bool>* /*cancel*/) {}
    // Bundles whose network takes conditioning tensors: the files of the runs that follow
    // (TextSettings's conditioning and unconditioning; empty: the manifest's tensors, and for the
    // null rows zeros, or the conditional tensors where the network has classes). The default
    // refuses any file, in words.
    virtual void setConditioningFiles(const std::string& conditioning, const std::string& unconditioning);
    // Models conditioned on an input of the run rather than on a chosen class: SD3 on its prompt,
    // a bundle on its conditioning tensors. Their one class stands for that input and is the
    // condition of every run; the null class is its unconditional counterpart (the negative
    // prompt, the --uncond tensors).
    virtual bool conditionedByInput() const { return takesText() && isConditional(); }

    // Things the user should know about the last run (clamped ranges, skipped files, ...).
    virtual std::vector<std::string> takeNotes() { return {}; }

    // Models whose samples are not shown as they are (latents, data outside [-1, 1]) turn a batch
    // x [B, ...sampleShape] into display images [B, 1 or 3, H, W] in [-1, 1]. `decode` asks for the
    // full decoder where there is one; otherwise a cheap preview. Same H, W either way.
    virtual bool hasPreview() const { return false; }
    virtual bool hasDecoder() const { return false; }
    virtual torch::Tensor preview(const torch::Tensor& x, bool /*decode*/) { return x; }
    // Whether images [B, C, H, W] in [-1, 1] can become samples (image-to-image, inversion), and
    // how: image models take them as they are, latent models through their encoder (its mean: no
    // sampling noise), models of another value range map them onto it.
    virtual bool encodesImages() const { return isImage() && !hasPreview(); }
    virtual torch::Tensor encode(const torch::Tensor& images) { return images; }

    bool isImage() const { return sampleShape().size() == 3; }

    // Unique per model object for the life of the process (an address can be reused; this is
    // not), so that caches of captured runs never confuse two models.
    uint64_t instanceId() const { return m_instanceId; }

private:
    static uint64_t nextInstanceId() {
        static std::atomic<uint64_t> counter{0};
        return ++counter;
    }
    uint64_t m_instanceId = nextInstanceId();
};

}  // namespace flowscope::core
