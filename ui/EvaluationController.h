#pragma once

#include <QMetaType>
#include <QObject>
#include <QString>
#include <QStringList>

#include <memory>

#include "core/api/EvaluationJob.h"

namespace flowscope::ui {

struct EvaluationFinish {
    core::Failure failure = core::Failure::None;
    QString error;
    double frechetFloor = 0.0;  // real images against the test images
    QStringList notes;
};

// Runs one evaluation (core::EvaluationJob) at a time on its own thread, below the UI's
// priority, with cancel. Rows and progress come back as queued signals. Thread-safety: call the
// public functions from the owning (UI) thread only.
class EvaluationController : public QObject {
    Q_OBJECT

public:
    explicit EvaluationController(QObject* parent = nullptr);
    // Cancels a running evaluation and lets it end on its own if it does not within a moment.
    ~EvaluationController() override;

    // False when one is running already (until its finished signal has been delivered).
    bool start(const core::EvaluationRequest& request);
    void cancel();
    bool isRunning() const;

Q_SIGNALS:
    void rowReady(const flowscope::core::EvaluationRow& row);
    // Samples done of all, over every row.
    void progressed(int done, int total);
    void finished(const flowscope::ui::EvaluationFinish& finish);

private:
    struct Worker;
    std::shared_ptr<Worker> m_worker;  // shared with its thread, which may outlive the controller
};

}  // namespace flowscope::ui

Q_DECLARE_METATYPE(flowscope::core::EvaluationRow)
Q_DECLARE_METATYPE(flowscope::ui::EvaluationFinish)
