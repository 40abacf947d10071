#include "ui/EngineController.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <variant>

#include <sys/resource.h>
#include <unistd.h>

#include <QDir>
#include <QMetaObject>
#include <QPointer>

#include "ui/ThreadHandoff.h"
#include "ui/WorkerThread.h"

#include "core/api/Names.h"
#include "core/media/ImageFolderLoader.h"

namespace flowscope::ui {
namespace {
// Reference solves for the RMSE shown under each lane: accurate to about 1e-4, far below the
// few-step errors they measure, and affordable on a CPU in the background.
constexpr double kReferenceTolerance = 1e-4;
constexpr size_t kReferenceCacheSize = 16;
constexpr int kWorkerNice = 5;
constexpr qint64 kTrajectoryBudgetBytes = qint64(256) << 20;
// The side of a lane's 2-D plots, in pixels: the canvas scales them to the lane, so large enough
// to stay sharp in a lane on a large screen.
constexpr int kPlotSize = 720;
// How long closing waits for the running job to see its cancel flag before letting it go.
constexpr std::chrono::milliseconds kStopWait{1000};

// 2-D models (mixtures, point clouds, and bundles whose samples are points) are drawn as scatter
// plots over their data: `reference` names the data ("" when unknown).
struct PointModel {
    bool points = false;
    std::string reference;
};

PointModel pointModel(const std::string& model) {
    // A spec that does not describe is reported by the run itself.
    const core::ModelDescription description = core::Engine::describeModel(model);
    return {description.ok && description.points, description.referenceData};
}

// float32 bytes of every state of a run, from its settings (the sample size from the model spec).
qint64 estimatedTrajectoryBytes(const RunSettings& settings) {
    const core::ModelDescription description =
        core::Engine::describeModel(settings.model.toStdString(), settings.resolution);
    qint64 values = 1;
    for (const int64_t size : description.sampleShape) values *= size;
    // Adaptive solvers pick their own steps: a few hundred on the empirical denoiser.
    bool adaptive = false;
    try {
        adaptive = core::Engine::solverIsAdaptive(settings.solver.toStdString());
    } catch (const std::exception&) {
        // the run reports the unknown solver
    }
    const qint64 steps = adaptive ? std::max(settings.steps, 400) : settings.steps;
    return (steps + 1) * settings.batch * values * 4;
}

}  // namespace

struct EngineController::Worker {
    // The worker's jobs, a closed set: a lane's run, the measurement of a finished run against a
    // reference solve, and a sweep (handed to the engine whole: it batches the cells per solver).
    struct LaneRun {
        RunSettings settings;
        core::RunStart start;
    };
    struct Measurement {
        RunSettings settings;        // of the run measured
        core::RunStart start;        // and where it started
        core::HostArray runFinal;    // its final samples
    };
    struct Sweep {
        core::SweepRequest request;
    };
    struct Inversion {
        core::InvertRequest request;
    };
    struct Job {
        int lane = 0;  // kSweepLane for sweeps, kInversionLane for inversions
        quint64 id = 0;
        std::variant<LaneRun, Measurement, Sweep, Inversion> work;
        std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
    };

    explicit Worker(EngineController* owner) : outbox(owner) {}

    void loop() {
        // Below the UI thread's priority, so the window stays responsive while both cores
        // compute; LibTorch's worker threads, created from this thread, inherit it.
        WorkerThread::setThisThreadNice(kWorkerNice);
        lowerLibraryThreads();
        // The engine lives and dies on this thread, with everything it loads.
        core::Engine engine([](const std::string& folder, int resolution, std::vector<std::string>& notes,
                                   const std::atomic<bool>* cancel) {
            return media::loadImageFolderToHost(folder, resolution, notes, cancel);
        });
        for (;;) {
            std::shared_ptr<Job> job;
            {
                std::unique_lock lock(mutex);
                wake.wait(lock, [this] { return stopping || hasQueuedJobs(); });
                if (stopping) return;
                // Lanes first, then the sweep, then measurements against references.
                if (!pending.empty()) {
                    job = pending.begin()->second;
                    pending.erase(pending.begin());
                } else if (sweep) {
                    job = std::exchange(sweep, nullptr);
                } else {
                    job = references.begin()->second;
                    references.erase(references.begin());
                }
                running = job;
            }
            run(engine, *job);
            {
                std::lock_guard lock(mutex);
                running.reset();
                if (!hasQueuedJobs()) idle.notify_all();
            }
            notifyBusy();
        }
    }

