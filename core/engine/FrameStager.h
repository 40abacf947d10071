#pragma once

#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/torch.h>

namespace flowscope::core {

// Copies of frame tensors to the host that do not stop the GPU: on CUDA they run on a side stream
// into pinned memory after the work queued so far, and the engine hands a frame over only once
// the next step is queued, so the GPU never waits for the observer. On the CPU nothing is copied.
class FrameStager {
public:
    struct Staged {
        std::vector<torch::Tensor> host;    // on the CPU once done
        std::vector<torch::Tensor> source;  // kept alive until the copies are done
        std::optional<c10::Event> done;
    };

    explicit FrameStager(const torch::Device& device) : m_device(device) {
        if (device.is_cuda()) m_side = c10::impl::VirtualGuardImpl(device.type()).getStreamFromGlobalPool(device);
    }
    bool deferred() const { return m_side.has_value(); }

    Staged stage(std::vector<torch::Tensor> tensors) {
        Staged staged;
        if (!m_side) {
            staged.host = std::move(tensors);
            return staged;
        }
        const c10::impl::VirtualGuardImpl impl(m_device.type());
        c10::Event queued(m_device.type());
        queued.record(impl.getStream(m_device));
        queued.block(*m_side);
        {
            const c10::StreamGuard onSide(*m_side);
            for (const auto& tensor : tensors) {
                if (!tensor.defined()) {
                    staged.host.emplace_back();
                    continue;
                }
                torch::Tensor host = torch::empty(tensor.sizes(), tensor.options().device(torch::kCPU).pinned_memory(true));
                host.copy_(tensor, /*non_blocking=*/true);
                staged.host.push_back(std::move(host));
            }
        }
        staged.done.emplace(m_device.type());
        staged.done->record(*m_side);
        staged.source = std::move(tensors);
        return staged;
    }

    static void wait(Staged& staged) {
        if (!staged.done) return;
        while (!staged.done->query()) std::this_thread::sleep_for(std::chrono::microseconds(20));
        staged.source.clear();
    }

private:
    torch::Device m_device;
    std::optional<c10::Stream> m_side;
};

// An image batch [B, C, H, W] averaged down on its device so that neither side exceeds `size`.
torch::Tensor fitForPreview(const torch::Tensor& images, int size);

}  // namespace flowscope::core
