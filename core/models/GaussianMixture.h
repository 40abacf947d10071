#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/sampling/Model.h"

namespace flowscope::core {

// An isotropic Gaussian mixture with an exact, closed-form denoiser (smooth down to sigma = 0).
class GaussianMixture final : public Model {
public:
    // means [K, D], stds [K], weights [K] (normalized here).
    GaussianMixture(std::string name, torch::Tensor means, torch::Tensor stds, torch::Tensor weights);

    // `8gaussians`, `rings`, `checkerboard`, each with classes (see classNames); throws
    // UnknownNameError otherwise.
    static std::unique_ptr<GaussianMixture> named(std::string_view name);
    static const std::vector<std::string>& names();

    std::string name() const override { return m_name; }
    std::vector<int64_t> sampleShape() const override { return {m_means.size(1)}; }
    torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) override;
    torch::Tensor denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                              const std::vector<double>& sigma) override;
    void prepare(torch::Device device, torch::ScalarType dtype) override;

    // Classes: groups of components. D_c is the posterior mean over class c's components alone
    // (the mixture restricted to them), the null class the whole mixture. `componentClasses`
    // gives each component's class index into `names`.
    void setClasses(std::vector<std::string> names, std::vector<int64_t> componentClasses);
    std::vector<std::string> classNames() const override { return m_classNames; }
    void setRowClasses(std::vector<int64_t> classes) override;
    const std::vector<int64_t>& componentClasses() const { return m_componentClasses; }

    const torch::Tensor& means() const { return m_means; }
    const torch::Tensor& stds() const { return m_stds; }
    const torch::Tensor& weights() const { return m_weights; }

private:
    // The posterior mean with alpha and sigma as columns: [B, 1] per row, or [1, 1] for all.
    torch::Tensor posteriorMean(const torch::Tensor& x, const torch::Tensor& alpha, const torch::Tensor& sigma) const;
    std::string m_name;
    torch::Tensor m_means, m_stds, m_weights;
    torch::Tensor m_runMeans, m_runVars, m_runLogWeights;
    std::vector<std::string> m_classNames;
    std::vector<int64_t> m_componentClasses;
    // The rows' classes as log-weight offsets [B, K] (0 or -inf) on the run's device; undefined
    // while every row is unconditional.
    std::vector<int64_t> m_rowClasses;
    torch::Tensor m_rowMask;
};

}  // namespace flowscope::core
