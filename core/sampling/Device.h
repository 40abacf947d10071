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
// The memory FlowScope may use, in bytes: this machine's physical memory, or less where the
// process's control group (a container, a systemd slice) sets a limit, or less again where the
// environment variable FLOWSCOPE_MEMORY_LIMIT names a size (bytes, or a number with K, M, G or T:
// "8G"). 0 when the system does not say. A FLOWSCOPE_MEMORY_LIMIT that is no size throws
// InvalidRequestError saying how to write it.
double machineMemoryBytes();
// The memory free now for FlowScope, in bytes: the kernel's estimate of what can be allocated
// without swapping (MemAvailable, which counts the page cache, memory-mapped checkpoints
// included, as free), or less where the control group's limit leaves less. 0 when the system
// does not say.
double freeMemoryBytes();
// What a part of the CPU's memory may take now: `share` of machineMemoryBytes(), or what is free
// where that is less. 0 when the system says neither.
double cpuRoomBytes(double share);
// "8G", "512M", "1.5T", "4096": bytes (binary units); -1 when `text` is no size.
double parseMemorySize(std::string_view text);
// A CUDA device's memory in bytes: `free` counts what LibTorch's caching allocator holds unused
// as free too (it hands that back before it fails). Both 0 without CUDA, and in a build with
// FLOWSCOPE_CUDA_GRAPHS off (defined in CudaGraph.cpp, where the CUDA code lives): 0 means not
// known, and loads then go ahead unchecked.
struct DeviceMemory {
    double free = 0.0;
    double total = 0.0;
};
DeviceMemory cudaMemory(int index = 0);
// Refuses (InvalidRequestError) work that would need more than `share` of machineMemoryBytes(),
// before any of it is allocated: `what` needs `bytes`; `remedy` says what to ask for instead.
void checkFitsInMemory(double bytes, double share, const std::string& what, const std::string& remedy);

}  // namespace flowscope::core
