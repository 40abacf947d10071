#include "ui/TrainController.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include <QMetaObject>
#include <QPainter>
#include <QPointer>

#include "ui/ThreadHandoff.h"
#include "ui/WorkerThread.h"

#include "core/media/ImageFolderLoader.h"
#include "ui/LaneFrame.h"

namespace flowscope::ui {
namespace {

constexpr int kTrainingNice = 10;  // below the sampling worker: the lanes stay live while training
constexpr double kProgressInterval = 0.1;
// How long closing waits for a cancelled job to save its checkpoint (well under a second for the
// networks FlowScope trains) before letting it go.
constexpr std::chrono::milliseconds kStopWait{3000};

// Preview samples as one image: a scatter plot over the data for 2-D models, a grid otherwise.
QImage previewImage(const core::HostArray& samples, const core::HostArray& reference) {
    if (samples.shape.size() == 2) return scatterImage(samples, reference, scatterBounds(reference), {}, {}, 0.0, 360);
    const QVector<QImage> images = imagesFromBatch(samples);
    if (images.isEmpty()) return {};
    const int columns = qMax(1, int(std::ceil(std::sqrt(double(images.size())))));
    const int rows = (int(images.size()) + columns - 1) / columns;
    const QSize cell = images.front().size();
    QImage grid(columns * (cell.width() + 2) + 2, rows * (cell.height() + 2) + 2, QImage::Format_RGB32);
    grid.fill(QColor(40, 40, 40));
    QPainter painter(&grid);
    for (int i = 0; i < images.size(); ++i) {
        painter.drawImage(2 + (i % columns) * (cell.width() + 2), 2 + (i / columns) * (cell.height() + 2), images[i]);
    }
    return grid;
}

}  // namespace

struct TrainController::Worker {
    explicit Worker(TrainController* owner) : outbox(owner) {}

    void run(core::TrainRequest request) {
        WorkerThread::setThisThreadNice(kTrainingNice);
        std::string dataset = request.dataset;
        if (request.mode != "train") {
            // The source's training data, drawn beneath 2-D samples ("" when it does not describe:
            // the job reports the bad source itself).
            dataset = core::Engine::describeModel(request.source).referenceData;
        }
        core::HostArray reference = core::Engine::referenceSamples(dataset, 2000);
        auto lastReport = std::chrono::steady_clock::now() - std::chrono::seconds(1);
        const core::TrainOutcome outcome = core::TrainingJob::run(
            request,
            [&](const core::TrainProgress& progress) {
                const auto now = std::chrono::steady_clock::now();
                const bool due = !progress.preview.values.empty() || progress.done == progress.total ||
                                 std::chrono::duration<double>(now - lastReport).count() >= kProgressInterval;
                if (!due) return;
                lastReport = now;
                TrainUpdate update;
                update.couplings = progress.phase == core::TrainProgress::Phase::Couplings;
                update.done = progress.done;
                update.total = progress.total;
                update.resumedFrom = progress.resumedFrom;
                update.loss = progress.loss;
                update.smoothedLoss = progress.smoothedLoss;
                update.seconds = progress.seconds;
                update.etaSeconds = progress.etaSeconds;
                if (!progress.preview.values.empty()) update.preview = previewImage(progress.preview, reference);
                post([update](TrainController* c) { Q_EMIT c->progressed(update); });
            },
            &cancel, &pause, [](const std::string& folder, int resolution, std::vector<std::string>& notes,
                                  const std::atomic<bool>* stop) {
                return media::loadImageFolderToHost(folder, resolution, notes, stop);
            });
        TrainFinish finish;
        finish.failure = outcome.failure;
        finish.error = QString::fromStdString(outcome.error);
        finish.directory = QString::fromStdString(outcome.directory);
        finish.iterations = outcome.iterations;
        finish.resumedFrom = outcome.resumedFrom;
        finish.loss = outcome.loss;
        finish.seconds = outcome.seconds;
        for (const auto& note : outcome.notes) finish.notes << QString::fromStdString(note);
        {
            std::lock_guard lock(mutex);
            running.store(false);
            post([finish](TrainController* c) { Q_EMIT c->finished(finish); });
        }
        ended.notify_all();
    }

    // Runs `emitter` on the controller's thread; dropped if the controller is gone by then.
    template <typename F>
    void post(F emitter) {
        outbox.post(std::move(emitter));
    }

    handoff::Outbox<TrainController> outbox;
    WorkerThread thread;
    std::atomic<bool> cancel{false};
    std::atomic<bool> pause{false};
    std::atomic<bool> running{false};
    std::mutex mutex;
    std::condition_variable ended;
};

TrainController::TrainController(QObject* parent) : QObject(parent), m_worker(std::make_shared<Worker>(this)) {
    qRegisterMetaType<TrainUpdate>();
    qRegisterMetaType<TrainFinish>();
}

TrainController::~TrainController() {
    m_worker->cancel.store(true);
    m_worker->thread.stop(kStopWait);
    m_worker->outbox.close();  // queued tasks are dropped, and a worker let go posts nothing
}

bool TrainController::start(const core::TrainRequest& request) {
    if (m_worker->running.load()) return false;
    m_worker->cancel.store(false);
    m_worker->pause.store(false);
    m_worker->running.store(true);
    m_worker->thread.start([worker = m_worker, request] { worker->run(request); });
    return true;
}

void TrainController::setPaused(bool paused) { m_worker->pause.store(paused); }

bool TrainController::isPaused() const { return m_worker->pause.load(); }

void TrainController::cancel() { m_worker->cancel.store(true); }

bool TrainController::isRunning() const { return m_worker->running.load(); }

bool TrainController::waitForFinished(int timeoutMs) {
    std::unique_lock lock(m_worker->mutex);
    return m_worker->ended.wait_for(lock, std::chrono::milliseconds(timeoutMs),
                                    [this] { return !m_worker->running.load(); });
}

}  // namespace flowscope::ui
