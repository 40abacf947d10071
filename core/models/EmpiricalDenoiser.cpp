#include "core/models/EmpiricalDenoiser.h"
#include "core/sampling/DeviceTransfer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "core/api/Errors.h"

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

// Eight stored bfloat16 values widened to float32: their bits are the high half of a float32's.
inline Float8 load8(const at::BFloat16* p) {
    using Bits8 = uint16_t __attribute__((vector_size(16)));
    using Wide8 = uint32_t __attribute__((vector_size(32)));
    Bits8 bits;
    std::memcpy(&bits, p, sizeof bits);
    const Wide8 wide = __builtin_convertvector(bits, Wide8) << 16;
    Float8 v;
    std::memcpy(&v, &wide, sizeof v);
    return v;
}

inline float widen(float v) { return v; }
inline float widen(at::BFloat16 v) { return static_cast<float>(v); }

// <a, b> for a row of the dataset a (stored as T) and a float32 row b.
template <class T>
inline float dotProduct(const T* a, const float* b, int64_t n) {
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
    for (; j < n; ++j) sum += widen(a[j]) * b[j];
    return sum;
}

inline void store8(float* p, Float8 v) { std::memcpy(p, &v, sizeof v); }

// acc += w * d, 32 values per iteration.
template <class T>
inline void addScaled(float* acc, float w, const T* d, int64_t n) {
    const Float8 scale = Float8{} + w;
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        store8(acc + j, load8(acc + j) + scale * load8(d + j));
        store8(acc + j + 8, load8(acc + j + 8) + scale * load8(d + j + 8));
        store8(acc + j + 16, load8(acc + j + 16) + scale * load8(d + j + 16));
        store8(acc + j + 24, load8(acc + j + 24) + scale * load8(d + j + 24));
    }
    for (; j + 8 <= n; j += 8) store8(acc + j, load8(acc + j) + scale * load8(d + j));
    for (; j < n; ++j) acc[j] += w * widen(d[j]);
}

// One pass over rows [begin, end): logits, online max, weights, weighted sum, while each block of
// rows is still in cache. Inlined into the entry points below, one per storage type.
template <class T>
__attribute__((always_inline)) inline void fusedSliceBody(const T* data, const float* norms, int64_t begin, int64_t end,
                                                          int64_t dim, const float* xs, int64_t batch, float scaleDot,
                                                          float scaleNorm, SoftmaxSlice* slice) {
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
                // Weights below e^-60 of the running maximum cannot change a float32 result, and
                // times a small pixel would be denormal numbers, which multiply very slowly on x86:
                // skip them.
                const float shifted = logits[b][row] - slice->max[b];
                if (shifted < -60.0f) continue;
                const float w = std::exp(shifted);
                slice->sum[b] += w;
                addScaled(acc, w, data + (blockStart + row) * dim, dim);
            }
        }
    }
}

// Cloned for FMA (dispatched on the CPU's features at load time), so the loops run 8-wide fused
// multiply-adds where the machine has them and stay portable elsewhere. (A clone for
// "arch=haswell" would dispatch on the CPU model and never run on AMD processors.) Not under the
// sanitizers: the clones' resolver runs while the program is being loaded, before their runtimes
// are up, and the instrumented resolver would call into them.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define FLOWSCOPE_FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define FLOWSCOPE_FMA_CLONES
#endif

FLOWSCOPE_FMA_CLONES void fusedSlice(const float* data, const float* norms, int64_t begin, int64_t end, int64_t dim,
                                     const float* xs, int64_t batch, float scaleDot, float scaleNorm,
                                     SoftmaxSlice* slice) {
    fusedSliceBody(data, norms, begin, end, dim, xs, batch, scaleDot, scaleNorm, slice);
}

FLOWSCOPE_FMA_CLONES void fusedSlice(const at::BFloat16* data, const float* norms, int64_t begin, int64_t end,
                                     int64_t dim, const float* xs, int64_t batch, float scaleDot, float scaleNorm,
                                     SoftmaxSlice* slice) {
    fusedSliceBody(data, norms, begin, end, dim, xs, batch, scaleDot, scaleNorm, slice);
}

