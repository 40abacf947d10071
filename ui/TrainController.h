#pragma once

#include <QImage>
#include <QMetaType>
#include <QObject>
#include <QString>
#include <QStringList>

#include <memory>

#include "core/api/TrainingJob.h"

namespace flowscope::ui {

// A training job's progress, ready to show: made on the training thread.
struct TrainUpdate {
    bool couplings = false;  // making (noise, sample) pairs rather than training
    qint64 done = 0;
    qint64 total = 0;
    int resumedFrom = 0;
    double loss = 0.0;
    double smoothedLoss = 0.0;
    double seconds = 0.0;
    double etaSeconds = -1.0;
    QImage preview;  // samples of the averaged network, when one was due
};

struct TrainFinish {
    core::Failure failure = core::Failure::None;
    QString error;
    QString directory;  // the bundle folder
    int iterations = 0;
    int resumedFrom = 0;
    double loss = 0.0;
    double seconds = 0.0;
    QStringList notes;
};

// Runs one training job at a time on its own thread (below the UI's priority), with pause,
// resume and cancel. Progress comes back as queued signals, at most about ten a second plus every
// preview. Thread-safety: call the public functions from the owning (UI) thread only.
class TrainController : public QObject {
    Q_OBJECT

public:
    explicit TrainController(QObject* parent = nullptr);
    // Cancels a running job and waits for it to save its checkpoint, for a few seconds at most:
    // a job still running then is left to end on its own, so closing the window never waits.
    ~TrainController() override;

    // False when a job is running already.
    bool start(const core::TrainRequest& request);
    void setPaused(bool paused);
    bool isPaused() const;
    void cancel();
    bool isRunning() const;
    // Waits until the job has ended and its finished signal is queued; false on timeout.
    bool waitForFinished(int timeoutMs);

Q_SIGNALS:
    void progressed(const flowscope::ui::TrainUpdate& update);
    void finished(const flowscope::ui::TrainFinish& finish);

private:
    struct Worker;
    std::shared_ptr<Worker> m_worker;  // shared with its thread, which may outlive the controller
};

}  // namespace flowscope::ui

Q_DECLARE_METATYPE(flowscope::ui::TrainUpdate)
Q_DECLARE_METATYPE(flowscope::ui::TrainFinish)