    // OpenBLAS starts its threads when it loads, from the main thread, so they run at the UI's
    // priority; between matrix products they spin (sched_yield) for a while, and at the UI's
    // priority they would take a core from this worker's niced threads (on 2 cores a network
    // ran many times slower in the window than on the command line). Every thread but the UI's
    // gets the worker's priority.
    static void lowerLibraryThreads() {
        const pid_t process = ::getpid();
        QDir tasks(QStringLiteral("/proc/self/task"));
        for (const QString& entry : tasks.entryList(QDir::Dirs | QDir::NoDotAndDotDot)) {
            bool ok = false;
            const pid_t thread = entry.toInt(&ok);
            if (ok && thread != process) setpriority(PRIO_PROCESS, static_cast<id_t>(thread), kWorkerNice);
        }
    }

    // Called with the mutex held.
    bool hasQueuedJobs() const { return !pending.empty() || sweep || !references.empty(); }

    void run(core::Engine& engine, const Job& job) {
        std::visit([&](const auto& work) { run(engine, job, work); }, job.work);
    }

    void run(core::Engine& engine, const Job& job, const Measurement& work) {
        core::SampleRequest request = work.settings.toRequest();
        request.solver = std::string(core::kAdaptiveSolver);
        request.rtol = request.atol = kReferenceTolerance;
        request.start = work.start;
        // dopri5 starts afresh from the same state: a fork's solver history is the run's own.
        request.start.previousPrediction = {};
        request.start.stepSize = 0.0;
        // Same settings but the solver: the same noise and start, so one solve serves every
        // solver tried on this lane's path, schedule and steps. Runs from another start (an
        // image, a fork) are not cached: their start is not part of the key.
        const bool plainStart = work.start.kind == core::RunStart::Kind::Noise && work.start.time == 0.0 &&
                                work.start.noise.values.empty();
        RunSettings key = work.settings;
        key.solver.clear();
        auto cached = std::find_if(referenceCache.begin(), referenceCache.end(),
                                   [&](const auto& entry) { return plainStart && entry.first == key; });
        if (cached == referenceCache.end()) {
            const core::SampleResult result = engine.sample(request, {}, job.cancel.get());
            if (!result.ok()) return;
            if (!plainStart) {
                report(job, rmsBetween(result.final, work.runFinal));
                return;
            }
            if (referenceCache.size() >= kReferenceCacheSize) referenceCache.erase(referenceCache.begin());
            referenceCache.emplace_back(key, result.final);
            cached = std::prev(referenceCache.end());
        }
        report(job, rmsBetween(cached->second, work.runFinal));
    }

    // RMS per element of a - b; NaN when their sizes differ.
    static double rmsBetween(const core::HostArray& a, const core::HostArray& b) {
        if (a.values.size() != b.values.size()) return std::nan("");
        double sum = 0.0;
        for (size_t i = 0; i < a.values.size(); ++i) {
            const double d = double(a.values[i]) - double(b.values[i]);
            sum += d * d;
        }
        return std::sqrt(sum / std::max<size_t>(1, a.values.size()));
    }

    void report(const Job& job, double rmse) {
        if (std::isnan(rmse)) return;
        post([lane = job.lane, id = job.id, rmse](EngineController* c) { Q_EMIT c->referenceReady(lane, id, rmse); });
    }