// Stored bfloat16 values widened to float32 on the CPU, 8 at a time (LibTorch's conversion runs
// element by element).
FLOWSCOPE_FMA_CLONES void widenInto(const at::BFloat16* from, float* to, int64_t count) {
    int64_t j = 0;
    for (; j + 8 <= count; j += 8) store8(to + j, load8(from + j));
    for (; j < count; ++j) to[j] = widen(from[j]);
}

torch::Tensor widenedTo(const torch::Tensor& stored, torch::ScalarType dtype) {
    if (stored.scalar_type() == dtype) return stored;
    if (!stored.device().is_cpu() || stored.scalar_type() != torch::kBFloat16 || dtype != torch::kFloat32) {
        return stored.to(dtype);
    }
    const torch::Tensor source = stored.contiguous();
    torch::Tensor out = torch::empty(source.sizes(), source.options().dtype(torch::kFloat32));
    const at::BFloat16* from = source.data_ptr<at::BFloat16>();
    float* to = out.data_ptr<float>();
    at::parallel_for(0, source.numel(), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
        widenInto(from + begin, to + begin, end - begin);
    });
    return out;
}

// |d_i|^2 of each stored row, accumulated in float64 so that it carries no extra rounding into
// the logits.
template <class T>
torch::Tensor squaredNorms(const T* rows, int64_t count, int64_t dim) {
    torch::Tensor norms = torch::empty({count}, torch::kFloat64);
    double* out = norms.data_ptr<double>();
    at::parallel_for(0, count, 1024, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            double sum = 0.0;
            for (int64_t j = 0; j < dim; ++j) {
                const double value = widen(rows[i * dim + j]);
                sum += value * value;
            }
            out[i] = sum;
        }
    });
    return norms;
}

}  // namespace

EmpiricalDenoiser::EmpiricalDenoiser(std::string name, torch::Tensor data, Storage storage)
    : m_name(std::move(name)), m_storage(storage), m_data(data.to(torch::kFloat32).contiguous()) {
    if (m_data.dim() < 2 || m_data.size(0) < 1) {
        throw InvalidRequestError("the dataset for '" + m_name + "' is empty");
    }
    m_sampleShape.assign(m_data.sizes().begin() + 1, m_data.sizes().end());
    prepare(torch::kCPU, torch::kFloat32);
}

void EmpiricalDenoiser::prepare(torch::Device device, torch::ScalarType dtype) {
    const torch::ScalarType stored = m_storage == Storage::BFloat16 ? torch::kBFloat16 : dtype;
    if (m_runData.defined() && m_runData.device() == device && m_runData.scalar_type() == stored &&
        m_runNorms.scalar_type() == dtype) {
        return;
    }
    // Row by row, so that no float64 copy of the dataset is ever made.
    const torch::Tensor flat = m_data.reshape({m_data.size(0), -1});
    const torch::Tensor values = m_storage == Storage::BFloat16 ? flat.to(torch::kBFloat16) : flat;
    const torch::Tensor norms = m_storage == Storage::BFloat16
                                    ? squaredNorms(values.data_ptr<at::BFloat16>(), flat.size(0), flat.size(1))
                                    : squaredNorms(values.data_ptr<float>(), flat.size(0), flat.size(1));
    m_widened = torch::Tensor();
    m_runNorms = norms.to(torch::TensorOptions().device(device).dtype(dtype));
    m_runData = values.to(torch::TensorOptions().device(device).dtype(stored)).contiguous();
}

void EmpiricalDenoiser::widenForProducts(const torch::Tensor& x) {
    // Bfloat16 storage speeds up the fused CPU pass; the products (a GPU, larger batches,
    // float64, levels per row) would widen the whole dataset on every call, twice as slow as
    // float32 storage, so they keep one widened copy, made the first time it is needed.
    if (m_storage != Storage::BFloat16) return;
    if (!m_widened.defined() || m_widened.scalar_type() != x.scalar_type()) {
        m_widened = widenedTo(m_runData, x.scalar_type());
    }
}

