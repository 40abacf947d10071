#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/Model.h"

namespace flowscope::core {

// The ideal denoiser of a finite dataset d_1..d_N:
//   x̂0 = sum_i softmax_i(-|x - alpha d_i|^2 / (2 sigma^2)) d_i.
// It reproduces training images exactly, which makes it the reference "perfect model" for every
// path. Logits drop the |x|^2 term (constant per row), so each is alpha/sigma^2 <x, d_i> -
// alpha^2/(2 sigma^2) |d_i|^2: one matrix product, a softmax and a second matrix product.
// On the CPU at small batch, a fused single pass with an online softmax replaces the two
// products, so the dataset is read from memory once per evaluation.
class EmpiricalDenoiser final : public Model {
public:
    // data: [N, ...sampleShape] in engine space ([-1, 1] for images), any floating dtype.
    EmpiricalDenoiser(std::string name, torch::Tensor data);

    std::string name() const override { return m_name; }
    std::vector<int64_t> sampleShape() const override { return m_sampleShape; }
    torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) override;
    torch::Tensor denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                              const std::vector<double>& sigma) override;
    void prepare(torch::Device device, torch::ScalarType dtype) override;

    int64_t size() const { return m_data.size(0); }
    const torch::Tensor& data() const { return m_data; }

    // The two strategies, public so that tests and the benchmark can compare them directly.
    torch::Tensor denoiseFused(const torch::Tensor& flatX, double alpha, double sigma) const;
    torch::Tensor denoiseMatmul(const torch::Tensor& flatX, double alpha, double sigma) const;

    // Largest batch for which the fused CPU pass is used.
    static constexpr int64_t kFusedMaxBatch = 4;

private:
    // Softmax of the logits of each chunk of rows (logitsOf(rows, first row)), times the data.
    using LogitsOf = std::function<torch::Tensor(const torch::Tensor& rows, int64_t start)>;
    torch::Tensor weightedSums(const torch::Tensor& flatX, const LogitsOf& logitsOf) const;

    std::string m_name;
    torch::Tensor m_data;  // [N, ...], float32, CPU: the master copy
    std::vector<int64_t> m_sampleShape;
    torch::Tensor m_runData;   // [N, D] on the run's device and dtype
    torch::Tensor m_runNorms;  // [N], |d_i|^2
};

}  // namespace flowscope::core
