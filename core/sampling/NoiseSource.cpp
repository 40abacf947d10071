#include "core/sampling/NoiseSource.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace flowscope::core {

NoiseSource::NoiseSource(std::vector<int64_t> sampleShape, uint64_t seed, int64_t batch)
    : m_sampleShape(std::move(sampleShape)), m_seed(seed) {
    m_generators.reserve(batch);
    for (int64_t k = 0; k < batch; ++k) m_generators.push_back(at::detail::createCPUGenerator(seed + k));
}

torch::Tensor NoiseSource::draw() {
    ++m_draws;
    std::vector<torch::Tensor> samples;
    samples.reserve(m_generators.size());
    for (auto& generator : m_generators) {
        samples.push_back(torch::randn(m_sampleShape, generator, torch::TensorOptions().dtype(torch::kFloat32)));
    }
    return torch::stack(samples);
}

void NoiseSource::skip(int count) {
    for (int k = 0; k < count; ++k) draw();
}

}  // namespace flowscope::core
