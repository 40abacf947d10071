#pragma once

// CUDA graphs for fixed-shape work: a computation is run eagerly a few times (so that libraries
// allocate their workspaces and TorchScript settles on its optimized plan), captured once on a
// side stream, then replayed with one launch. Compiled in only when LibTorch has CUDA
// (FLOWSCOPE_WITH_CUDA); elsewhere `available()` is false and capturing throws.

#include <functional>
#include <memory>
#include <vector>

#include <torch/types.h>

namespace flowscope::core {

class CudaGraph {
public:
    // Computes outputs from `input`, with nothing in it that synchronizes with the host
    // (no .item(), no copies to the CPU): such a call would break the capture.
    using Body = std::function<std::vector<torch::Tensor>(const torch::Tensor& input)>;

    // True when this build can capture graphs (LibTorch with CUDA); a GPU is still needed.
    static bool available();

    // Captures `body` on a static copy of `example` after `warmup` eager runs. Throws
    // std::runtime_error when the body cannot be captured, and c10::OutOfMemoryError when the
    // device ran out of memory; either way the capture is ended and its memory pool released, so
    // that the device stays usable (and LibTorch's allocator can still empty its cache).
    CudaGraph(const torch::Tensor& example, const Body& body, int warmup = 2);
    ~CudaGraph();
    CudaGraph(const CudaGraph&) = delete;
    CudaGraph& operator=(const CudaGraph&) = delete;

    // Copies `input` into the static input and replays. The outputs are the graph's own static
    // tensors: the next replay overwrites them, so clone what must outlive it.
    const std::vector<torch::Tensor>& replay(const torch::Tensor& input);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// Hands the GPU memory that LibTorch's caching allocator holds unused back to the driver
// (after an out-of-memory error). Does nothing without CUDA.
void releaseCachedDeviceMemory();

}  // namespace flowscope::core
