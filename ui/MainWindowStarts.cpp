// The main window's part in where runs start: forking a lane at a step, image to image on a
// lane, and inverting a lane's sample (with its window and round-trip sweep).
#include <algorithm>

#include <QAction>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QMessageBox>
#include <QStatusBar>

#include "core/media/ImageFolderLoader.h"
#include "ui/DialogFolder.h"
#include "ui/EngineController.h"
#include "ui/InvertDialog.h"
#include "ui/LaneView.h"
#include "ui/MainWindow.h"
#include "ui/SettingsPanel.h"

namespace flowscope::ui {
namespace {

constexpr int kMostLanes = 4;
// The step counts of an inversion's round-trip sweep.
const std::vector<int> kRoundtripSteps{2, 4, 8, 16, 32, 64};

// Sample `index` of a batch [B, ...] as a batch of one [1, ...].
core::HostArray sampleOf(const core::HostArray& batch, int64_t index) {
    core::HostArray one;
    if (batch.shape.empty() || index < 0 || index >= batch.shape[0]) return one;
    one.shape = batch.shape;
    one.shape[0] = 1;
    const int64_t size = one.count();
    one.values.assign(batch.values.begin() + index * size, batch.values.begin() + (index + 1) * size);
    return one;
}

// Ancestral samplers draw fresh noise at every step: they cannot run backwards.
bool drawsNoise(const QString& solver) { return solver == "ddpm" || solver == "euler-a"; }

}  // namespace

void MainWindow::connectStarts(LaneView* lane) {
    connect(lane, &LaneView::forkRequested, this, [this, lane](int step) {
        QString error;
        if (!forkLane(lane->index(), step, &error)) statusBar()->showMessage(error, 8000);
    });
    connect(lane, &LaneView::startImageRequested, this, [this, lane] { chooseStartImage(lane->index()); });
    connect(lane, &LaneView::imageDropped, this, [this, lane](const QString& file) {
        QString error;
        if (!setStartImage(lane->index(), file, &error)) QMessageBox::warning(this, tr("Cannot start from this image"), error);
    });
    connect(lane, &LaneView::invertRequested, this, [this, lane] {
        QString error;
        if (!invertLane(lane->index(), &error)) statusBar()->showMessage(error, 8000);
    });
    connect(lane, &LaneView::invertImageRequested, this, [this, lane] {
        const QString file = QFileDialog::getOpenFileName(
            this, tr("Invert an image with lane %1's settings").arg(lane->index() + 1), dialogFolder(),
            tr("Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff *.pgm *.ppm)"));
        if (file.isEmpty()) return;
        rememberFolder(QFileInfo(file).absolutePath());
        QString error;
        if (!invertImage(lane->index(), file, &error)) QMessageBox::warning(this, tr("Cannot invert this image"), error);
    });
}

void MainWindow::createStartActions(QMenu* menu) {
    QAction* fork = menu->addAction(tr("&Fork focused lane at this step"), this, [this] {
        QString error;
        LaneView* focused = lane(m_focusedLane);
        if (focused && !forkLane(m_focusedLane, focused->currentStepIndex(), &error)) statusBar()->showMessage(error, 8000);
    });
    fork->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_F));
    QAction* image = menu->addAction(tr("Start focused lane from an &image..."), this,
                                     [this] { chooseStartImage(m_focusedLane); });
    image->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_I));
    QAction* invert = menu->addAction(tr("&Invert focused sample"), this, [this] {
        QString error;
        if (!invertLane(m_focusedLane, &error)) statusBar()->showMessage(error, 8000);
    });
    invert->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_I));

    m_invert = new InvertDialog(this);
    connect(m_controller, &EngineController::inversionReady, m_invert, &InvertDialog::showInversion);
    connect(m_controller, &EngineController::inversionFailed, m_invert,
            [this](quint64 id, const QString& message, bool) { m_invert->failInversion(id, message); });
    connect(m_controller, &EngineController::sweepCellReady, m_invert, &InvertDialog::addCell);
}

bool MainWindow::forkLane(int laneIndex, int step, QString* error) {
    LaneView* parent = lane(laneIndex);
    if (!parent || !parent->hasResult() || parent->result().trajectory.shape.empty()) {
        *error = tr("Forking needs a finished run whose states were kept: wait for lane %1, or use fewer steps or "
                    "a smaller batch").arg(laneIndex + 1);
        return false;
    }
    const LaneResult& result = parent->result();
    if (step < 0 || step + 1 >= int(result.times.size())) {
        *error = tr("Fork from a step before the last: after it there is nothing left to solve");
        return false;
    }
    if (laneCount() >= kMostLanes) {
        *error = tr("Four lanes are open: close one (Lanes in the settings) to fork into a new lane");
        return false;
    }
    auto source = std::make_shared<ForkSource>();
    source->parentLane = laneIndex;
    source->step = step;
    source->t = result.times[size_t(step)];
    source->parent = parent->runSettings().toRequest();
    source->parentRun.times = result.times;
    source->parentRun.trajectory = result.trajectory;
    source->parentRun.predictions = result.predictions;
    source->parentRun.stepSizes = result.stepSizes;
    source->parentRun.noiseDraws = result.noiseDraws;
    // Up to four of the parent's frames before the fork, evenly spread, for the child's filmstrip.
    QVector<LaneFrame> before;
    for (const LaneFrame& frame : parent->frames()) {
        if (frame.index < step) before << frame;
    }
    const int kept = std::min(4, int(before.size()));
    for (int i = 0; i < kept; ++i) {
        source->history << before[kept > 1 ? int(qint64(i) * (before.size() - 1) / (kept - 1)) : 0];
    }
    const int child = laneCount();
    m_panel->setLaneCount(child + 1);
    setLaneCount(child + 1);
    LaneView* forked = lane(child);
    forked->setLaneSettings(parent->runSettings());
    forked->setFork(source);
    focusLane(child);
    runNow();
    return true;
}

