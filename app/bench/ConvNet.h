#pragma once

// The benchmark's TorchScript networks, built here rather than downloaded: a stem convolution, a
// time embedding added per channel, `blocks` residual 3x3 convolutions (h += conv(relu(h))) and
// an output convolution, saved as a FlowScope bundle (velocity prediction on the linear path) so
// that the engine, the Python baseline and torchdiffeq all run the very same file.

#include <cstdint>
#include <string>

#include <torch/types.h>

namespace flowscope::bench {

struct ConvNetShape {
    int64_t channels = 64;  // hidden channels
    int64_t blocks = 6;     // residual 3x3 convolutions
    int64_t imageChannels = 1;
    int64_t size = 28;      // square images
};

// Writes DIR/model.pt and DIR/flowscope.json (DIR is created). Weights are seeded and scaled so
// that activations stay of order one through the residual stack. Returns the model file.
std::string writeConvNetBundle(const std::string& directory, const ConvNetShape& shape, uint64_t seed);

// Floating-point operations of one forward pass for a batch (multiply-adds count two).
double convNetFlops(const ConvNetShape& shape, int64_t batch);

}  // namespace flowscope::bench
