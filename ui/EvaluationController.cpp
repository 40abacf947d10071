#include "ui/EvaluationController.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "ui/ThreadHandoff.h"
#include "ui/WorkerThread.h"

namespace flowscope::ui {
namespace {

constexpr int kEvaluationNice = 10;  // below the sampling worker: the lanes stay live meanwhile
constexpr std::chrono::milliseconds kStopWait{3000};

}  // namespace

struct EvaluationController::Worker {
    explicit Worker(EvaluationController* owner) : outbox(owner) {}

    void run(const core::EvaluationRequest& request) {
        WorkerThread::setThisThreadNice(kEvaluationNice);
        // Every row samples the same count: the rows before this one count as done.
        const int rows = static_cast<int>(request.steps.size() + (request.adaptive ? 1 : 0)) *
                         static_cast<int>(std::max<size_t>(1, request.cfgs.size()));
        int finishedRows = 0;
        auto lastReport = std::chrono::steady_clock::now() - std::chrono::seconds(1);
        const core::EvaluationOutcome outcome = core::EvaluationJob::run(
            request,
            [&](const core::EvaluationRow& row) {
                ++finishedRows;
                post([row](EvaluationController* c) { Q_EMIT c->rowReady(row); });
            },
            [&](const std::string&, int, int done, int total) {
                const auto now = std::chrono::steady_clock::now();
                if (std::chrono::duration<double>(now - lastReport).count() < 0.1 && done < total) return;
                lastReport = now;
                const int all = rows * total;
                const int sofar = finishedRows * total + done;
                post([sofar, all](EvaluationController* c) { Q_EMIT c->progressed(sofar, all); });
            },
            &cancel);
        EvaluationFinish finish;
        finish.failure = outcome.failure;
        finish.error = QString::fromStdString(outcome.error);
        finish.frechetFloor = outcome.frechetFloor;
        for (const auto& note : outcome.notes) finish.notes << QString::fromStdString(note);
        // Running until the UI thread has the outcome: a new start in between would otherwise have
        // its button reset by this job's end.
        post([finish](EvaluationController* c) {
            c->m_worker->running.store(false);
            Q_EMIT c->finished(finish);
        });
    }

    // Runs `emitter` on the controller's thread; dropped if the controller is gone by then.
    template <typename F>
    void post(F emitter) {
        outbox.post(std::move(emitter));
    }

    handoff::Outbox<EvaluationController> outbox;
    WorkerThread thread;
    std::atomic<bool> cancel{false};
    std::atomic<bool> running{false};
};

EvaluationController::EvaluationController(QObject* parent)
    : QObject(parent), m_worker(std::make_shared<Worker>(this)) {
    qRegisterMetaType<core::EvaluationRow>();
    qRegisterMetaType<EvaluationFinish>();
}

EvaluationController::~EvaluationController() {
    m_worker->cancel.store(true);
    m_worker->thread.stop(kStopWait);
    m_worker->outbox.close();  // queued tasks are dropped, and a worker let go posts nothing
}

bool EvaluationController::start(const core::EvaluationRequest& request) {
    if (m_worker->running.load()) return false;
    m_worker->cancel.store(false);
    m_worker->running.store(true);
    m_worker->thread.start([worker = m_worker, request] { worker->run(request); });
    return true;
}

void EvaluationController::cancel() { m_worker->cancel.store(true); }

bool EvaluationController::isRunning() const { return m_worker->running.load(); }

}  // namespace flowscope::ui
