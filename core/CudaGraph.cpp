#include "core/CudaGraph.h"

#include <stdexcept>
#include <string>

#include <torch/torch.h>

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

struct CudaGraph::Impl {
    at::cuda::CUDAGraph graph;
    torch::Tensor input;
    std::vector<torch::Tensor> outputs;
};

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
        // Thread-local mode: other threads (other lanes of the app) may keep using CUDA meanwhile.
        // LibTorch before 2.1 captures in the global mode only.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
        m_impl->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
#else
        m_impl->graph.capture_begin();
#endif
        try {
            m_impl->outputs = body(m_impl->input);
        } catch (const std::exception& error) {
            // End the capture so that the stream and the allocator leave capture mode; the
            // capture itself is invalid by now and ending it reports that, which is expected.
            try {
                m_impl->graph.capture_end();
            } catch (const std::exception&) {
            }
            (void)cudaGetLastError();
            throw std::runtime_error(std::string("this run cannot be captured as a CUDA graph: ") + error.what());
        }
        m_impl->graph.capture_end();
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
    if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
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

#endif

}  // namespace flowscope::core
