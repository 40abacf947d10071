#pragma once
// Host values to the device without waiting for it (pinned copies on a GPU): what the
// samplers use to hand per-step numbers to their kernels.
#include <vector>

#include <torch/types.h>

namespace flowscope::core {

// Host values as a tensor on `like`'s device: floating values in like's dtype, whole numbers as
// int64 indices. On a GPU the copy goes from pinned memory without waiting for the device (a
// plain copy from pageable memory would wait for every kernel queued before it).
inline torch::Tensor deviceValues(const std::vector<double>& values, const torch::Tensor& like) {
    torch::Tensor host = torch::tensor(values, torch::kFloat64).to(like.scalar_type());
    if (!like.is_cuda()) return host;
    return host.pin_memory().to(like.device(), /*non_blocking=*/true);
}
// Several columns of host values (all of one length) as tensors on `like`'s device, in one copy.
inline std::vector<torch::Tensor> deviceColumns(const std::vector<std::vector<double>>& columns, const torch::Tensor& like) {
    std::vector<double> values;
    for (const auto& column : columns) values.insert(values.end(), column.begin(), column.end());
    const auto count = static_cast<int64_t>(columns.size());
    return deviceValues(values, like).view({count, count > 0 ? static_cast<int64_t>(values.size()) / count : 0}).unbind(0);
}
inline torch::Tensor deviceIndex(const std::vector<int64_t>& values, const torch::Device& device) {
    torch::Tensor host = torch::tensor(values, torch::kLong);
    if (!device.is_cuda()) return host;
    return host.pin_memory().to(device, /*non_blocking=*/true);
}

// A CPU tensor moved to `options` (device and dtype), on a GPU through pinned memory without
// waiting for the device.
inline torch::Tensor toDeviceAsync(const torch::Tensor& host, const torch::TensorOptions& options) {
    if (!options.device().is_cuda()) return host.to(options);
    return host.to(options.dtype().toScalarType()).pin_memory().to(options.device(), /*non_blocking=*/true);
}

}  // namespace flowscope::core
