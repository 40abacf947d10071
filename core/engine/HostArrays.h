#pragma once
// Conversions between LibTorch tensors and the facade's HostArray (float32, C order, host):
// where the engine hands results to front ends and takes their data.
#include <torch/types.h>

#include "core/api/Engine.h"

namespace flowscope::core {

// A float32 copy on the host, whatever the tensor's device and type.
inline HostArray toHostArray(const torch::Tensor& tensor) {
    const torch::Tensor cpu = tensor.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    HostArray array;
    array.shape.assign(cpu.sizes().begin(), cpu.sizes().end());
    array.values.assign(cpu.data_ptr<float>(), cpu.data_ptr<float>() + cpu.numel());
    return array;
}

// A float32 CPU tensor holding a copy of the values.
inline torch::Tensor fromHostArray(const HostArray& array) {
    return torch::from_blob(const_cast<float*>(array.values.data()), array.shape, torch::kFloat32).clone();
}

}  // namespace flowscope::core
