#pragma once
// The sampler's frames on their way to a front end (Engine::sample and Engine::invert). Engine
// internals only.
#include <optional>
#include <vector>

#include <torch/torch.h>

#include "core/api/Engine.h"
#include "core/engine/FrameStager.h"
#include "core/engine/HostArrays.h"
#include "core/engine/TrajectoryAnalysis.h"
#include "core/sampling/Model.h"
#include "core/sampling/Run.h"

namespace flowscope::core {

// The sampler's frames on their way to the caller: staged off the device (on a GPU, each one
// handed over once the next step is queued behind it) and turned into StepFrames. Also keeps
// every frame's velocity RMS for the run's analysis.
class FramePipeline {
public:
    FramePipeline(const SampleRequest& request, Model& model, const Engine::FrameCallback& onFrame,
                  const torch::TensorOptions& options)
        : m_request(request),
          m_model(model),
          m_onFrame(onFrame),
          m_options(options),
          m_stager(options.device()),
          m_field(request.velocityFieldResolution > 1 && model.sampleShape() == std::vector<int64_t>{2}) {}

    void observe(const FrameView& view) {
        Pending item;
        StepFrame& frame = item.frame;
        frame.index = view.index;
        frame.plannedSteps = view.plannedSteps;
        frame.t = view.t;
        frame.nfe = view.nfe;
        frame.final = view.final;
        item.staged = m_stager.stage(frameTensors(view, frame));
        if (!m_stager.deferred()) {
            deliver(item);
            return;
        }
        // GPU: hand over the previous frame now that this step's work is queued behind it.
        if (m_pending) deliver(*m_pending);
        m_pending = std::move(item);
        if (view.final) {
            deliver(*m_pending);
            m_pending.reset();
        }
    }

    const std::vector<double>& velocityRms() const { return m_velocityRms; }

private:
    struct Pending {
        StepFrame frame;
        FrameStager::Staged staged;
    };

    // Velocity RMS, state, prediction, then the two previews when the model has them.
    std::vector<torch::Tensor> frameTensors(const FrameView& view, StepFrame& frame) {
        std::vector<torch::Tensor> tensors{view.velocityRms};
        if (!m_onFrame) return tensors;
        const int size = m_request.previewSize;
        tensors.push_back(fitForPreview(*view.state, size));
        tensors.push_back(fitForPreview(*view.prediction, size));
        if (m_model.hasPreview()) {
            frame.decoded = m_model.hasDecoder() &&
                            (view.final || (m_request.decodeEvery > 0 && view.index % m_request.decodeEvery == 0));
            tensors.push_back(fitForPreview(m_model.preview(*view.state, view.final && frame.decoded), size));
            tensors.push_back(fitForPreview(m_model.preview(*view.prediction, frame.decoded), size));
        }
        if (m_field && view.point.sigma > 0.0) {
            frame.velocityField = velocityField(m_model, view.point, m_request.velocityFieldResolution,
                                                m_request.fieldExtent, m_options);
        }
        return tensors;
    }

    void deliver(Pending& item) {
        FrameStager::wait(item.staged);
        auto& host = item.staged.host;
        StepFrame& frame = item.frame;
        frame.velocityRms = host[0].defined() ? host[0].item<double>() : 0.0;
        m_velocityRms.push_back(frame.velocityRms);
        if (!m_onFrame) return;
        frame.state = toHostArray(host[1]);
        frame.prediction = toHostArray(host[2]);
        if (host.size() > 3) {
            frame.statePreview = toHostArray(host[3]);
            frame.predictionPreview = toHostArray(host[4]);
        }
        m_onFrame(frame);
    }

    const SampleRequest& m_request;
    Model& m_model;
    const Engine::FrameCallback& m_onFrame;
    torch::TensorOptions m_options;
    FrameStager m_stager;
    bool m_field;
    std::optional<Pending> m_pending;
    std::vector<double> m_velocityRms;
};

}  // namespace flowscope::core