void EmpiricalDenoiser::prepareRun(const torch::Tensor& x) {
    if (!m_runData.defined() || m_runData.device() != x.device() || m_runNorms.scalar_type() != x.scalar_type()) {
        prepare(x.device(), x.scalar_type());
    }
}

torch::Tensor EmpiricalDenoiser::denoise(const torch::Tensor& x, double alpha, double sigma) {
    // Logits reach 1e3-1e8 near the data: below float32 the softmax weights would be noise.
    if (x.scalar_type() != torch::kFloat32 && x.scalar_type() != torch::kFloat64) {
        return denoise(x.to(torch::kFloat32), alpha, sigma).to(x.scalar_type());
    }
    prepareRun(x);
    const torch::Tensor flatX = x.reshape({x.size(0), -1}).contiguous();
    const bool cpu32 = x.device().is_cpu() && x.scalar_type() == torch::kFloat32;
    if (cpu32 && x.size(0) <= kFusedMaxBatch) return denoiseFused(flatX, alpha, sigma).reshape(x.sizes());
    widenForProducts(x);
    return denoiseMatmul(flatX, alpha, sigma).reshape(x.sizes());
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
    prepareRun(x);
    widenForProducts(x);
    // As denoiseMatmul, with the logits' scales per row.
    std::vector<double> scaleDot, scaleNorm;
    for (size_t b = 0; b < alpha.size(); ++b) {
        scaleDot.push_back(alpha[b] / (sigma[b] * sigma[b]));
        scaleNorm.push_back(alpha[b] * alpha[b] / (2.0 * sigma[b] * sigma[b]));
    }
    const auto scales = deviceColumns({scaleDot, scaleNorm}, x);
    const torch::Tensor dots = scales[0].unsqueeze(1);
    const torch::Tensor norms = scales[1].unsqueeze(1);
    const auto logitsOf = [&](const torch::Tensor& rows, int64_t start, const torch::Tensor& chunk,
                              const torch::Tensor& chunkNorms) {
        return rows.mm(chunk.t()) * dots.narrow(0, start, rows.size(0)) -
               norms.narrow(0, start, rows.size(0)) * chunkNorms.unsqueeze(0);
    };
    return weightedSums(x.reshape({x.size(0), -1}), logitsOf, 0).reshape(x.sizes());
}

torch::Tensor EmpiricalDenoiser::denoiseMatmul(const torch::Tensor& flatX, double alpha, double sigma,
                                               int64_t datasetChunkRows) const {
    TORCH_CHECK(m_runData.defined() && m_runData.device() == flatX.device() &&
                    m_runNorms.scalar_type() == flatX.scalar_type(),
                "internal: the empirical denoiser is not prepared for this input's device and dtype");
    const double scaleDot = alpha / (sigma * sigma);
    const double scaleNorm = alpha * alpha / (2.0 * sigma * sigma);
    const auto logitsOf = [&](const torch::Tensor& rows, int64_t, const torch::Tensor& chunk,
                              const torch::Tensor& chunkNorms) {
        return torch::addmm(chunkNorms.unsqueeze(0), rows, chunk.t(), -scaleNorm, scaleDot);
    };
    return weightedSums(flatX, logitsOf, datasetChunkRows);
}

