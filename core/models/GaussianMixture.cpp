#include "core/models/GaussianMixture.h"
#include "core/sampling/DeviceTransfer.h"

#include <cmath>
#include <limits>
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
    std::vector<int64_t> classes;  // per component
    std::vector<std::string> classNames;
    auto add = [&](double x, double y, double s, double w, int64_t c) {
        coords.push_back(x);
        coords.push_back(y);
        stds.push_back(s);
        weights.push_back(w);
        classes.push_back(c);
    };
    // Compass directions from the origin, counter-clockwise from +x.
    const std::vector<std::string> compass{"east", "north-east", "north", "north-west",
                                           "west", "south-west", "south", "south-east"};
    if (name == "8gaussians") {
        // DESIGN.md section 4: means 2 (cos k pi/4, sin k pi/4), std 0.25, equal weights. One
        // class per component, named by its direction.
        for (int k = 0; k < 8; ++k) {
            const double angle = k * std::numbers::pi / 4.0;
            add(2.0 * std::cos(angle), 2.0 * std::sin(angle), 0.25, 1.0, k);
        }
        classNames = compass;
    } else if (name == "rings") {
        // Three concentric rings of radius 1, 2 and 3 made of 8, 16 and 24 components (std 0.12),
        // weighted by circumference so that the density along each ring is even. One class per
        // ring.
        const int counts[] = {8, 16, 24};
        for (int ring = 0; ring < 3; ++ring) {
            const double radius = ring + 1.0;
            for (int k = 0; k < counts[ring]; ++k) {
                const double angle = 2.0 * std::numbers::pi * k / counts[ring];
                add(radius * std::cos(angle), radius * std::sin(angle), 0.12, radius, ring);
            }
        }
        classNames = {"inner", "middle", "outer"};
    } else if (name == "checkerboard") {
        // A 4 x 4 board on [-2, 2]^2; each of the 8 dark cells is filled by 2 x 2 components of
        // std 0.18 at its quarter centres, so the mass looks like soft squares. One class per
        // quadrant of the board (two dark cells each, on a diagonal).
        for (int row = 0; row < 4; ++row) {
            for (int col = 0; col < 4; ++col) {
                if ((row + col) % 2 != 0) continue;
                const int64_t quadrant = (row >= 2 ? 0 : 2) + (col >= 2 ? 0 : 1);  // NE NW SE SW
                for (int qy = 0; qy < 2; ++qy) {
                    for (int qx = 0; qx < 2; ++qx) {
                        add(-2.0 + col + 0.25 + 0.5 * qx, -2.0 + row + 0.25 + 0.5 * qy, 0.18, 1.0, quadrant);
                    }
                }
            }
        }
        classNames = {"north-east", "north-west", "south-east", "south-west"};
    } else {
        std::vector<std::string> valid;
        for (const auto& n : names()) valid.push_back(makeSpec(SpecForm::Mixture, n));
        throw UnknownNameError("model", makeSpec(SpecForm::Mixture, name), valid);
    }
    const auto k = static_cast<int64_t>(stds.size());
    auto options = torch::TensorOptions().dtype(torch::kFloat64);
    auto mixture = std::make_unique<GaussianMixture>(makeSpec(SpecForm::Mixture, name),
                                                     torch::tensor(coords, options).reshape({k, 2}),
                                                     torch::tensor(stds, options), torch::tensor(weights, options));
    mixture->setClasses(std::move(classNames), std::move(classes));
    return mixture;
}

void GaussianMixture::setClasses(std::vector<std::string> names, std::vector<int64_t> componentClasses) {
    TORCH_CHECK(static_cast<int64_t>(componentClasses.size()) == m_means.size(0), "internal: one class per component");
    for (const int64_t c : componentClasses) {
        TORCH_CHECK(c >= 0 && c < static_cast<int64_t>(names.size()), "internal: component class out of range");
    }
    m_classNames = std::move(names);
    m_componentClasses = std::move(componentClasses);
}

void GaussianMixture::setRowClasses(std::vector<int64_t> classes) {
    m_rowClasses = std::move(classes);
    m_rowMask = torch::Tensor();
    if (m_rowClasses.empty()) return;
    TORCH_CHECK(!m_classNames.empty(), "internal: '", m_name, "' has no classes");
    const auto components = static_cast<int64_t>(m_componentClasses.size());
    std::vector<double> mask;
    mask.reserve(m_rowClasses.size() * m_componentClasses.size());
    for (const int64_t c : m_rowClasses) {
        TORCH_CHECK(c == kNullClass || (c >= 0 && c < static_cast<int64_t>(m_classNames.size())),
                    "internal: class index out of range");
        for (const int64_t component : m_componentClasses) {
            const bool in = c == kNullClass || component == c;
            mask.push_back(in ? 0.0 : -std::numeric_limits<double>::infinity());
        }
    }
    m_rowMask = torch::tensor(mask, torch::kFloat64).reshape({static_cast<int64_t>(m_rowClasses.size()), components});
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
    torch::Tensor logits = m_runLogWeights - 0.5 * dim * var.log() - diff.pow(2).sum(-1) / (2.0 * var);  // [B, K]
    if (m_rowMask.defined()) {
        TORCH_CHECK(m_rowMask.size(0) == x.size(0), "internal: one class per row");
        logits = logits + m_rowMask.to(logits.options(), /*non_blocking=*/true);
    }
    const torch::Tensor responsibility = torch::softmax(logits, 1);
    // E[x0 | x, k] = m_k + alpha s_k^2 (x - alpha m_k) / var_k.
    const torch::Tensor posterior = m_runMeans.unsqueeze(0) + (alpha * m_runVars / var).unsqueeze(-1) * diff;
    return (responsibility.unsqueeze(-1) * posterior).sum(1);
}

}  // namespace flowscope::core