void MainWindow::chooseStartImage(int laneIndex) {
    if (!lane(laneIndex)) return;
    const QString file = QFileDialog::getOpenFileName(this, tr("Start lane %1 from an image").arg(laneIndex + 1),
                                                      dialogFolder(),
                                                      tr("Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff *.pgm *.ppm)"));
    if (file.isEmpty()) return;
    rememberFolder(QFileInfo(file).absolutePath());
    QString error;
    if (!setStartImage(laneIndex, file, &error)) QMessageBox::warning(this, tr("Cannot start from this image"), error);
}

bool MainWindow::readModelImage(const QString& file, core::HostArray* pixels, QString* error) const {
    const RunSettings shared = m_panel->shared();
    const core::ModelDescription model = core::Engine::describeModel(shared.model.toStdString(), shared.resolution);
    if (!model.ok) {
        *error = QString::fromStdString(model.error);
        return false;
    }
    if (!model.encodesImages) {
        *error = model.points ? tr("%1 makes 2-D points, not images: image to image needs an image model").arg(shared.model)
                              : tr("%1 makes latents and its bundle has no encoder to turn images into them").arg(shared.model);
        return false;
    }
    const int channels = model.latent ? 3 : int(model.sampleShape.at(0));
    try {
        *pixels = media::readImageFile(file.toStdString(), channels);
    } catch (const std::exception& failure) {
        *error = QString::fromStdString(failure.what());
        return false;
    }
    if (!model.latent && (pixels->shape[2] != model.sampleShape[1] || pixels->shape[3] != model.sampleShape[2])) {
        *error = tr("The image is %1x%2 pixels, but %3 makes %4x%5 images: resize it, or set the resolution to match")
                     .arg(pixels->shape[3])
                     .arg(pixels->shape[2])
                     .arg(shared.model)
                     .arg(model.sampleShape[2])
                     .arg(model.sampleShape[1]);
        return false;
    }
    return true;
}

bool MainWindow::setStartImage(int laneIndex, const QString& file, QString* error) {
    LaneView* target = lane(laneIndex);
    core::HostArray pixels;
    if (!target || !readModelImage(file, &pixels, error)) return false;
    target->setStartImage(QFileInfo(file).fileName(), pixels);
    scheduleRun();
    return true;
}

bool MainWindow::invertImage(int laneIndex, const QString& file, QString* error) {
    LaneView* source = lane(laneIndex);
    core::HostArray pixels;
    if (!source || !readModelImage(file, &pixels, error)) return false;
    return invertData(laneIndex, source->settings(m_panel->shared()), pixels, false,
                      tr("Inversion of %1 with lane %2's settings").arg(QFileInfo(file).fileName()).arg(laneIndex + 1), error);
}

bool MainWindow::invertLane(int laneIndex, QString* error) {
    LaneView* source = lane(laneIndex);
    if (!source || !source->hasResult() || source->result().final.shape.empty()) {
        *error = tr("Inversion needs a finished run: wait for lane %1").arg(laneIndex + 1);
        return false;
    }
    const RunSettings settings = source->runSettings();
    const int sample = std::max(0, source->canvas()->focusedSample());
    return invertData(laneIndex, settings, sampleOf(source->result().final, sample), true,
                      tr("Inversion of lane %1, sample %2 (%3, %4, %5 steps)")
                          .arg(laneIndex + 1)
                          .arg(sample + 1)
                          .arg(settings.path, settings.solver)
                          .arg(settings.steps),
                      error);
}

bool MainWindow::invertData(int laneIndex, const RunSettings& settings, const core::HostArray& images, bool isData,
                            const QString& title, QString* error) {
    if (drawsNoise(settings.solver)) {
        *error = tr("%1 draws fresh noise at every step and cannot run backwards: choose a deterministic solver for "
                    "lane %2").arg(settings.solver).arg(laneIndex + 1);
        return false;
    }
    core::InvertRequest request;
    request.settings = settings.toRequest();
    request.settings.tEnd = 1.0;
    request.images = images;
    request.imageIsData = isData;

    core::SweepRequest sweep;
    sweep.model = request.settings.model;
    sweep.resolution = request.settings.resolution;
    sweep.device = request.settings.device;
    sweep.paths = {request.settings.path};
    sweep.schedules = {request.settings.schedule};
    sweep.condition = request.settings.condition;
    sweep.guidance = request.settings.guidance;
    QStringList solvers;
    for (LaneView* other : m_lanes) {
        const QString solver = other->runSettings().solver;
        if (!solvers.contains(solver) && !drawsNoise(solver)) solvers << solver;
    }
    sweep.solvers.clear();
    for (const QString& solver : solvers) sweep.solvers.push_back(solver.toStdString());
    sweep.steps = kRoundtripSteps;
    sweep.roundtripImages = request.images;
    sweep.roundtripIsData = isData;

    const quint64 inversion = m_controller->submitInversion(request);
    const quint64 sweepId = m_controller->submitSweep(sweep);
    m_invert->begin(title, inversion, sweepId, solvers);
    m_invert->show();
    m_invert->raise();
    return true;
}

}  // namespace flowscope::ui
