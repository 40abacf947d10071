#include "core/models/GaussianMixture.h"
#include "core/sampling/DeviceTransfer.h"

#include <cmath>
#include <numbers>

#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/api/Names.h"

namespace flowscope::core {

GaussianMixture::GaussianMixture(std::string name, torch::Tensor means, torch::Tensor stds,
                                 torch::Tensor weights)
    : m_name(std::move(name)),
      m_means(means.to(torch::kFloat64).contiguous()),
      m_stds(stds.to(torch::kFloat64).contiguous()),
      m_weights((weights / weights.sum()).to(torch::kFloat64).contiguous()) {
    prepare(torch::kCPU, torch::kFloat32);
}

const std::vector<std::string>& GaussianMixture::names() { return mixtureNames(); }

std::unique_ptr<GaussianMixture> GaussianMixture::named(std::string_view name) {
    std::vector<double> coords;
    std::vector<double> stds;
    std::vector<double> weights;
    auto add = [&](double x, double y, double s, double w) {
        coords.push_back(x);
        coords.push_back(y);
        stds.push_back(s);
        weights.push_back(w);
    };
    if (name == "8gaussians") {
        // DESIGN.md section 4: means 2 (cos k pi/4, sin k pi/4), std 0.25, equal weights.
        for (int k = 0; k < 8; ++k) {
            const double angle = k * std::numbers::pi / 4.0;
            add(2.0 * std::cos(angle), 2.0 * std::sin(angle), 0.25, 1.0);
        }
    } else if (name == "rings") {
        // Three concentric rings of radius 1, 2 and 3 made of 8, 16 and 24 components (std 0.12),
        // weighted by circumference so that the density along each ring is even.
        const int counts[] = {8, 16, 24};
        for (int ring = 0; ring < 3; ++ring) {
            const double radius = ring + 1.0;
            for (int k = 0; k < counts[ring]; ++k) {
                const double angle = 2.0 * std::numbers::pi * k / counts[ring];
                add(radius * std::cos(angle), radius * std::sin(angle), 0.12, radius);
            }
        }
    } else if (name == "checkerboard") {
        // A 4 x 4 board on [-2, 2]^2; each of the 8 dark cells is filled by 2 x 2 components of
        // std 0.18 at its quarter centres, so the mass looks like soft squares.
        for (int row = 0; row < 4; ++row) {
            for (int col = 0; col < 4; ++col) {
                if ((row + col) % 2 != 0) continue;
                for (int qy = 0; qy < 2; ++qy) {
                    for (int qx = 0; qx < 2; ++qx) {
                        add(-2.0 + col + 0.25 + 0.5 * qx, -2.0 + row + 0.25 + 0.5 * qy, 0.18, 1.0);
                    }
                }
            }
        }
    } else {
        std::vector<std::string> valid;
        for (const auto& n : names()) valid.push_back(makeSpec(SpecForm::Mixture, n));
        throw UnknownNameError("model", makeSpec(SpecForm::Mixture, name), valid);
    }
    const auto k = static_cast<int64_t>(stds.size());
    auto options = torch::TensorOptions().dtype(torch::kFloat64);
    return std::make_unique<GaussianMixture>(
        makeSpec(SpecForm::Mixture, name), torch::tensor(coords, options).reshape({k, 2}),
        torch::tensor(stds, options), torch::tensor(weights, options));
}

void GaussianMixture::prepare(torch::Device device, torch::ScalarType dtype) {
    // Already there: keep the tensors (a captured CUDA graph reads them where they are).
    if (m_runMeans.defined() && m_runMeans.device() == device && m_runMeans.scalar_type() == dtype) return;
    auto options = torch::TensorOptions().device(device).dtype(dtype);
    m_runMeans = m_means.to(options);
    m_runVars = (m_stds * m_stds).to(options);
    m_runLogWeights = m_weights.log().to(options);
}

torch::Tensor GaussianMixture::denoise(const torch::Tensor& x, double alpha, double sigma) {
    if (m_runMeans.device() != x.device() || m_runMeans.scalar_type() != x.scalar_type()) {
        prepare(x.device(), x.scalar_type());
    }
    return posteriorMean(x, torch::full({1, 1}, alpha, x.options()), torch::full({1, 1}, sigma, x.options()));
}

torch::Tensor GaussianMixture::denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                                           const std::vector<double>& sigma) {
    TORCH_CHECK(static_cast<int64_t>(alpha.size()) == x.size(0) && alpha.size() == sigma.size(),
                "internal: one noise level per row");
    if (m_runMeans.device() != x.device() || m_runMeans.scalar_type() != x.scalar_type()) {
        prepare(x.device(), x.scalar_type());
    }
    const auto levels = deviceColumns({alpha, sigma}, x);
    return posteriorMean(x, levels[0].unsqueeze(1), levels[1].unsqueeze(1));
}

torch::Tensor GaussianMixture::posteriorMean(const torch::Tensor& x, const torch::Tensor& alpha,
                                             const torch::Tensor& sigma) const {
    const auto dim = static_cast<double>(m_means.size(1));
    // Component k, seen through the path: N(alpha m_k, (alpha^2 s_k^2 + sigma^2) I).
    const torch::Tensor var = alpha * alpha * m_runVars.unsqueeze(0) + sigma * sigma;         // [B or 1, K]
    const torch::Tensor diff = x.unsqueeze(1) - alpha.unsqueeze(-1) * m_runMeans.unsqueeze(0);  // [B, K, D]
    const torch::Tensor logits = m_runLogWeights - 0.5 * dim * var.log() - diff.pow(2).sum(-1) / (2.0 * var);  // [B, K]
    const torch::Tensor responsibility = torch::softmax(logits, 1);
    // E[x0 | x, k] = m_k + alpha s_k^2 (x - alpha m_k) / var_k.
    const torch::Tensor posterior = m_runMeans.unsqueeze(0) + (alpha * m_runVars / var).unsqueeze(-1) * diff;
    return (responsibility.unsqueeze(-1) * posterior).sum(1);
}

}  // namespace flowscope::core