torch::Tensor EmpiricalDenoiser::weightedSums(const torch::Tensor& flatX, const LogitsOf& logitsOf,
                                              int64_t datasetChunkRows) const {
    const int64_t n = m_runData.size(0);
    // By default the whole dataset at once. Chunks would let a widened chunk stay in cache for
    // its second product, but each costs a dozen operations: on the CPU each switch between
    // LibTorch's OpenMP threads and OpenBLAS's own costs more than the cache saves, and on a GPU
    // at small batch a dozen chunks are a hundred kernel launches (bench/RESULTS.md).
    if (datasetChunkRows <= 0) datasetChunkRows = n;
    datasetChunkRows = std::min(datasetChunkRows, n);
    // Rows of the batch in chunks as well, so that the [rows, chunk] logits stay a few tens of MB.
    constexpr int64_t kBatchChunk = 256;
    std::vector<torch::Tensor> parts;
    torch::Tensor whole;  // the dataset in the run's dtype, when taken in one chunk
    for (int64_t start = 0; start < flatX.size(0); start += kBatchChunk) {
        const torch::Tensor rows = flatX.narrow(0, start, std::min(kBatchChunk, flatX.size(0) - start));
        if (datasetChunkRows == n) {
            if (!whole.defined()) {
                whole = m_widened.defined() && m_widened.scalar_type() == flatX.scalar_type()
                            ? m_widened
                            : widenedTo(m_runData, flatX.scalar_type());
            }
            parts.push_back(torch::softmax(logitsOf(rows, start, whole, m_runNorms), 1).mm(whole));
            continue;
        }
        // Online softmax across the chunks: the running maximum of each row's logits, the sum of
        // its weights and the weighted sum of the data, rescaled whenever the maximum grows.
        // A weight (or a rescaling factor) below e^-60 of the maximum's (e^-600 in float64) cannot
        // change a sum in that precision, and multiplied by a small pixel it would be a denormal
        // number, which the CPU computes many times slower: it is set to exactly 0.
        const double negligible = flatX.scalar_type() == torch::kFloat64 ? -600.0 : -60.0;
        const auto weightsOf = [negligible](torch::Tensor shifted) {
            return torch::threshold_(shifted, negligible, -std::numeric_limits<double>::infinity()).exp_();
        };
        torch::Tensor runningMax, total, sums;
        for (int64_t first = 0; first < n; first += datasetChunkRows) {
            const int64_t count = std::min(datasetChunkRows, n - first);
            const torch::Tensor chunk = widenedTo(m_runData.narrow(0, first, count), flatX.scalar_type());
            const torch::Tensor logits = logitsOf(rows, start, chunk, m_runNorms.narrow(0, first, count));
            const torch::Tensor chunkMax = logits.amax(1, true);
            if (!runningMax.defined()) {
                runningMax = chunkMax;
                const torch::Tensor weights = weightsOf(logits - runningMax);
                total = weights.sum(1, true);
                sums = weights.mm(chunk);
            } else {
                const torch::Tensor newMax = torch::maximum(runningMax, chunkMax);
                const torch::Tensor rescale = weightsOf(runningMax - newMax);
                const torch::Tensor weights = weightsOf(logits - newMax);
                total = total * rescale + weights.sum(1, true);
                sums = torch::addmm(sums * rescale, weights, chunk);
                runningMax = newMax;
            }
        }
        parts.push_back(sums / total);
    }
    return parts.size() == 1 ? parts.front() : torch::cat(parts, 0);
}

torch::Tensor EmpiricalDenoiser::denoiseFused(const torch::Tensor& flatX, double alpha, double sigma) const {
    TORCH_CHECK(flatX.scalar_type() == torch::kFloat32 && flatX.device().is_cpu() &&
                    flatX.size(0) <= kFusedMaxBatch,
                "the fused empirical denoiser takes float32 CPU input of at most ", kFusedMaxBatch, " rows");
    TORCH_CHECK(m_runData.defined() && m_runData.device().is_cpu() && m_runNorms.scalar_type() == torch::kFloat32,
                "internal: the empirical denoiser is not prepared for float32 on the CPU");
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
    const bool bfloat16 = m_runData.scalar_type() == torch::kBFloat16;
    const float* norms = m_runNorms.data_ptr<float>();
    const float* xs = x.data_ptr<float>();
    at::parallel_for(0, sliceCount, 1, [&](int64_t first, int64_t last) {
        for (int64_t s = first; s < last; ++s) {
            const int64_t begin = n * s / sliceCount;
            const int64_t end = n * (s + 1) / sliceCount;
            if (bfloat16) {
                fusedSlice(m_runData.data_ptr<at::BFloat16>(), norms, begin, end, dim, xs, batch, scaleDot, scaleNorm,
                           &slices[s]);
            } else {
                fusedSlice(m_runData.data_ptr<float>(), norms, begin, end, dim, xs, batch, scaleDot, scaleNorm,
                           &slices[s]);
            }
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
