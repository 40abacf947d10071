#include "core/sampling/CudaGraph.h"

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/sampling/Device.h"

#if FLOWSCOPE_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/cuda.h>
#include <torch/version.h>
#endif

namespace flowscope::core {

#if FLOWSCOPE_WITH_CUDA

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define FLOWSCOPE_THREAD_LOCAL_CAPTURE 1  // LibTorch 2.1 on: capture_begin takes the capture mode
#else
#define FLOWSCOPE_THREAD_LOCAL_CAPTURE 0
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2)
#define FLOWSCOPE_CAPTURE_CLEANUP 1  // LibTorch 2.2 on: the allocator's endAllocateToPool(device, pool)
#else
#define FLOWSCOPE_CAPTURE_CLEANUP 0
#endif

struct CudaGraph::Impl {
    at::cuda::CUDAGraph graph;
    torch::Tensor input;
    std::vector<torch::Tensor> outputs;
};

namespace {

using PoolId = decltype(at::cuda::graph_pool_handle());

// After a capture that failed. LibTorch's capture_end throws as soon as CUDA reports the
// invalidated capture, before it tells the caching allocator that the capture is over (true of
// 2.x before 2.12): the allocator would go on believing a capture is under way, never release its
// cache (out-of-memory recovery and emptyCache stop working) and keep calling a filter that points
// into the graph object. So this ends the stream's capture itself, ends and releases the graph's
// memory pool (created by us, so its id is known), and keeps the graph object alive for good in
// case anything still points into it (a few hundred bytes per failed capture, and a failed
// capture is never tried again for the same run).
void abandonCapture(std::shared_ptr<void> graph, const c10::cuda::CUDAStream& stream,
                    [[maybe_unused]] PoolId pool) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream.stream(), &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
        cudaGraph_t partial = nullptr;
        (void)cudaStreamEndCapture(stream.stream(), &partial);
        if (partial) (void)cudaGraphDestroy(partial);
    }
    (void)cudaGetLastError();
#if FLOWSCOPE_CAPTURE_CLEANUP
    // Either call throws where LibTorch already did it (later versions): nothing is left to do then.
    try {
        c10::cuda::CUDACachingAllocator::endAllocateToPool(stream.device_index(), pool);
    } catch (const std::exception&) {
    }
    try {
        c10::cuda::CUDACachingAllocator::releasePool(stream.device_index(), pool);
    } catch (const std::exception&) {
    }
#endif
    static std::mutex keptLock;
    static std::vector<std::shared_ptr<void>> kept;
    const std::lock_guard<std::mutex> hold(keptLock);
    kept.push_back(std::move(graph));
}

}  // namespace

bool CudaGraph::available() { return true; }

CudaGraph::CudaGraph(const torch::Tensor& example, const Body& body, int warmup) : m_impl(std::make_unique<Impl>()) {
    if (!example.is_cuda()) throw std::runtime_error("a CUDA graph needs its input on a CUDA device");
    const c10::cuda::CUDAGuard deviceGuard(example.device());
    m_impl->input = example.clone();
    // Capture (and the warm-up, as PyTorch recommends) runs on a side stream: the legacy default
    // stream cannot be captured. Everything before it on the current stream is finished first.
    torch::cuda::synchronize(example.device().index());
    const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, example.device().index());
    {
        const c10::cuda::CUDAStreamGuard streamGuard(side);
        for (int i = 0; i < warmup; ++i) body(m_impl->input);
        side.synchronize();
        // The graph's memory pool is named here, so that a failed capture can release it.
        const PoolId pool = at::cuda::graph_pool_handle();
        try {
            // Thread-local mode: other threads (other lanes of the app) may keep using CUDA
            // meanwhile. LibTorch before 2.1 captures in the global mode only.
#if FLOWSCOPE_THREAD_LOCAL_CAPTURE
            m_impl->graph.capture_begin(pool, cudaStreamCaptureModeThreadLocal);
#else
            m_impl->graph.capture_begin(pool);
#endif
            m_impl->outputs = body(m_impl->input);
            m_impl->graph.capture_end();
        } catch (const c10::OutOfMemoryError&) {
            m_impl->input = torch::Tensor();  // only the graph object itself is kept
            m_impl->outputs.clear();
            abandonCapture(std::shared_ptr<Impl>(std::move(m_impl)), side, pool);
            throw;  // the engine reports it and empties the cache
        } catch (const std::exception& error) {
            // The model waits for the GPU somewhere (.item(), a branch on a tensor, a copy to the
            // host), or CUDA refused the graph: the caller runs the plain loop instead.
            m_impl->input = torch::Tensor();
            m_impl->outputs.clear();
            abandonCapture(std::shared_ptr<Impl>(std::move(m_impl)), side, pool);
            throw std::runtime_error(std::string("this run cannot be captured as a CUDA graph: ") + error.what());
        }
    }
    torch::cuda::synchronize(example.device().index());
}

CudaGraph::~CudaGraph() = default;

const std::vector<torch::Tensor>& CudaGraph::replay(const torch::Tensor& input) {
    const c10::cuda::CUDAGuard deviceGuard(m_impl->input.device());
    m_impl->input.copy_(input);
    m_impl->graph.replay();
    return m_impl->outputs;
}

void releaseCachedDeviceMemory() {
    if (!torch::cuda::is_available()) return;
    // Called while an error is being reported: a failure here must not replace that report.
    try {
        c10::cuda::CUDACachingAllocator::emptyCache();
    } catch (const std::exception&) {
    }
}

DeviceMemory cudaMemory(int index) {
    DeviceMemory memory;
    if (!torch::cuda::is_available() || index < 0 || index >= int(torch::cuda::device_count())) return memory;
    const c10::cuda::CUDAGuard deviceGuard(static_cast<c10::DeviceIndex>(index));
    size_t freeBytes = 0;
    size_t totalBytes = 0;
    if (cudaMemGetInfo(&freeBytes, &totalBytes) != cudaSuccess) {
        (void)cudaGetLastError();  // leave no sticky error for LibTorch's next call
        return memory;
    }
    memory.total = double(totalBytes);
    // What the caching allocator reserved but holds unused goes back to the driver before an
    // allocation fails, so it counts as free. Stat 0 is the aggregate in every LibTorch version.
    double cached = 0.0;
    try {
        const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
        cached = double(stats.reserved_bytes[0].current) - double(stats.allocated_bytes[0].current);
    } catch (const c10::Error&) {
        // The allocator is set up by the process's first CUDA tensor: before that it holds nothing.
    }
    memory.free = double(freeBytes) + std::max(0.0, cached);
    return memory;
}

#else  // no CUDA in this LibTorch

struct CudaGraph::Impl {};

bool CudaGraph::available() { return false; }

CudaGraph::CudaGraph(const torch::Tensor&, const Body&, int) {
    throw std::runtime_error("this FlowScope build has no CUDA (it was built against a CPU-only LibTorch)");
}

CudaGraph::~CudaGraph() = default;

const std::vector<torch::Tensor>& CudaGraph::replay(const torch::Tensor&) {
    throw std::logic_error("internal: replay of a CUDA graph in a build without CUDA");
}

void releaseCachedDeviceMemory() {}

DeviceMemory cudaMemory(int) { return {}; }

#endif

}  // namespace flowscope::core