    void run(core::Engine& engine, const Job& job, const Inversion& work) {
        const core::InvertResult result = engine.invert(work.request, {}, job.cancel.get());
        if (!result.ok()) {
            const QString message = QString::fromStdString(result.error);
            const bool cancelled = result.failure == core::Failure::Cancelled;
            post([id = job.id, message, cancelled](EngineController* c) { Q_EMIT c->inversionFailed(id, message, cancelled); });
            return;
        }
        InversionView view;
        const PointModel points = pointModel(work.request.settings.model);
        if (points.points) {
            const core::HostArray reference = core::Engine::referenceSamples(points.reference, 600);
            const QRectF bounds = scatterBounds(reference);
            view.data = scatterImage(result.data, reference, bounds, {}, {}, 0.0, 360);
            view.noise = scatterImage(result.noise, reference, bounds, {}, {}, 0.0, 360);
            view.roundtrip = scatterImage(result.roundtrip, reference, bounds, {}, {}, 0.0, 360);
        } else if (result.sampleShape.size() == 3) {
            auto first = [](const core::HostArray& batch) {
                const QVector<QImage> images = imagesFromBatch(batch);
                return images.isEmpty() ? QImage() : images.front();
            };
            view.data = first(work.request.imageIsData ? result.data : work.request.images);
            // The noise spans about [-3, 3]: shown at a third of its size in the image range.
            core::HostArray noise = result.noise;
            for (float& value : noise.values) value /= 3.0f;
            view.noise = first(noise);
            view.roundtrip = first(result.roundtripImage.shape.empty() ? result.roundtrip : result.roundtripImage);
        }
        view.dataArray = result.data;
        view.roundtripArray = result.roundtrip;
        view.nfe = result.nfe;
        view.roundtripNfe = result.roundtripNfe;
        view.roundtripRmse = result.roundtripRmse;
        view.noiseMean = result.noiseMean;
        view.noiseStd = result.noiseStd;
        view.noiseSkewness = result.noiseSkewness;
        view.noiseKurtosis = result.noiseKurtosis;
        view.normalityDistance = result.normalityDistance;
        view.normalityP = result.normalityP;
        for (const auto& note : result.notes) view.notes << QString::fromStdString(note);
        post([id = job.id, view](EngineController* c) { Q_EMIT c->inversionReady(id, view); });
    }

    void run(core::Engine& engine, const Job& job, const Sweep& work) {
        const core::SweepRequest& request = work.request;
        const PointModel points = pointModel(request.model);
        const bool pointCloud = points.points;
        const core::HostArray reference = core::Engine::referenceSamples(points.reference, 600);
        const core::HostArray classReference =
            request.condition.empty() ? core::HostArray{}
                                      : core::Engine::referenceSamples(points.reference, 300, request.condition);
        const QRectF bounds = scatterBounds(reference);
        const core::SweepResult result = engine.sweep(
            request,
            [&](const core::SweepRow& row) {
                SweepCell cell;
                cell.path = QString::fromStdString(row.path);
                cell.solver = QString::fromStdString(row.solver);
                cell.schedule = QString::fromStdString(row.schedule);
                cell.steps = row.steps;
                cell.nfe = row.nfe;
                cell.rmse = row.rmse;
                cell.cfg = row.cfg;
                if (pointCloud) {
                    cell.image = scatterImage(row.final, reference, bounds, {}, {}, 0.0, 240, classReference);
                } else {
                    const QVector<QImage> images = imagesFromBatch(row.final);
                    if (!images.isEmpty()) cell.image = images.front();
                }
                post([id = job.id, cell](EngineController* c) { Q_EMIT c->sweepCellReady(id, cell); });
            },
            job.cancel.get());
        if (!result.ok()) {
            const QString message = QString::fromStdString(result.error);
            const bool cancelled = result.failure == core::Failure::Cancelled;
            post([id = job.id, message, cancelled](EngineController* c) { Q_EMIT c->sweepFailed(id, message, cancelled); });
            return;
        }
        QStringList notes;
        for (const auto& note : result.notes) notes << QString::fromStdString(note);
        post([id = job.id, notes](EngineController* c) { Q_EMIT c->sweepFinished(id, notes); });
    }

