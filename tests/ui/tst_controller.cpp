// The worker threads behind the window, driven directly: the engine's controller (newest request
// wins, cancellation at any moment, sweeps beside lanes, destruction mid-run) and the training
// controller (pause, resume, cancel with a checkpoint, destruction mid-run). Built also with
// ThreadSanitizer (the tsan preset), where every hand-off between the threads is checked.
#include <QElapsedTimer>
#include <QRandomGenerator>
#include <QScopeGuard>
#include <QSet>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "ui/EngineController.h"
#include "ui/TrainController.h"
#include "ui/WorkerThread.h"

using namespace flowscope::ui;
using flowscope::core::Failure;

namespace {

constexpr int kTimeoutMs = 120000;

RunSettings mixture(int steps, int batch = 32) {
    RunSettings settings;
    settings.model = "gmm:8gaussians";
    settings.steps = steps;
    settings.batch = batch;
    return settings;
}

// Every submitted run ends exactly once: finished or failed.
struct Endings {
    explicit Endings(EngineController& controller) {
        QObject::connect(&controller, &EngineController::runFinished,
                         [this](int, quint64 id, const LaneResult&) { ++ended[id]; ++finished; });
        QObject::connect(&controller, &EngineController::runFailed,
                         [this](int, quint64 id, const QString&, bool) { ++ended[id]; });
    }
    QHash<quint64, int> ended;
    int finished = 0;
};

flowscope::core::TrainRequest moons(const QString& out, int iterations) {
    flowscope::core::TrainRequest request;
    request.dataset = "points:moons";
    request.outDirectory = out.toStdString();
    request.iterations = iterations;
    request.batch = 128;
    request.width = 32;
    request.checkpointEvery = 50;
    request.previewEvery = 25;
    request.previewCount = 200;
    return request;
}

}  // namespace

