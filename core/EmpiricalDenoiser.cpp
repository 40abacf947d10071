#include "core/EmpiricalDenoiser.h"
#include "core/HostTensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "core/Errors.h"

namespace flowscope::core {
namespace {

// Running state of an online softmax over a slice of the dataset, for up to kFusedMaxBatch rows.
struct SoftmaxSlice {
    float max[EmpiricalDenoiser::kFusedMaxBatch];
    float sum[EmpiricalDenoiser::kFusedMaxBatch];
    std::vector<float> acc;  // [batch, dim]
};

constexpr int64_t kBlockRows = 32;

// A dot product with four independent 8-wide accumulators, so that consecutive multiply-adds do
// not wait on each other. GCC's vector extension compiles to AVX/FMA in the `fma` clone below
// and to pairs of SSE registers elsewhere.
using Float8 = float __attribute__((vector_size(32)));

inline Float8 load8(const float* p) {
    Float8 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline float dotProduct(const float* a, const float* b, int64_t n) {
    Float8 acc0{}, acc1{}, acc2{}, acc3{};
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        acc0 += load8(a + j) * load8(b + j);
        acc1 += load8(a + j + 8) * load8(b + j + 8);
        acc2 += load8(a + j + 16) * load8(b + j + 16);
        acc3 += load8(a + j + 24) * load8(b + j + 24);
    }
    for (; j + 8 <= n; j += 8) acc0 += load8(a + j) * load8(b + j);
    const Float8 acc = (acc0 + acc1) + (acc2 + acc3);
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < n; ++j) sum += a[j] * b[j];
    return sum;
}

inline void store8(float* p, Float8 v) { std::memcpy(p, &v, sizeof v); }

// acc += w * d, 32 floats per iteration.
inline void addScaled(float* acc, float w, const float* d, int64_t n) {
    const Float8 scale = Float8{} + w;
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        store8(acc + j, load8(acc + j) + scale * load8(d + j));
        store8(acc + j + 8, load8(acc + j + 8) + scale * load8(d + j + 8));
        store8(acc + j + 16, load8(acc + j + 16) + scale * load8(d + j + 16));
        store8(acc + j + 24, load8(acc + j + 24) + scale * load8(d + j + 24));
    }
    for (; j + 8 <= n; j += 8) store8(acc + j, load8(acc + j) + scale * load8(d + j));
    for (; j < n; ++j) acc[j] += w * d[j];
}

// One pass over rows [begin, end): logits, online max, weights, weighted sum, while each block of
// rows is still in cache. Cloned for FMA (dispatched on the CPU's features at load time), so the
// loops run 8-wide fused multiply-adds where the machine has them and stay portable elsewhere.
// (A clone for "arch=haswell" would dispatch on the CPU model and never run on AMD processors.)
// Not under the sanitizers: the clones' resolver runs while the program is being loaded, before
// their runtimes are up, and the instrumented resolver would call into them.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("fma", "default")))
#endif
void fusedSlice(const float* data, const float* norms, int64_t begin, int64_t end, int64_t dim,
                const float* xs, int64_t batch, float scaleDot, float scaleNorm, SoftmaxSlice* slice) {
    float logits[EmpiricalDenoiser::kFusedMaxBatch][kBlockRows];
    for (int64_t blockStart = begin; blockStart < end; blockStart += kBlockRows) {
        const int64_t rows = std::min(kBlockRows, end - blockStart);
        for (int64_t b = 0; b < batch; ++b) {
            const float* x = xs + b * dim;
            float blockMax = -std::numeric_limits<float>::infinity();
            for (int64_t r = 0; r < rows; ++r) {
                const float logit = scaleDot * dotProduct(data + (blockStart + r) * dim, x, dim) -
                                    scaleNorm * norms[blockStart + r];
                logits[b][r] = logit;
                blockMax = std::max(blockMax, logit);
            }
            float* acc = slice->acc.data() + b * dim;
            if (blockMax > slice->max[b]) {
                const float rescale = std::exp(slice->max[b] - blockMax);
                slice->sum[b] *= rescale;
#pragma omp simd
                for (int64_t j = 0; j < dim; ++j) acc[j] *= rescale;
                slice->max[b] = blockMax;
            }
            for (int64_t row = 0; row < rows; ++row) {
                // Weights below e^-80 of the running maximum cannot change a float32 result, and
                // would be denormal numbers, which multiply very slowly on x86: skip them.
                const float shifted = logits[b][row] - slice->max[b];
                if (shifted < -80.0f) continue;
                const float w = std::exp(shifted);
                slice->sum[b] += w;
                addScaled(acc, w, data + (blockStart + row) * dim, dim);
            }
        }
    }
}

}  // namespace

