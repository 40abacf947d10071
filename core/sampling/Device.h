#pragma once

#include <string>
#include <string_view>

#include <torch/types.h>

namespace flowscope::core {

// `auto` (CUDA when this LibTorch build and machine have it, else CPU), `cpu` or `cuda`.
// Asking for `cuda` where there is none is an error that says so.
torch::Device resolveDevice(std::string_view name);
// `float32` (default), `float64` (CPU reference solves) or `bfloat16` (CUDA only).
torch::ScalarType resolveDtype(std::string_view name, const torch::Device& device);
// "CUDA: <GPU name>" or "CPU, N threads".
std::string describeDevice(const torch::Device& device);
// Once per process: LibTorch's intra-op thread count to the machine's cores, and glibc's
// allocator kept from returning LibTorch's short-lived activation buffers to the kernel.
void configureThreads();
bool cudaAvailable();
// This machine's physical memory in bytes (0 when the system does not say).
double physicalMemoryBytes();
// Refuses (InvalidRequestError) work that would need more than `share` of this machine's memory,
// before any of it is allocated: `what` needs `bytes`; `remedy` says what to ask for instead.
void checkFitsInMemory(double bytes, double share, const std::string& what, const std::string& remedy);

}  // namespace flowscope::core
