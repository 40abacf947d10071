#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/models/Architecture.h"

namespace flowscope::core {

// A network v(x, t) with a sinusoidal time embedding: an MLP for points, a compact UNet (residual
// blocks, group norm, skip connections) for images. forward takes x [B, ...sampleShape] and t [B];
// a conditional network (architecture().classes > 0) also the class of each row, labels [B]
// int64 with -1 for the null class (undefined: every row null), whose embedding joins t's.
class FlowNet : public torch::nn::Module {
public:
    virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                                  const torch::Tensor& labels = {}) = 0;
    const Architecture& architecture() const { return m_architecture; }
    int64_t parameterCount() const;

protected:
    explicit FlowNet(Architecture architecture) : m_architecture(std::move(architecture)) {}

private:
    Architecture m_architecture;
};

// The number of parameters makeFlowNet(architecture) holds, computed without building it, so that
// an architecture can be checked against its weights and this machine's memory first.
int64_t parameterCountOf(const Architecture& architecture);

// Weights are initialized from `seed` (LibTorch's default generator is left untouched). Refuses
// (InvalidRequestError) a network whose parameters alone would need over half this machine's memory.
std::shared_ptr<FlowNet> makeFlowNet(const Architecture& architecture, uint64_t seed);

}  // namespace flowscope::core