    void run(core::Engine& engine, const Job& job, const LaneRun& work) {
        core::SampleRequest request = work.settings.toRequest();
        const PointModel points = pointModel(request.model);
        const bool pointCloud = points.points;
        core::HostArray reference;
        core::HostArray classReference;  // a conditional run's class, in colour
        QRectF bounds;
        QVector<core::HostArray> history;  // earlier particle positions, for the trails
        if (pointCloud) {
            reference = core::Engine::referenceSamples(points.reference, 600);
            if (!request.condition.empty()) {
                classReference = core::Engine::referenceSamples(points.reference, 300, request.condition);
            }
            bounds = scatterBounds(reference);
            request.velocityFieldResolution = 15;
            // The field's grid is centred on the origin: wide enough to cover the whole plot.
            request.fieldExtent = std::max({-bounds.left(), bounds.right(), -bounds.top(), bounds.bottom()});
        }
        // The whole trajectory (for the charts and the .npy export) only while it stays small:
        // a 128x128 folder model at batch 64 and 1000 steps would need 12 GB.
        const bool record = estimatedTrajectoryBytes(work.settings) <= kTrajectoryBudgetBytes;
        request.analyze = record;
        request.recordTrajectory = record;
        request.start = work.start;
        // The frames carry the predictions as images; DPM-Solver++(2M)'s fork needs the last one.
        request.recordPredictions = request.solver == "dpm++2m";
        // Latent bundles: the decoder shows x̂0 about ten times per run, the cheap preview between.
        request.decodeEvery = std::max(1, work.settings.steps / 10);
        const auto onFrame = [&](const core::StepFrame& step) {
            LaneFrame frame;
            frame.index = step.index;
            frame.plannedSteps = step.plannedSteps;
            frame.t = step.t;
            frame.nfe = step.nfe;
            frame.final = step.final;
            frame.pointCloud = pointCloud;
            if (pointCloud) {
                frame.states = {scatterImage(step.state, reference, bounds, history, step.velocityField,
                                             request.fieldExtent, kPlotSize, classReference)};
                frame.predictions = {
                    scatterImage(step.prediction, reference, bounds, {}, {}, 0.0, kPlotSize, classReference)};
                history.push_back(step.state);
            } else {
                frame.states = imagesFromBatch(step.statePreview.shape.empty() ? step.state : step.statePreview);
                frame.predictions =
                    imagesFromBatch(step.predictionPreview.shape.empty() ? step.prediction : step.predictionPreview);
            }
            post([lane = job.lane, id = job.id, frame](EngineController* c) { Q_EMIT c->frameReady(lane, id, frame); });
        };
        core::SampleResult result = engine.sample(request, onFrame, job.cancel.get());
        if (!result.ok()) {
            const QString message = QString::fromStdString(result.error);
            const bool cancelled = result.failure == core::Failure::Cancelled;
            post([lane = job.lane, id = job.id, message, cancelled](EngineController* c) {
                Q_EMIT c->runFailed(lane, id, message, cancelled);
            });
            return;
        }
        LaneResult summary;
        summary.nfe = result.nfe;
        summary.steps = result.steps;
        summary.seconds = result.seconds;
        summary.pathLengthRatio = result.pathLengthRatio;
        summary.straightness = result.straightness;
        summary.device = QString::fromStdString(result.device);
        for (const auto& note : result.notes) summary.notes << QString::fromStdString(note);
        if (!record) {
            summary.notes << QObject::tr("The trajectory of this run is too large to keep (over %1 MB): no charts "
                                         "or .npy export; use fewer steps or a smaller batch")
                                 .arg(kTrajectoryBudgetBytes >> 20);
        }
        summary.sampleShape = result.sampleShape;
        summary.final = result.final;
        summary.finalImage = result.finalImage.shape.empty() ? result.final : result.finalImage;
        summary.analysis = std::move(result.analysis);
        summary.trajectory = std::move(result.trajectory);
        summary.predictions = std::move(result.predictions);
        summary.times = result.times;
        summary.stepSizes = result.stepSizes;
        summary.noiseDraws = result.noiseDraws;
        {
            // Measure it against a reference later, unless a newer run for the lane is waiting.
            // Not for text-to-image checkpoints: their dopri5 solve costs hundreds of network
            // evaluations of billions of parameters (the Sweep tab measures it when asked).
            std::lock_guard lock(mutex);
            const bool checkpoint = core::specHasForm(work.settings.model.toStdString(), core::SpecForm::Checkpoint);
            if (!pending.count(job.lane) && !job.cancel->load() && !checkpoint) {
                auto measurement = std::make_shared<Job>();
                measurement->lane = job.lane;
                measurement->id = job.id;
                measurement->work = Measurement{work.settings, work.start, result.final};
                references[job.lane] = measurement;
            }
        }
        post([lane = job.lane, id = job.id, summary = std::move(summary)](EngineController* c) {
            Q_EMIT c->runFinished(lane, id, summary);
        });
        // A checkpoint lane's error is not measured: its metrics say so instead of "measuring".
        if (core::specHasForm(work.settings.model.toStdString(), core::SpecForm::Checkpoint)) {
            post([lane = job.lane, id = job.id](EngineController* c) { Q_EMIT c->referenceReady(lane, id, std::nan("")); });
        }
    }

