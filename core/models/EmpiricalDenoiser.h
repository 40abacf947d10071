#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/sampling/Model.h"

namespace flowscope::core {

// The ideal denoiser of a finite dataset d_1..d_N:
//   x̂0 = sum_i softmax_i(-|x - alpha d_i|^2 / (2 sigma^2)) d_i.
// It reproduces training images exactly, which makes it the reference "perfect model" for every
// path. Logits drop the |x|^2 term (constant per row), so each is alpha/sigma^2 <x, d_i> -
// alpha^2/(2 sigma^2) |d_i|^2: one matrix product, a softmax and a second matrix product.
// On the CPU at small batch, a fused single pass with an online softmax replaces the two
// products, so the dataset is read from memory once per evaluation.
//
// Storage::BFloat16 keeps the dataset in bfloat16 (half the bytes to read per evaluation) and
// computes in float32 or float64 as before: the denoiser is then exactly the ideal denoiser of
// the bfloat16-rounded dataset (pixels off by at most 2^-9 of their magnitude). The fused CPU
// pass (batches of up to kFusedMaxBatch) reads the bfloat16 rows directly; the products run over
// one copy widened to the run's dtype, kept for them, or, on request, over chunks of the dataset
// each widened while it is in cache.
class EmpiricalDenoiser final : public Model {
public:
    enum class Storage { Float32, BFloat16 };

    // data: [N, ...sampleShape] in engine space ([-1, 1] for images), any floating dtype.
    EmpiricalDenoiser(std::string name, torch::Tensor data, Storage storage = Storage::Float32);

    std::string name() const override { return m_name; }
    std::vector<int64_t> sampleShape() const override { return m_sampleShape; }
    torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) override;
    torch::Tensor denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                              const std::vector<double>& sigma) override;
    void prepare(torch::Device device, torch::ScalarType dtype) override;

    int64_t size() const { return m_data.size(0); }
    const torch::Tensor& data() const { return m_data; }
    Storage storage() const { return m_storage; }

    // The strategies, public so that tests and the benchmark can compare them directly.
    // denoiseFused: CPU, float32 input of at most kFusedMaxBatch rows, one pass over the dataset.
    // denoiseMatmul: the two products over chunks of datasetChunkRows rows of the dataset, with
    // an online softmax across them (0, the default: the whole dataset at once).
    torch::Tensor denoiseFused(const torch::Tensor& flatX, double alpha, double sigma) const;
    torch::Tensor denoiseMatmul(const torch::Tensor& flatX, double alpha, double sigma,
                                int64_t datasetChunkRows = 0) const;

    // Largest batch for which the fused CPU pass is used.
    static constexpr int64_t kFusedMaxBatch = 4;
    // A widened chunk's size the benchmark measures: well inside a GPU's L2 cache.
    static constexpr int64_t kChunkBytes = int64_t{16} << 20;

private:
    // The logits of some rows of the batch (from row `start` of it) against a chunk of the dataset
    // (widened to the run's dtype) whose norms are `norms`.
    using LogitsOf = std::function<torch::Tensor(const torch::Tensor& rows, int64_t start, const torch::Tensor& chunk,
                                                 const torch::Tensor& norms)>;
    // sum_i softmax_i(logits) d_i, the softmax taken online across chunks of the dataset.
    torch::Tensor weightedSums(const torch::Tensor& flatX, const LogitsOf& logitsOf, int64_t datasetChunkRows) const;
    void prepareRun(const torch::Tensor& x);
    void widenForProducts(const torch::Tensor& x);

    std::string m_name;
    Storage m_storage;
    torch::Tensor m_data;  // [N, ...], float32, CPU: the master copy
    std::vector<int64_t> m_sampleShape;
    torch::Tensor m_runData;   // [N, D] on the run's device, in the run's dtype or in bfloat16
    torch::Tensor m_runNorms;  // [N], |d_i|^2 of the stored values, in the run's dtype
    torch::Tensor m_widened;   // bfloat16 storage: the data in the run's dtype, once products need it
};

}  // namespace flowscope::core