class TestController : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void newestRequestWins() {
        EngineController controller;
        Endings endings(controller);
        QSignalSpy frames(&controller, &EngineController::frameReady);
        QVector<quint64> ids;
        for (int steps = 1; steps <= 30; ++steps) ids << controller.submit(0, mixture(steps));
        QVERIFY(controller.waitForIdle(kTimeoutMs));
        QTRY_COMPARE_WITH_TIMEOUT(endings.ended.size(), ids.size(), kTimeoutMs);
        for (quint64 id : ids) QCOMPARE(endings.ended.value(id), 1);
        // The newest finished, and its frames were delivered.
        bool lastFramed = false;
        for (const auto& arguments : frames) lastFramed |= arguments.at(1).toULongLong() == ids.back();
        QVERIFY(lastFramed);
        QVERIFY(endings.finished >= 1);
    }

    void cancellingAtRandomMomentsLeavesNothingWaiting() {
        EngineController controller;
        Endings endings(controller);
        QVector<quint64> ids;
        QRandomGenerator random(17);
        for (int round = 0; round < 40; ++round) {
            const int lane = int(random.bounded(2));
            ids << controller.submit(lane, mixture(int(random.bounded(1, 40)), 64));
            if (random.bounded(3) == 0) controller.submitSweep({});
            QTest::qWait(int(random.bounded(5)));
            if (random.bounded(2) == 0) controller.cancel(lane);
            if (random.bounded(8) == 0) controller.cancelAll();
        }
        QVERIFY(controller.waitForIdle(kTimeoutMs));
        QTRY_COMPARE_WITH_TIMEOUT(endings.ended.size(), ids.size(), kTimeoutMs);
        for (quint64 id : ids) QCOMPARE(endings.ended.value(id), 1);
        QVERIFY(!controller.isBusy());
        // The controller still works after all that.
        QSignalSpy finished(&controller, &EngineController::runFinished);
        controller.submit(1, mixture(4));
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kTimeoutMs);
    }

    void sweepRunsBesideTheLanes() {
        EngineController controller;
        QSignalSpy cells(&controller, &EngineController::sweepCellReady);
        QSignalSpy sweepDone(&controller, &EngineController::sweepFinished);
        QSignalSpy lanes(&controller, &EngineController::runFinished);
        flowscope::core::SweepRequest sweep;
        sweep.model = "gmm:8gaussians";
        sweep.paths = {"linear", "vp"};
        sweep.steps = {1, 2, 4};
        sweep.batch = 16;
        sweep.referenceTolerance = 1e-5;
        controller.submitSweep(sweep);
        controller.submit(0, mixture(6));
        controller.submit(1, mixture(3));
        QTRY_COMPARE_WITH_TIMEOUT(sweepDone.count(), 1, kTimeoutMs);
        QCOMPARE(cells.count(), 6);
        QTRY_COMPARE_WITH_TIMEOUT(lanes.count(), 2, kTimeoutMs);
    }

    void destroyedWhileRunning() {
        for (int i = 0; i < 5; ++i) {
            auto controller = std::make_unique<EngineController>();
            controller->submit(0, mixture(200, 256));
            controller->submit(1, mixture(100, 256));
            QTest::qWait(i * 3);
            controller.reset();  // cancels and joins; queued signals to it are dropped
            QCoreApplication::processEvents();
        }
    }

    void destroyedDuringALongStepReturnsPromptly() {
        // A step of the exact denoiser over 60,000 images for a large batch runs for seconds
        // without looking at the cancel flag (it is checked between evaluations). Closing must
        // not wait for it: the controller is gone within a bound, and the step ends on its own.
        // Whatever happens here, the step let go ends before the next test (or the process's exit).
        const auto drain = qScopeGuard([] {
            if (!QTest::qWaitFor([] { return WorkerThread::abandonedCount() == 0; }, kTimeoutMs)) {
                qWarning("a step let go is still running");
            }
        });
        auto controller = std::make_unique<EngineController>();
        RunSettings settings;
        settings.model = "fashion-mnist";
        settings.steps = 2;
        settings.batch = 2048;
        QSignalSpy frames(controller.get(), &EngineController::frameReady);
        controller->submit(0, settings);
        // The first frame: the next step's evaluation has just begun.
        QTRY_VERIFY_WITH_TIMEOUT(frames.count() > 0, kTimeoutMs);
        QElapsedTimer timer;
        timer.start();
        controller.reset();
        const qint64 closing = timer.elapsed();
        QVERIFY2(closing < 2500, qPrintable(QString("%1 ms").arg(closing)));
        // The step it let go still ends (and frees its memory) by itself.
        QTRY_COMPARE_WITH_TIMEOUT(WorkerThread::abandonedCount(), 0, kTimeoutMs);
        qInfo("destroyed in %lld ms; the step it let go ended after %lld ms", closing, timer.elapsed());
    }

    void trainingPausesResumesAndCancelsWithACheckpoint() {
        QTemporaryDir dir;
        TrainController controller;
        QSignalSpy progressed(&controller, &TrainController::progressed);
        QSignalSpy finished(&controller, &TrainController::finished);
        const QString out = dir.filePath("moons");
        QVERIFY(controller.start(moons(out, 100000)));
        QVERIFY(!controller.start(moons(out, 100000)));  // one job at a time
        QTRY_VERIFY_WITH_TIMEOUT(progressed.count() > 0, kTimeoutMs);
        controller.setPaused(true);
        QTest::qWait(300);
        const qint64 pausedAt = progressed.last().front().value<TrainUpdate>().done;
        QTest::qWait(500);
        QCOMPARE(progressed.last().front().value<TrainUpdate>().done, pausedAt);
        controller.setPaused(false);
        QTRY_VERIFY_WITH_TIMEOUT(progressed.last().front().value<TrainUpdate>().done > pausedAt, kTimeoutMs);
        controller.cancel();
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kTimeoutMs);
        const TrainFinish stopped = finished.front().front().value<TrainFinish>();
        QCOMPARE(stopped.failure, Failure::Cancelled);
        QVERIFY(QFile::exists(out + "/checkpoint.safetensors"));
        QVERIFY(!controller.isRunning());

        // The same request resumes; a short target ends it with a bundle and a preview on the way.
        QVERIFY(controller.start(moons(out, stopped.iterations + 30)));
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, kTimeoutMs);
        const TrainFinish done = finished.last().front().value<TrainFinish>();
        QCOMPARE(done.failure, Failure::None);
        QCOMPARE(done.resumedFrom, stopped.iterations);
        QCOMPARE(done.iterations, stopped.iterations + 30);
        bool previewed = false;
        for (const auto& arguments : progressed) previewed |= !arguments.front().value<TrainUpdate>().preview.isNull();
        QVERIFY(previewed);
    }

    void trainingDestroyedWhileRunningSavesAndJoins() {
        QTemporaryDir dir;
        {
            TrainController controller;
            QSignalSpy progressed(&controller, &TrainController::progressed);
            QVERIFY(controller.start(moons(dir.filePath("g"), 100000)));
            QTRY_VERIFY_WITH_TIMEOUT(progressed.count() > 0, kTimeoutMs);
            controller.setPaused(true);  // even paused, destruction ends it
        }
        QCoreApplication::processEvents();
        QVERIFY(QFile::exists(dir.filePath("g/checkpoint.safetensors")));
    }
};

QTEST_GUILESS_MAIN(TestController)
#include "tst_controller.moc"
