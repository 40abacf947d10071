#pragma once

#include <QObject>
#include <QString>

#include <memory>

#include "ui/LaneFrame.h"
#include "ui/RunSettings.h"

namespace flowscope::ui {

// The UI's only way to the engine. One worker thread owns the engine (its models and tensors);
// the UI posts runs tagged with a lane. A new run for a lane cancels the one running or waiting
// for that lane: the newest request always wins. When no run waits, the worker measures each
// finished run against a reference solve (lowest priority; cancelled like the runs). Frames and results come back as queued signals
// on the thread that owns the controller; a run's id lets receivers drop anything stale. Every
// submitted run ends with exactly one runFinished or runFailed (cancelled when replaced).
// Thread-safety: call the public functions from the owning (UI) thread only.
class EngineController : public QObject {
    Q_OBJECT

public:
    explicit EngineController(QObject* parent = nullptr);
    // Cancels every run and waits a moment for the worker; a job that does not stop by then
    // (one long step) is left to end on its own, so closing the window never waits for it.
    ~EngineController() override;

    // Queues a run for `lane` and returns its id (ids increase across all lanes). `start` is where
    // it starts (image to image, a fork; default: the seed's noise).
    quint64 submit(int lane, const RunSettings& settings, const core::RunStart& start = {});
    // Queues an inversion (at most one: a new one replaces it), run before the sweep.
    quint64 submitInversion(const core::InvertRequest& request);
    // Queues a sweep (at most one; a new one replaces it), run after the lanes' runs.
    quint64 submitSweep(const core::SweepRequest& request);
    void cancel(int lane);
    void cancelAll();
    // True while any run is queued or running.
    bool isBusy() const;
    // Waits until no run is queued or running (for tests and shutdown); false on timeout.
    bool waitForIdle(int timeoutMs);

    // The pseudo-lanes sweeps and inversions are queued under (after every real lane).
    static constexpr int kSweepLane = 1000;
    static constexpr int kInversionLane = 999;

Q_SIGNALS:
    void frameReady(int lane, quint64 runId, const flowscope::ui::LaneFrame& frame);
    void runFinished(int lane, quint64 runId, const flowscope::ui::LaneResult& result);
    void runFailed(int lane, quint64 runId, const QString& message, bool cancelled);
    // After a run, when nothing newer waits: the RMSE per element of its final samples against a
    // dopri5 solve (tolerance 1e-4) from the same noise and start.
    void referenceReady(int lane, quint64 runId, double rmse);
    void busyChanged(bool busy);
    void sweepCellReady(quint64 sweepId, const flowscope::ui::SweepCell& cell);
    void sweepFinished(quint64 sweepId, const QStringList& notes);
    void sweepFailed(quint64 sweepId, const QString& message, bool cancelled);
    void inversionReady(quint64 id, const flowscope::ui::InversionView& view);
    void inversionFailed(quint64 id, const QString& message, bool cancelled);

private:
    // Queues a lane's (or the inversion's) job, replacing the one waiting there.
    template <typename Work>
    quint64 enqueue(int lane, Work work);

    struct Worker;
    std::shared_ptr<Worker> m_worker;  // shared with its thread, which may outlive the controller
};

}  // namespace flowscope::ui
