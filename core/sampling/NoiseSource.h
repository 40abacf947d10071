#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Generator.h>
#include <torch/types.h>

namespace flowscope::core {

// The noise of a batch, reproducible across machines and LibTorch versions: sample k has its own
// CPU generator seeded with seed + k and draws torch::randn({C, H, W}) in float32. Stochastic
// samplers keep drawing from the same generators, so one sample of a batch can be regenerated alone.
class NoiseSource {
public:
    NoiseSource(std::vector<int64_t> sampleShape, uint64_t seed, int64_t batch);

    // The next draw for every sample: [batch, ...sampleShape], float32, CPU.
    torch::Tensor draw();

    // Advances every generator past `count` draws (a fork continues its parent's generators).
    void skip(int count);
    // Draws made so far.
    int draws() const { return m_draws; }

    uint64_t seed() const { return m_seed; }
    int64_t batch() const { return static_cast<int64_t>(m_generators.size()); }

private:
    std::vector<int64_t> m_sampleShape;
    uint64_t m_seed;
    std::vector<at::Generator> m_generators;
    int m_draws = 0;
};

}  // namespace flowscope::core