EmpiricalDenoiser::EmpiricalDenoiser(std::string name, torch::Tensor data)
    : m_name(std::move(name)), m_data(data.to(torch::kFloat32).contiguous()) {
    if (m_data.dim() < 2 || m_data.size(0) < 1) {
        throw InvalidRequestError("the dataset for '" + m_name + "' is empty");
    }
    m_sampleShape.assign(m_data.sizes().begin() + 1, m_data.sizes().end());
    prepare(torch::kCPU, torch::kFloat32);
}

void EmpiricalDenoiser::prepare(torch::Device device, torch::ScalarType dtype) {
    if (m_runData.defined() && m_runData.device() == device && m_runData.scalar_type() == dtype) return;
    // Norms are accumulated in float64 so that |d|^2 carries no extra rounding into the logits,
    // row by row so that no float64 copy of the dataset is ever made.
    const torch::Tensor flat = m_data.reshape({m_data.size(0), -1});
    torch::Tensor norms = torch::empty({flat.size(0)}, torch::kFloat64);
    const float* rows = flat.data_ptr<float>();
    double* out = norms.data_ptr<double>();
    const int64_t dim = flat.size(1);
    at::parallel_for(0, flat.size(0), 1024, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            double sum = 0.0;
            for (int64_t j = 0; j < dim; ++j) sum += double(rows[i * dim + j]) * rows[i * dim + j];
            out[i] = sum;
        }
    });
    m_runNorms = norms.to(torch::TensorOptions().device(device).dtype(dtype));
    m_runData = flat.to(torch::TensorOptions().device(device).dtype(dtype)).contiguous();
}

torch::Tensor EmpiricalDenoiser::denoise(const torch::Tensor& x, double alpha, double sigma) {
    // Logits reach 1e3-1e8 near the data: below float32 the softmax weights would be noise.
    if (x.scalar_type() != torch::kFloat32 && x.scalar_type() != torch::kFloat64) {
        return denoise(x.to(torch::kFloat32), alpha, sigma).to(x.scalar_type());
    }
    if (m_runData.device() != x.device() || m_runData.scalar_type() != x.scalar_type()) {
        prepare(x.device(), x.scalar_type());
    }
    const torch::Tensor flatX = x.reshape({x.size(0), -1}).contiguous();
    const bool fused = x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.size(0) <= kFusedMaxBatch;
    const torch::Tensor out = fused ? denoiseFused(flatX, alpha, sigma) : denoiseMatmul(flatX, alpha, sigma);
    return out.reshape(x.sizes());
}

torch::Tensor EmpiricalDenoiser::denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                                             const std::vector<double>& sigma) {
    TORCH_CHECK(static_cast<int64_t>(alpha.size()) == x.size(0) && alpha.size() == sigma.size(),
                "internal: one noise level per row");
    if (!alpha.empty() && std::adjacent_find(alpha.begin(), alpha.end(), std::not_equal_to<>()) == alpha.end() &&
        std::adjacent_find(sigma.begin(), sigma.end(), std::not_equal_to<>()) == sigma.end()) {
        return denoise(x, alpha.front(), sigma.front());  // one level: the fused pass where it applies
    }
    if (x.scalar_type() != torch::kFloat32 && x.scalar_type() != torch::kFloat64) {
        return denoiseRows(x.to(torch::kFloat32), alpha, sigma).to(x.scalar_type());
    }
    if (m_runData.device() != x.device() || m_runData.scalar_type() != x.scalar_type()) {
        prepare(x.device(), x.scalar_type());
    }
    // As denoiseMatmul, with the logits' scales per row.
    std::vector<double> scaleDot, scaleNorm;
    for (size_t b = 0; b < alpha.size(); ++b) {
        scaleDot.push_back(alpha[b] / (sigma[b] * sigma[b]));
        scaleNorm.push_back(alpha[b] * alpha[b] / (2.0 * sigma[b] * sigma[b]));
    }
    const torch::Tensor dots = deviceValues(scaleDot, x).unsqueeze(1);
    const torch::Tensor norms = deviceValues(scaleNorm, x).unsqueeze(1);
    return weightedSums(x.reshape({x.size(0), -1}), [&](const torch::Tensor& rows, int64_t start) {
               return rows.mm(m_runData.t()) * dots.narrow(0, start, rows.size(0)) -
                      norms.narrow(0, start, rows.size(0)) * m_runNorms.unsqueeze(0);
           })
        .reshape(x.sizes());
}

