#pragma once

// Guidance (DESIGN.md section 6): from a step's conditional and unconditional data predictions
// D_c and D_u, the guided prediction D the solver uses. Per sample, <a, b> and |a| run over all of
// the sample's elements (every dimension but the first).

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/types.h>

#include "core/api/Guidance.h"
#include "core/sampling/Model.h"
#include "core/sampling/ProbabilityPath.h"

namespace flowscope::core {

// tau = 1 / (1 + sigma/alpha): the linear path's t at the same SNR (0 at noise, 1 at data).
double noiseLevelCoordinate(double alpha, double sigma);

// One run's guidance: holds APG's momentum between evaluations, so make one per run.
class Guidance {
public:
    explicit Guidance(GuidanceSettings settings);

    const GuidanceSettings& settings() const { return m_settings; }
    // Whether step `step` at `point` needs the unconditional prediction at all.
    bool needsUnconditional(const PathPoint& point, int step) const;
    // Whether CFG-Zero* holds the state still at step `step`.
    bool zeroed(int step) const;
    // The guided data prediction at state x, `point` on the path, step index `step` (0-based).
    // `unconditional` may be undefined where needsUnconditional is false. `advance` moves APG's
    // momentum on (false: a look at the field, at other points than the run's, which sees APG
    // without momentum and leaves the run as it is).
    torch::Tensor guide(const torch::Tensor& conditional, const torch::Tensor& unconditional, const torch::Tensor& x,
                        const PathPoint& point, int step, bool advance = true);
    // A new run: APG's momentum back to 0.
    void restart();

private:
    bool inInterval(const PathPoint& point) const;

    GuidanceSettings m_settings;
    torch::Tensor m_momentum;  // APG: per sample, like D_c
};

// A conditional model guided towards one class: each evaluation asks the model for the class
// and, where the guidance needs it, for the null class in the same call (2B rows), and returns
// the guided x̂0. The sampler tells it the step (Model::beginStep) for CFG-Zero*'s first steps.
class GuidedModel final : public Model {
public:
    // `path` is the run's (denoise, which has no derivatives, finds them on it).
    GuidedModel(std::shared_ptr<Model> model, int64_t classIndex, GuidanceSettings settings, const ProbabilityPath& path);

    std::string name() const override { return m_model->name(); }
    std::vector<int64_t> sampleShape() const override { return m_model->sampleShape(); }
    std::vector<std::string> classNames() const override { return m_model->classNames(); }
    bool conditionedByInput() const override { return m_model->conditionedByInput(); }
    torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) override;
    Prediction predict(const torch::Tensor& x, const PathPoint& p) override;
    Prediction predictRows(const torch::Tensor& x, const std::vector<PathPoint>& points) override;
    void prepare(torch::Device device, torch::ScalarType dtype) override { m_model->prepare(device, dtype); }
    std::vector<std::string> takeNotes() override { return m_model->takeNotes(); }
    bool hasPreview() const override { return m_model->hasPreview(); }
    bool hasDecoder() const override { return m_model->hasDecoder(); }
    torch::Tensor preview(const torch::Tensor& x, bool decode) override { return m_model->preview(x, decode); }
    bool encodesImages() const override { return m_model->encodesImages(); }
    torch::Tensor encode(const torch::Tensor& images) override { return m_model->encode(images); }
    // A step index below the last one starts a new run (APG's momentum restarts).
    void setStep(int step) override;
    // Each row's class for the runs that follow (reflow's couplings guide a batch of classes),
    // instead of the one class given at construction; empty: that class again.
    void setRowClasses(std::vector<int64_t> classes) override { m_rowClasses = std::move(classes); }

    // Calls into the model so far (a batched conditional and unconditional call counts once).
    int64_t forwardPasses() const { return m_forwardPasses; }

private:
    Prediction guided(const torch::Tensor& x, const PathPoint& point, bool advance);

    std::shared_ptr<Model> m_model;
    int64_t m_class;
    Guidance m_guidance;
    const ProbabilityPath& m_path;
    std::vector<int64_t> m_rowClasses;
    int m_step = 0;
    int64_t m_forwardPasses = 0;
};

// The parts of guidance with closed forms, on their own (tests check them against independent
// computations): each takes [B, ...] tensors and works per sample.
torch::Tensor cfgPrediction(const torch::Tensor& conditional, const torch::Tensor& unconditional, double scale);
torch::Tensor rescaledPrediction(const torch::Tensor& guided, const torch::Tensor& conditional, double phi);
// CFG-Zero*'s optimized scale s = <v_c, v_u> / |v_u|^2 per sample ([B]; 1 where |v_u| = 0).
torch::Tensor cfgZeroScale(const torch::Tensor& conditionalVelocity, const torch::Tensor& unconditionalVelocity);

}  // namespace flowscope::core