    // Runs `emitter` on the controller's thread; dropped if the controller is gone by then.
    template <typename F>
    void post(F emitter) {
        outbox.post(std::move(emitter));
    }

    // Tells the UI about queued jobs that will never run, so no lane waits for them forever.
    // Called with the mutex held.
    void reportDropped(const std::shared_ptr<Job>& job) {
        const int lane = job->lane;
        const quint64 id = job->id;
        if (std::holds_alternative<Sweep>(job->work)) {
            post([id](EngineController* c) { Q_EMIT c->sweepFailed(id, QObject::tr("cancelled"), true); });
        } else if (std::holds_alternative<Inversion>(job->work)) {
            post([id](EngineController* c) { Q_EMIT c->inversionFailed(id, QObject::tr("cancelled"), true); });
        } else if (std::holds_alternative<Measurement>(job->work)) {
            post([lane, id](EngineController* c) { Q_EMIT c->referenceReady(lane, id, std::nan("")); });
        } else {
            post([lane, id](EngineController* c) { Q_EMIT c->runFailed(lane, id, QObject::tr("cancelled"), true); });
        }
    }

    void notifyBusy() {
        post([](EngineController* c) { Q_EMIT c->busyChanged(c->isBusy()); });
    }

    handoff::Outbox<EngineController> outbox;
    WorkerThread thread;
    mutable std::mutex mutex;
    std::condition_variable wake;
    std::condition_variable idle;
    std::map<int, std::shared_ptr<Job>> pending;  // by lane: at most one waiting run per lane
    std::map<int, std::shared_ptr<Job>> references;  // by lane: measurements, run when nothing is pending
    std::shared_ptr<Job> sweep;                      // at most one waiting sweep: the newest
    std::shared_ptr<Job> running;
    std::vector<std::pair<RunSettings, core::HostArray>> referenceCache;  // oldest first; worker thread only
    quint64 nextId = 1;
    bool stopping = false;
};

EngineController::EngineController(QObject* parent) : QObject(parent) {
    qRegisterMetaType<LaneFrame>();
    qRegisterMetaType<LaneResult>();
    qRegisterMetaType<SweepCell>();
    qRegisterMetaType<InversionView>();
    m_worker = std::make_shared<Worker>(this);
    m_worker->thread.start([worker = m_worker] { worker->loop(); });
}

EngineController::~EngineController() {
    {
        std::lock_guard lock(m_worker->mutex);
        m_worker->stopping = true;
        m_worker->pending.clear();
        m_worker->references.clear();
        m_worker->sweep.reset();
        if (m_worker->running) m_worker->running->cancel->store(true);
    }
    m_worker->wake.notify_all();
    m_worker->thread.stop(kStopWait);
    m_worker->outbox.close();  // queued tasks are dropped, and a worker let go posts nothing
}

template <typename Work>
quint64 EngineController::enqueue(int lane, Work work) {
    quint64 id = 0;
    {
        std::lock_guard lock(m_worker->mutex);
        auto job = std::make_shared<Worker::Job>();
        job->lane = lane;
        job->id = id = m_worker->nextId++;
        job->work = std::move(work);
        // Replaces a waiting job of this lane, which ends as cancelled: every job ends once.
        if (auto waiting = m_worker->pending.find(lane); waiting != m_worker->pending.end()) {
            m_worker->reportDropped(waiting->second);
        }
        m_worker->pending[lane] = job;
        m_worker->references.erase(lane);
        if (m_worker->running && m_worker->running->lane == lane) m_worker->running->cancel->store(true);
    }
    m_worker->wake.notify_all();
    Q_EMIT busyChanged(true);
    return id;
}

quint64 EngineController::submitInversion(const core::InvertRequest& request) {
    return enqueue(kInversionLane, Worker::Inversion{request});
}

quint64 EngineController::submit(int lane, const RunSettings& settings, const core::RunStart& start) {
    return enqueue(lane, Worker::LaneRun{settings, start});
}

quint64 EngineController::submitSweep(const core::SweepRequest& request) {
    quint64 id = 0;
    {
        std::lock_guard lock(m_worker->mutex);
        auto job = std::make_shared<Worker::Job>();
        job->lane = kSweepLane;
        job->id = id = m_worker->nextId++;
        job->work = Worker::Sweep{request};
        std::get<Worker::Sweep>(job->work).request.keepFinals = true;
        // The newest sweep wins: a waiting one ends as cancelled, a running one is cancelled.
        if (m_worker->sweep) m_worker->reportDropped(m_worker->sweep);
        m_worker->sweep = job;
        if (m_worker->running && m_worker->running->lane == kSweepLane) m_worker->running->cancel->store(true);
    }
    m_worker->wake.notify_all();
    Q_EMIT busyChanged(true);
    return id;
}

void EngineController::cancel(int lane) {
    std::lock_guard lock(m_worker->mutex);
    for (auto* queue : {&m_worker->pending, &m_worker->references}) {
        if (auto it = queue->find(lane); it != queue->end()) {
            m_worker->reportDropped(it->second);
            queue->erase(it);
        }
    }
    if (lane == kSweepLane && m_worker->sweep) {
        m_worker->reportDropped(m_worker->sweep);
        m_worker->sweep.reset();
    }
    if (m_worker->running && m_worker->running->lane == lane) m_worker->running->cancel->store(true);
}

void EngineController::cancelAll() {
    std::lock_guard lock(m_worker->mutex);
    for (auto* queue : {&m_worker->pending, &m_worker->references}) {
        for (const auto& [lane, job] : *queue) m_worker->reportDropped(job);
        queue->clear();
    }
    if (m_worker->sweep) m_worker->reportDropped(m_worker->sweep);
    m_worker->sweep.reset();
    if (m_worker->running) m_worker->running->cancel->store(true);
}

bool EngineController::isBusy() const {
    std::lock_guard lock(m_worker->mutex);
    return m_worker->running || m_worker->hasQueuedJobs();
}

bool EngineController::waitForIdle(int timeoutMs) {
    std::unique_lock lock(m_worker->mutex);
    return m_worker->idle.wait_for(lock, std::chrono::milliseconds(timeoutMs),
                                   [this] { return !m_worker->running && !m_worker->hasQueuedJobs(); });
}


}  // namespace flowscope::ui
