#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/api/Names.h"
#include "core/sampling/Model.h"
#include "core/sampling/Parameterization.h"
#include "core/sampling/ProbabilityPath.h"

namespace flowscope::core {

// What a network receives as its time input.
enum class TimeInput {
    T,             // t on the native path (0 = noise, 1 = data)
    Sigma,         // sigma(t) of the native path (for `linear`, 1 - t: the diffusers convention)
    Timestep1000,  // 999 (1 - t)
};

TimeInput parseTimeInput(std::string_view name);

// A network trained on a native path with a given parameterization, usable on any path: the
// noise level (alpha, sigma) asked for is re-timed to the native time t' with the same SNR, x is
// rescaled by sigma_native(t')/sigma, and the output is converted to x̂0 at t'. Noise levels
// outside the native range are clamped to its end and reported in the run's notes.
class NetworkDenoiser final : public Model {
public:
    // forward(x, time, labels): x [B, ...sampleShape] on the run's device, time [B], and for a
    // conditional network each row's class [B] (int64, -1 the null class; undefined otherwise);
    // returns x's shape.
    using Forward =
        std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& time, const torch::Tensor& labels)>;

    // forwardMayWriteInput: the network may change its input in place (a TorchScript program
    // could); it then always gets a tensor of its own, never the sampler's state.
    NetworkDenoiser(std::string name, Forward forward, std::vector<int64_t> sampleShape,
                    std::unique_ptr<ProbabilityPath> nativePath, Parameterization parameterization,
                    TimeInput timeInput, bool forwardMayWriteInput = true);

    std::string name() const override { return m_name; }
    std::vector<int64_t> sampleShape() const override { return m_sampleShape; }
    torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) override;
    Prediction predict(const torch::Tensor& x, const PathPoint& p) override;
    Prediction predictRows(const torch::Tensor& x, const std::vector<PathPoint>& points) override;
    torch::Tensor denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                              const std::vector<double>& sigma) override;
    void prepare(torch::Device, torch::ScalarType) override {}
    std::vector<std::string> takeNotes() override;

    const ProbabilityPath& nativePath() const { return *m_nativePath; }

    // A conditional network's classes (its manifest's); its unconditional model is the null class.
    void setClasses(std::vector<std::string> names) { m_classNames = std::move(names); }
    std::vector<std::string> classNames() const override { return m_classNames; }
    void setRowClasses(std::vector<int64_t> classes) override;

private:
    // Where a noise level lands on the native path: the point, x's scale and the time input.
    struct NativeLevel {
        PathPoint point;
        double scale = 1.0;
        double time = 0.0;
    };
    NativeLevel nativeLevel(double alpha, double sigma);
    static bool unitScale(const NativeLevel& level);
    // Whether the network's output at this level is the velocity of the path whose point is p:
    // a velocity network asked along its own path (the native point agrees with p to rounding).
    bool velocityAlong(const NativeLevel& level, const PathPoint& p) const;
    // The network on rows at their own noise levels: x̂0, the raw output and each row's level.
    struct Rows {
        torch::Tensor data, output;
        std::vector<NativeLevel> levels;
    };
    Rows forwardRows(const torch::Tensor& x, const std::vector<double>& alpha, const std::vector<double>& sigma);
    // The network at a native level: its output and x rescaled to it.
    torch::Tensor outputAt(const torch::Tensor& x, const NativeLevel& level, torch::Tensor* xNative);
    torch::Tensor runForward(const torch::Tensor& xNative, const torch::Tensor& time, const torch::Tensor& x);

    std::string m_name;
    Forward m_forward;
    std::vector<int64_t> m_sampleShape;
    std::unique_ptr<ProbabilityPath> m_nativePath;
    Parameterization m_parameterization;
    TimeInput m_timeInput;
    bool m_forwardMayWriteInput;
    double m_lambdaLow;
    double m_lambdaHigh;
    std::set<std::string> m_notes;
    std::vector<std::string> m_classNames;
    std::vector<int64_t> m_rowClasses;
};

}  // namespace flowscope::core