torch::Tensor EmpiricalDenoiser::denoiseMatmul(const torch::Tensor& flatX, double alpha, double sigma) const {
    const double scaleDot = alpha / (sigma * sigma);
    const double scaleNorm = alpha * alpha / (2.0 * sigma * sigma);
    return weightedSums(flatX, [&](const torch::Tensor& rows, int64_t) {
        return torch::addmm(m_runNorms.unsqueeze(0), rows, m_runData.t(), -scaleNorm, scaleDot);
    });
}

torch::Tensor EmpiricalDenoiser::weightedSums(const torch::Tensor& flatX, const LogitsOf& logitsOf) const {
    // Rows of the batch in chunks, so that the [rows, N] logits stay a few tens of MB.
    constexpr int64_t kChunk = 256;
    std::vector<torch::Tensor> parts;
    for (int64_t start = 0; start < flatX.size(0); start += kChunk) {
        const torch::Tensor rows = flatX.narrow(0, start, std::min(kChunk, flatX.size(0) - start));
        parts.push_back(torch::softmax(logitsOf(rows, start), 1).mm(m_runData));
    }
    return parts.size() == 1 ? parts.front() : torch::cat(parts, 0);
}

torch::Tensor EmpiricalDenoiser::denoiseFused(const torch::Tensor& flatX, double alpha, double sigma) const {
    TORCH_CHECK(flatX.scalar_type() == torch::kFloat32 && flatX.device().is_cpu() &&
                    flatX.size(0) <= kFusedMaxBatch,
                "the fused empirical denoiser takes float32 CPU input of at most ", kFusedMaxBatch, " rows");
    const int64_t batch = flatX.size(0);
    const int64_t dim = m_runData.size(1);
    const int64_t n = m_runData.size(0);
    const torch::Tensor x = flatX.contiguous();
    const auto scaleDot = static_cast<float>(alpha / (sigma * sigma));
    const auto scaleNorm = static_cast<float>(alpha * alpha / (2.0 * sigma * sigma));

    // A few slices per thread, merged afterwards with the usual max/sum rescaling.
    const int64_t sliceCount = std::max<int64_t>(1, std::min<int64_t>(n / 1024, 4 * at::get_num_threads()));
    std::vector<SoftmaxSlice> slices(sliceCount);
    for (auto& slice : slices) {
        std::fill(std::begin(slice.max), std::end(slice.max), -std::numeric_limits<float>::infinity());
        std::fill(std::begin(slice.sum), std::end(slice.sum), 0.0f);
        slice.acc.assign(batch * dim, 0.0f);
    }
    const float* data = m_runData.data_ptr<float>();
    const float* norms = m_runNorms.data_ptr<float>();
    const float* xs = x.data_ptr<float>();
    at::parallel_for(0, sliceCount, 1, [&](int64_t first, int64_t last) {
        for (int64_t s = first; s < last; ++s) {
            const int64_t begin = n * s / sliceCount;
            const int64_t end = n * (s + 1) / sliceCount;
            fusedSlice(data, norms, begin, end, dim, xs, batch, scaleDot, scaleNorm, &slices[s]);
        }
    });

    torch::Tensor out = torch::zeros({batch, dim}, torch::kFloat32);
    float* result = out.data_ptr<float>();
    for (int64_t b = 0; b < batch; ++b) {
        float globalMax = -std::numeric_limits<float>::infinity();
        for (const auto& slice : slices) globalMax = std::max(globalMax, slice.max[b]);
        double total = 0.0;
        std::vector<double> acc(dim, 0.0);
        for (const auto& slice : slices) {
            const double scale = std::exp(double(slice.max[b]) - double(globalMax));
            total += scale * slice.sum[b];
            const float* part = slice.acc.data() + b * dim;
            for (int64_t j = 0; j < dim; ++j) acc[j] += scale * part[j];
        }
        for (int64_t j = 0; j < dim; ++j) result[b * dim + j] = static_cast<float>(acc[j] / total);
    }
    return out;
}

}  // namespace flowscope::core
