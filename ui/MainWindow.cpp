#include "ui/MainWindow.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QComboBox>
#include <QDateTime>
#include <QDir>
#include <QLocale>
#include <QPointer>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QImageReader>
#include <QImageWriter>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QPainter>
#include <QProgressBar>
#include <QPushButton>
#include <QSaveFile>
#include <QScopeGuard>
#include <QSettings>
#include <QSpinBox>
#include <QSplitter>
#include <QStatusBar>
#include <QTimer>
#include <QVBoxLayout>

#include "core/api/Checkpoints.h"
#include "core/api/Engine.h"
#include "ui/AppSettings.h"
#include "ui/DialogFolder.h"
#include "ui/DifferenceView.h"
#include "ui/EngineController.h"
#include "ui/Exports.h"
#include "ui/GeometryCharts.h"
#include "ui/LaneView.h"
#include "ui/SettingsPanel.h"
#include "ui/SweepView.h"
#include "ui/TrainPanel.h"

namespace flowscope::ui {
namespace {

constexpr int kMaxLanes = 4;
constexpr int kDebounceMs = 150;
constexpr int kRecentBundles = 8;
constexpr int kSettingsMessageMs = 20000;

// Names, sizes and modification times of a folder's files: changes when anything is re-exported.
QString folderStamp(const QString& folder) {
    QString stamp;
    for (const QFileInfo& entry : QDir(folder).entryInfoList(QDir::Files, QDir::Name)) {
        stamp += entry.fileName() + ':' + QString::number(entry.size()) + ':' +
                 QString::number(entry.lastModified().toMSecsSinceEpoch()) + ';';
    }
    return stamp;
}

const RunSettings kDefaultLanes[kMaxLanes] = {
    {.path = "linear"}, {.path = "vp"}, {.path = "cosine"}, {.path = "linear", .solver = "heun"}};

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent), m_controller(new EngineController(this)) {
    setWindowTitle(tr("FlowScope"));
    setAcceptDrops(true);
    createWidgets();
    createActions();
    // A checkpoint's parts take a while to read: the status bar says how far (from the worker,
    // queued to this thread).
    const QPointer<MainWindow> self(this);
    core::setCheckpointLoadObserver([self](const std::string& part, uint64_t done, uint64_t total) {
        QMetaObject::invokeMethod(
            qApp,
            [self, part = QString::fromStdString(part), done, total] {
                if (!self) return;
                const QString size = QLocale().formattedDataSize(qint64(total));
                self->statusBar()->showMessage(
                    done >= total ? tr("Loaded %1 (%2)").arg(part, size)
                                  : tr("Loading %1: %2 of %3").arg(part, QLocale().formattedDataSize(qint64(done)), size),
                    done >= total ? 4000 : 0);
            },
            Qt::QueuedConnection);
    });
    connect(m_controller, &EngineController::frameReady, this, &MainWindow::onFrame);
    connect(m_controller, &EngineController::runFinished, this, &MainWindow::onFinished);
    connect(m_controller, &EngineController::runFailed, this, &MainWindow::onFailed);
    connect(m_controller, &EngineController::sweepCellReady, this,
            [this](quint64 id, const SweepCell& cell) { m_sweep->addCell(id, cell); });
    connect(m_controller, &EngineController::sweepFinished, this,
            [this](quint64 id, const QStringList& notes) { m_sweep->finish(id, notes); });
    connect(m_controller, &EngineController::sweepFailed, this,
            [this](quint64 id, const QString& message, bool cancelled) { m_sweep->fail(id, message, cancelled); });
    connect(m_controller, &EngineController::referenceReady, this, [this](int laneIndex, quint64 runId, double rmse) {
        if (LaneView* lane = this->lane(laneIndex)) lane->setReferenceError(runId, rmse);
    });
    readSettings();
    // The first run starts once the window is up (and Esc before then cancels it).
    scheduleRun();
}

MainWindow::~MainWindow() {
    m_controller->cancelAll();
    core::setCheckpointLoadObserver({});
}

QSize MainWindow::firstLaunchSize(const QSize& available) {
    constexpr int kTitleBar = 40;
    constexpr double kShare = 0.9;
    const QSize room = available - QSize(0, kTitleBar);
    return QSize(int(room.width() * kShare), int(room.height() * kShare));
}

void MainWindow::createWidgets() {
    m_panel = new SettingsPanel(this);
    auto* dock = new QDockWidget(tr("Settings"), this);
    dock->setObjectName("settingsDock");
    dock->setWidget(m_panel);
    dock->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable);
    addDockWidget(Qt::LeftDockWidgetArea, dock);

    m_charts = new GeometryCharts(this);
    auto* chartsDock = new QDockWidget(tr("Geometry"), this);
    chartsDock->setObjectName("geometryDock");
    chartsDock->setWidget(m_charts);
    chartsDock->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable |
                            QDockWidget::DockWidgetClosable);
    addDockWidget(Qt::BottomDockWidgetArea, chartsDock);
    m_difference = new DifferenceView(this);
    auto* differenceDock = new QDockWidget(tr("Difference"), this);
    differenceDock->setObjectName("differenceDock");
    differenceDock->setWidget(m_difference);
    differenceDock->setFeatures(chartsDock->features());
    addDockWidget(Qt::BottomDockWidgetArea, differenceDock);
    tabifyDockWidget(chartsDock, differenceDock);
    m_sweep = new SweepView(this);
    auto* sweepDock = new QDockWidget(tr("Sweep"), this);
    sweepDock->setObjectName("sweepDock");
    sweepDock->setWidget(m_sweep);
    sweepDock->setFeatures(chartsDock->features());
    addDockWidget(Qt::BottomDockWidgetArea, sweepDock);
    tabifyDockWidget(differenceDock, sweepDock);
    m_train = new TrainPanel(this);
    auto* trainDock = new QDockWidget(tr("Train"), this);
    trainDock->setObjectName("trainDock");
    trainDock->setWidget(m_train);
    trainDock->setFeatures(chartsDock->features());
    addDockWidget(Qt::BottomDockWidgetArea, trainDock);
    tabifyDockWidget(sweepDock, trainDock);
    chartsDock->raise();
    // The lanes are the main view: the docks start low.
    resizeDocks({chartsDock}, {250}, Qt::Vertical);
    connect(m_sweep, &SweepView::runRequested, this, &MainWindow::runSweep);
    connect(m_sweep, &SweepView::measureRequested, this, &MainWindow::measureGuidance);
    connect(m_train, &TrainPanel::modelTrained, this, [this](const QString& spec) {
        m_recentBundles.removeAll(spec);
        m_recentBundles.prepend(spec);
        while (m_recentBundles.size() > kRecentBundles) m_recentBundles.removeLast();
        m_panel->addModel(spec);
        statusBar()->showMessage(tr("Trained model added: %1").arg(spec), 6000);
    });

    m_hint = new QLabel(this);
    m_hint->setObjectName("laneHint");
    m_hint->setWordWrap(true);
    showHint(false);
    m_hint->setContentsMargins(6, 4, 6, 4);
    m_laneSplitter = new QSplitter(Qt::Horizontal, this);
    auto* central = new QWidget(this);
    auto* layout = new QVBoxLayout(central);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_hint);
    layout->addWidget(m_laneSplitter, 1);
    setCentralWidget(central);

    // The device is named by the first finished run: asking LibTorch here could initialise CUDA
    // on the UI thread, which takes seconds.
    m_device = new QLabel(tr("starting the engine..."), this);
    m_rate = new QLabel(this);
    m_progress = new QProgressBar(this);
    m_progress->setMaximumWidth(220);
    m_progress->setTextVisible(true);
    m_progress->setFormat(tr("%v/%m steps"));
    // The device on the right, where each finished run shows it again: on the left it was drawn
    // over the messages (a dropped fork, a refused file) shown there meanwhile.
    statusBar()->addWidget(m_rate);
    statusBar()->addPermanentWidget(m_device);
    statusBar()->addPermanentWidget(m_progress);

    m_debounce = new QTimer(this);
    m_debounce->setSingleShot(true);
    m_debounce->setInterval(kDebounceMs);
    connect(m_debounce, &QTimer::timeout, this, &MainWindow::runNow);
    connect(m_panel, &SettingsPanel::settingsChanged, this, [this] {
        const RunSettings shared = m_panel->shared();
        for (LaneView* lane : m_lanes) lane->setConditional(guidable(lane->settings(shared)));
        refreshLaneModels();
        updateMeasurable();
        scheduleRun();
    });
    updateMeasurable();
    connect(m_panel, &SettingsPanel::laneCountChanged, this, [this](int count) {
        setLaneCount(count);
        scheduleRun();
    });
    connect(m_panel, &SettingsPanel::openModelRequested, this, &MainWindow::openModelWithDialog);
    connect(m_panel, &SettingsPanel::viewChanged, this, [this](SampleCanvas::View view) {
        for (LaneView* lane : m_lanes) lane->setView(view);
    });
}

void MainWindow::createActions() {
    QMenu* file = menuBar()->addMenu(tr("&File"));
    QAction* openModel = file->addAction(tr("Open &model..."), this, &MainWindow::openModelWithDialog);
    openModel->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
    file->addAction(tr("Open checkpoint &file..."), this, &MainWindow::openCheckpointFileWithDialog);
    QAction* open = file->addAction(tr("&Open exported PNG..."), this, &MainWindow::openWithDialog);
    open->setShortcut(QKeySequence::Open);
    QMenu* exportMenu = file->addMenu(tr("&Export"));
    QAction* exportAction = exportMenu->addAction(tr("&Final images (PNG)..."), this, &MainWindow::exportWithDialog);
    exportAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    exportMenu->addAction(tr("Film&strip of steps (PNG)..."), this, [this] {
        const int lane = m_focusedLane;
        exportWith(tr("Export a filmstrip of lane %1").arg(lane + 1), QStringLiteral("flowscope-filmstrip%1.png").arg(lane + 1),
                   tr("PNG images (*.png)"), [this, lane](const QString& p, QString* e) { return exportFilmstrip(lane, p, e); });
    });
    exportMenu->addAction(tr("&Comparison of all lanes (PNG)..."), this, [this] {
        exportWith(tr("Export a labelled comparison"), QStringLiteral("flowscope-comparison.png"), tr("PNG images (*.png)"),
                   [this](const QString& p, QString* e) { return exportComparison(p, e); });
    });
    exportMenu->addAction(tr("&Animation (MP4)..."), this, [this] {
        const int lane = m_focusedLane;
        exportWith(tr("Export the denoising of lane %1").arg(lane + 1), QStringLiteral("flowscope-lane%1.mp4").arg(lane + 1),
                   tr("MP4 video (*.mp4);;AVI video (*.avi)"),
                   [this, lane](const QString& p, QString* e) { return exportAnimation(lane, p, e); });
    });
    exportMenu->addAction(tr("&Trajectory (NumPy .npy)..."), this, [this] {
        const int lane = m_focusedLane;
        exportWith(tr("Export the states of lane %1").arg(lane + 1), QStringLiteral("flowscope-lane%1.npy").arg(lane + 1),
                   tr("NumPy arrays (*.npy)"), [this, lane](const QString& p, QString* e) { return exportTrajectory(lane, p, e); });
    });
    exportMenu->addAction(tr("&Metrics (CSV)..."), this, [this] {
        exportWith(tr("Export the measures of every lane"), QStringLiteral("flowscope-metrics.csv"), tr("CSV files (*.csv)"),
                   [this](const QString& p, QString* e) { return exportMetrics(p, e); });
    });
    exportMenu->addAction(tr("C&harts (PNG or SVG)..."), this, [this] {
        exportWith(tr("Export the geometry charts"), QStringLiteral("flowscope-charts.svg"),
                   tr("SVG drawings (*.svg);;PNG images (*.png)"),
                   [this](const QString& p, QString* e) { return exportCharts(p, e); });
    });
    file->addSeparator();
    QAction* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
    quit->setShortcut(QKeySequence::Quit);

    QMenu* run = menuBar()->addMenu(tr("&Run"));
    QAction* runAction = run->addAction(tr("&Run now"), this, &MainWindow::runNow);
    runAction->setShortcuts({QKeySequence(Qt::CTRL | Qt::Key_Return), QKeySequence(Qt::CTRL | Qt::Key_Enter)});
    QAction* cancel = run->addAction(tr("&Cancel"), this, &MainWindow::cancelRuns);
    cancel->setShortcut(Qt::Key_Escape);
    QAction* seed = run->addAction(tr("New random &seed"), m_panel, &SettingsPanel::newRandomSeed);
    seed->setShortcut(Qt::Key_R);
    run->addSeparator();
    QAction* reset = run->addAction(tr("Reset to &defaults"), this, &MainWindow::resetToDefaults);
    Q_UNUSED(reset);
    run->addSeparator();
    createStartActions(run);

    QMenu* view = menuBar()->addMenu(tr("&View"));
    QAction* play = view->addAction(tr("&Play / pause"), this, [this] {
        if (LaneView* l = lane(m_focusedLane)) l->togglePlay();
    });
    play->setShortcut(Qt::Key_Space);
    QAction* back = view->addAction(tr("Step &back"), this, [this] {
        if (LaneView* l = lane(m_focusedLane)) l->stepBy(-1);
    });
    back->setShortcut(Qt::Key_Left);
    QAction* forward = view->addAction(tr("Step &forward"), this, [this] {
        if (LaneView* l = lane(m_focusedLane)) l->stepBy(1);
    });
    forward->setShortcut(Qt::Key_Right);
    view->addSeparator();
    QAction* zoomIn = view->addAction(tr("Zoom &in"), this, [this] {
        for (LaneView* l : m_lanes) l->canvas()->setZoomSteps(l->canvas()->zoomSteps() + 1);
    });
    zoomIn->setShortcuts({QKeySequence::ZoomIn, QKeySequence(Qt::CTRL | Qt::Key_Equal)});
    QAction* zoomOut = view->addAction(tr("Zoom &out"), this, [this] {
        for (LaneView* l : m_lanes) l->canvas()->setZoomSteps(l->canvas()->zoomSteps() - 1);
    });
    zoomOut->setShortcut(QKeySequence::ZoomOut);
    QAction* fit = view->addAction(tr("&Fit"), this, [this] {
        for (LaneView* l : m_lanes) l->canvas()->setZoomSteps(0);
    });
    fit->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_0));
    view->addSeparator();
    for (int i = 0; i < kMaxLanes; ++i) {
        QAction* focus = view->addAction(tr("Focus lane %1").arg(i + 1), this, [this, i] { focusLane(i); });
        focus->setShortcut(QKeySequence(Qt::CTRL | Qt::Key(Qt::Key_1 + i)));
    }
}

void MainWindow::showHint(bool points) {
    m_hintForPoints = points;
    // What a model's samples are decides what "landing" looks like: images, or points on the data.
    m_hint->setText(points ? tr("All lanes start from the same noise. Drag a lane's Steps slider down to 2: the "
                                "straight <b>linear</b> path still carries the points onto the data (grey), the "
                                "curved <b>vp</b> path leaves them off it. Scrub a lane's timeline to see every step.")
                           : tr("All lanes start from the same noise. Drag a lane's Steps slider down to 2: the "
                                "straight <b>linear</b> path still lands on clean images, the curved <b>vp</b> path "
                                "does not. Scrub a lane's timeline to see every step."));
}

void MainWindow::setLaneCount(int count) {
    count = std::clamp(count, 1, kMaxLanes);
    while (int(m_lanes.size()) > count) {
        const int index = int(m_lanes.size()) - 1;
        m_controller->cancel(index);
        delete m_lanes.takeLast();
    }
    while (int(m_lanes.size()) < count) {
        auto* lane = new LaneView(int(m_lanes.size()), m_laneSplitter);
        lane->setLaneSettings(kDefaultLanes[m_lanes.size()]);
        lane->setView(m_panel->view());
        connect(lane, &LaneView::settingsChanged, this, &MainWindow::scheduleRun);
        connect(lane, &LaneView::ownModelChanged, this, [this, lane](const QString& spec) {
            // The lane's own checkpoint runs as its card says; back on the Settings' model, as that one's.
            const QString model = spec.isEmpty() ? m_panel->shared().model : spec;
            const core::ModelDescription description = core::Engine::describeModel(model.toStdString());
            if (description.ok && description.takesText) applyCard(lane, description);
            lane->setConditional(guidable(lane->settings(m_panel->shared())));
        });
        connectStarts(lane);
        // Timelines align by t: scrubbing one lane shows the nearest t in the others.
        connect(lane, &LaneView::scrubbed, this, [this, lane](double t) {
            for (LaneView* other : m_lanes) {
                if (other != lane) other->showNearestTime(t);
            }
        });
        m_laneSplitter->addWidget(lane);
        m_lanes.push_back(lane);
        lane->setConditional(guidable(lane->settings(m_panel->shared())));
    }
    refreshLaneModels();
    if (m_focusedLane >= count) m_focusedLane = 0;
    if (m_charts) m_charts->removeLanesFrom(count);
    if (m_difference) m_difference->setLaneCount(count);
}

void MainWindow::focusLane(int index) {
    if (index < 0 || index >= int(m_lanes.size())) return;
    m_focusedLane = index;
    m_lanes[index]->setFocus();
    statusBar()->showMessage(tr("Lane %1 focused").arg(index + 1), 1500);
}

void MainWindow::scheduleRun() { m_debounce->start(); }

bool MainWindow::isWorking() const { return m_debounce->isActive() || m_controller->isBusy(); }

void MainWindow::runNow() {
    m_debounce->stop();
    const RunSettings shared = m_panel->shared();
    if (m_askingTrust) {
        scheduleRun();  // after the user has answered
        return;
    }
    if (!ensureTrusted(shared.model)) {
        statusBar()->showMessage(tr("%1 was not loaded: its TorchScript code is not trusted. File > Open model... "
                                    "asks again.").arg(shared.model), 10000);
        return;
    }
    for (int i = 0; i < int(m_lanes.size()); ++i) m_difference->setLaneFinal(i, {});
    m_runStartedMs = QDateTime::currentMSecsSinceEpoch();
    m_progress->setFormat(tr("%v/%m steps"));
    m_progress->setValue(0);
    m_rate->clear();
    for (LaneView* lane : m_lanes) {
        lane->setConditional(guidable(lane->settings(shared)));
        const RunSettings settings = lane->settings(shared);
        QString dropped;
        const core::RunStart start = lane->start(settings, &dropped);
        if (!dropped.isEmpty()) statusBar()->showMessage(dropped, 8000);
        lane->beginRun(m_controller->submit(lane->index(), settings, start), settings);
    }
}

void MainWindow::runSweep() {
    const RunSettings lane = m_lanes.front()->settings(m_panel->shared());
    const QStringList items = m_sweep->selectedItems();
    if (items.isEmpty()) {
        statusBar()->showMessage(tr("Choose at least one path, solver or scale to sweep"), 4000);
        return;
    }
    const bool byGuidance = m_sweep->by() == SweepView::By::Guidance;
    if (byGuidance && !guidable(lane)) {
        statusBar()->showMessage(tr("Guidance steers towards a class: choose one under Condition first"), 6000);
        return;
    }
    core::SweepRequest request;
    request.model = lane.model.toStdString();
    request.seed = lane.seed;
    // A few samples are enough to measure the error; the grid shows the first.
    request.batch = std::min(lane.batch, 4);
    request.resolution = lane.resolution;
    request.text = lane.text;  // a checkpoint's prompt and size
    request.device = lane.device.toStdString();
    request.schedules = {lane.schedule.toStdString()};
    request.referenceTolerance = 1e-5;
    request.referenceDtype = "float32";
    std::vector<std::string> names;
    for (const QString& item : items) names.push_back(item.toStdString());
    const bool byPath = m_sweep->by() == SweepView::By::Path;
    const bool bySolver = m_sweep->by() == SweepView::By::Solver;
    request.paths = byPath ? names : std::vector<std::string>{lane.path.toStdString()};
    request.solvers = bySolver ? names : std::vector<std::string>{lane.solver.toStdString()};
    // The lane's class and guidance; by guidance, its method at each selected scale.
    request.condition = lane.condition.toStdString();
    request.guidance = lane.guidance;
    if (byGuidance) {
        if (request.guidance.method == core::GuidanceMethod::None) request.guidance.method = core::GuidanceMethod::Cfg;
        request.guidance.cfgZeroSteps = 0;
        request.cfgs = m_sweep->selectedScales();
    } else if (request.guidance.method == core::GuidanceMethod::CfgZero) {
        request.guidance.cfgZeroSteps = 0;  // a sweep's cells share one reference: no zeroed steps
    }
    const QVector<int> steps = m_sweep->stepCounts();
    request.steps.assign(steps.begin(), steps.end());
    m_sweep->begin(m_controller->submitSweep(request), items, steps);
}

// The evaluate figures need a class of a model of Fashion-MNIST's shape and classes (the shipped
// classifier's). The model's answer is kept: this runs on every change of the settings.
QString MainWindow::whyNotMeasurable() const {
    const RunSettings shared = m_panel->shared();
    const QString key = shared.model + '@' + QString::number(shared.resolution);
    auto known = m_measurableModels.find(key);
    if (known == m_measurableModels.end()) {
        const core::ModelDescription model = core::Engine::describeModel(shared.model.toStdString(), shared.resolution);
        static const std::vector<std::string> fashion = core::Engine::describeModel("fashion-mnist").classes;
        const bool fits = model.ok && model.sampleShape == std::vector<int64_t>{1, 28, 28} && model.classes == fashion;
        known = m_measurableModels.insert(key, fits);
    }
    if (!known.value()) {
        return tr("The figures need a conditional image model of Fashion-MNIST's shape and classes: the shipped "
                  "classifier scores its samples");
    }
    if (shared.condition.isEmpty()) return tr("Choose a class under Condition: the figures measure guidance towards it");
    return {};
}

void MainWindow::updateMeasurable() {
    const QString why = whyNotMeasurable();
    m_sweep->setMeasurable(why.isEmpty(), why);
}

void MainWindow::measureGuidance() {
    const QString why = whyNotMeasurable();
    const std::vector<double> scales = m_sweep->selectedScales();
    if (!why.isEmpty() || scales.empty()) {
        statusBar()->showMessage(why.isEmpty() ? tr("Choose at least one scale to measure") : why, 6000);
        return;
    }
    const RunSettings lane = m_lanes.front()->settings(m_panel->shared());
    core::EvaluationRequest request;
    request.model = lane.model.toStdString();
    request.path = lane.path.toStdString();
    request.solver = lane.solver.toStdString();
    request.schedule = lane.schedule.toStdString();
    request.steps = {m_sweep->measureSteps()};
    request.samples = m_sweep->measureSamples();
    request.batch = std::min(request.samples, 250);
    request.seed = lane.seed;
    request.condition = lane.condition.toStdString();
    request.guidance = lane.guidance;
    if (request.guidance.method == core::GuidanceMethod::None) request.guidance.method = core::GuidanceMethod::Cfg;
    request.cfgs = scales;
    if (!m_sweep->measure(request)) statusBar()->showMessage(tr("A measurement is running already"), 4000);
}

void MainWindow::cancelRuns() {
    m_debounce->stop();
    m_controller->cancelAll();
    statusBar()->showMessage(tr("Cancelled"), 2000);
}

void MainWindow::onFrame(int laneIndex, quint64 runId, const LaneFrame& frame) {
    LaneView* lane = this->lane(laneIndex);
    if (!lane || !lane->addFrame(runId, frame)) return;
    if (frame.pointCloud != m_hintForPoints) showHint(frame.pointCloud);
    // Progress over all lanes: steps done over steps planned.
    int done = 0, planned = 0, nfe = 0;
    for (LaneView* l : m_lanes) {
        const auto& frames = l->frames();
        if (frames.isEmpty()) {
            planned += l->stepsBox()->value();
            continue;
        }
        done += frames.back().index;
        planned += std::max(frames.back().plannedSteps, frames.back().index);
        nfe += frames.back().nfe;
    }
    m_progress->setRange(0, std::max(1, planned));
    m_progress->setValue(done);
    const double seconds = std::max(1e-3, (QDateTime::currentMSecsSinceEpoch() - m_runStartedMs) / 1000.0);
    const double rate = nfe / seconds;
    const double eta = done > 0 ? seconds * (planned - done) / done : 0.0;
    m_rate->setText(tr("%1 NFE/s · %2 steps/s · ETA %3 s").arg(rate, 0, 'f', 1).arg(done / seconds, 0, 'f', 1).arg(eta, 0, 'f', 1));
}

void MainWindow::onFinished(int laneIndex, quint64 runId, const LaneResult& result) {
    LaneView* lane = this->lane(laneIndex);
    if (!lane || lane->runId() != runId) return;
    lane->finishRun(runId, result);
    m_difference->setLaneFinal(laneIndex, result.finalImage);
    const RunSettings settings = lane->settings(m_panel->shared());
    QString label = tr("%1: %2 %3 %4").arg(laneIndex + 1).arg(settings.path, settings.solver).arg(settings.steps);
    if (!settings.condition.isEmpty()) label += QStringLiteral(" (%1)").arg(settings.conditionLabel());
    m_charts->setLane(laneIndex, label, result.analysis, std::max(0, lane->canvas()->focusedSample()));
    m_device->setText(result.device);
    m_device->show();
    m_deviceKnown = true;
}

void MainWindow::onFailed(int laneIndex, quint64 runId, const QString& message, bool cancelled) {
    LaneView* lane = this->lane(laneIndex);
    if (!lane || lane->runId() != runId) return;
    lane->failRun(runId, message, cancelled);
    if (cancelled) return;
    statusBar()->showMessage(tr("Lane %1: %2").arg(laneIndex + 1).arg(message), 8000);
    // The failure stays in the status bar after the message times out, until the next run: the
    // steps counted and "starting the engine" would say the run is still coming.
    m_progress->setFormat(tr("lane %1 failed").arg(laneIndex + 1));
    m_rate->setText(tr("<span style='color:#d33'>Lane %1 failed: %2</span>").arg(laneIndex + 1).arg(message.toHtmlEscaped()));
    if (!m_deviceKnown) m_device->hide();
}

LaneSnapshot MainWindow::snapshot(int laneIndex) const {
    LaneSnapshot snapshot;
    const LaneView* lane = this->lane(laneIndex);
    if (!lane) return snapshot;
    snapshot.index = laneIndex;
    snapshot.settings = lane->runSettings();
    snapshot.frames = lane->frames();
    snapshot.result = lane->result();
    snapshot.referenceError = lane->referenceError();
    return snapshot;
}

bool MainWindow::exportLane(int laneIndex, const QString& path, QString* error) {
    LaneView* lane = this->lane(laneIndex);
    if (!lane || !lane->hasResult()) {
        *error = tr("lane %1 has no finished run to export yet").arg(laneIndex + 1);
        return false;
    }
    const LaneSnapshot lane_ = snapshot(laneIndex);
    return exports::savePng(exports::finalPicture(lane_), path, lane_.settings.pngChunks(lane_.result.nfe, lane_.result.sampleShape),
                            error);
}

bool MainWindow::exportFilmstrip(int laneIndex, const QString& path, QString* error) {
    if (!lane(laneIndex) || !lane(laneIndex)->hasResult()) {
        *error = tr("lane %1 has no finished run to export yet").arg(laneIndex + 1);
        return false;
    }
    const LaneSnapshot lane = snapshot(laneIndex);
    const bool states = m_panel->view() != SampleCanvas::View::Prediction;
    const bool predictions = m_panel->view() != SampleCanvas::View::State;
    return exports::savePng(exports::filmstrip(lane, states, predictions), path,
                            lane.settings.pngChunks(lane.result.nfe, lane.result.sampleShape), error);
}

bool MainWindow::exportComparison(const QString& path, QString* error) {
    QVector<LaneSnapshot> lanes;
    for (int i = 0; i < laneCount(); ++i) {
        if (!lane(i)->hasResult()) {
            *error = tr("lane %1 has not finished yet").arg(i + 1);
            return false;
        }
        lanes << snapshot(i);
    }
    return exports::savePng(exports::comparisonGrid(lanes), path, {}, error);
}

bool MainWindow::exportAnimation(int laneIndex, const QString& path, QString* error) {
    return exports::saveAnimation(snapshot(laneIndex), path, 4.0, error);
}

bool MainWindow::exportTrajectory(int laneIndex, const QString& path, QString* error) {
    if (!lane(laneIndex) || !lane(laneIndex)->hasResult()) {
        *error = tr("lane %1 has no finished run to export yet").arg(laneIndex + 1);
        return false;
    }
    return exports::saveTrajectory(snapshot(laneIndex), path, error);
}

bool MainWindow::exportMetrics(const QString& path, QString* error) {
    QVector<LaneSnapshot> lanes;
    for (int i = 0; i < laneCount(); ++i) {
        if (lane(i)->hasResult()) lanes << snapshot(i);
    }
    if (lanes.isEmpty()) {
        *error = tr("no lane has finished a run yet");
        return false;
    }
    return exports::saveMetricsCsv(lanes, path, error);
}

bool MainWindow::exportCharts(const QString& path, QString* error) { return exports::saveCharts(*m_charts, path, error); }

bool MainWindow::restoreFromPng(const QString& path, QString* error) {
    QFile file(path);
    RunSettings settings;
    QString why;
    if (!file.open(QIODevice::ReadOnly)) {
        *error = tr("cannot open %1: %2").arg(path, file.errorString());
        return false;
    }
    if (!RunSettings::fromPng(&file, &settings, &why)) {
        *error = tr("%1: %2").arg(QFileInfo(path).fileName(), why);
        return false;
    }
    m_panel->setShared(settings);  // quietly: what follows settingsChanged is redone here
    m_lanes.front()->setOwnModel(QString());  // the file's model is the Settings' now
    m_lanes.front()->setLaneSettings(settings);
    refreshLaneModels();
    updateMeasurable();
    runNow();
    statusBar()->showMessage(tr("Restored the settings of %1").arg(QFileInfo(path).fileName()), 4000);
    return true;
}

bool MainWindow::openPath(const QString& path, QString* error) {
    const QFileInfo info(path);
    if (!info.exists()) {
        *error = tr("%1 does not exist: give a PNG FlowScope exported, a bundle folder or a FLUX.1 checkpoint").arg(path);
        return false;
    }
    const bool bundle = info.isDir() && QFileInfo::exists(QDir(path).filePath(QStringLiteral("flowscope.json")));
    if (info.isDir() && bundle) {
        if (openBundle(path)) return true;
        *error = tr("%1 is not a bundle FlowScope can open").arg(path);
        return false;
    }
    if (info.isDir() || info.suffix().compare(QStringLiteral("safetensors"), Qt::CaseInsensitive) == 0) {
        // A FLUX.1 model folder or checkpoint file.
        const core::ModelDescription description =
            core::Engine::describeModel(modelSpec(core::SpecForm::Checkpoint, info.absoluteFilePath()).toStdString());
        if (description.ok) return openCheckpoint(path);
        *error = tr("%1 is neither a bundle (no flowscope.json) nor a checkpoint FlowScope can open: %2")
                     .arg(path, QString::fromStdString(description.error));
        return false;
    }
    return restoreFromPng(path, error);
}

QString MainWindow::dialogFolder() const { return safeDialogFolder(m_lastFolder); }

void MainWindow::rememberFolder(const QString& folder) {
    if (safeDialogFolder(folder) == QDir::cleanPath(QDir(folder).absolutePath())) m_lastFolder = folder;
}

void MainWindow::exportWith(const QString& title, const QString& fileName, const QString& filter,
                            const std::function<bool(const QString&, QString*)>& write) {
    const QString suggested = QDir(dialogFolder()).filePath(fileName);
    const QString path = QFileDialog::getSaveFileName(this, title, suggested, filter);
    if (path.isEmpty()) return;
    QString error;
    if (!write(path, &error)) {
        // The folder is not remembered: the next dialog must not open where saving failed.
        QMessageBox::warning(this, tr("Export failed"), error);
        return;
    }
    rememberFolder(QFileInfo(path).absolutePath());
    statusBar()->showMessage(tr("Exported %1").arg(path), 4000);
}

void MainWindow::exportWithDialog() {
    const int lane = m_focusedLane;
    exportWith(tr("Export the final images of lane %1").arg(lane + 1), QStringLiteral("flowscope-lane%1.png").arg(lane + 1),
               tr("PNG images (*.png)"), [this, lane](const QString& path, QString* error) { return exportLane(lane, path, error); });
}

void MainWindow::openWithDialog() {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open a PNG exported by FlowScope"), dialogFolder(),
                                                      tr("PNG images (*.png)"));
    if (path.isEmpty()) return;
    rememberFolder(QFileInfo(path).absolutePath());
    QString error;
    if (!restoreFromPng(path, &error)) QMessageBox::warning(this, tr("Cannot restore"), error);
}

void MainWindow::openModelWithDialog() {
    const QString folder = QFileDialog::getExistingDirectory(
        this, tr("Open a model: a bundle (a folder with flowscope.json) or a FLUX.1 model folder"), dialogFolder());
    if (folder.isEmpty()) return;
    rememberFolder(folder);
    if (QFileInfo::exists(QDir(folder).filePath(QStringLiteral("flowscope.json")))) {
        openBundle(folder);
    } else {
        openCheckpoint(folder);
    }
}

void MainWindow::openCheckpointFileWithDialog() {
    const QString file = QFileDialog::getOpenFileName(this, tr("Open a FLUX.1 checkpoint file"), dialogFolder(),
                                                      tr("Safetensors (*.safetensors)"));
    if (file.isEmpty()) return;
    rememberFolder(QFileInfo(file).absolutePath());
    openCheckpoint(file);
}

bool MainWindow::openCheckpoint(const QString& path) {
    const QString spec = modelSpec(core::SpecForm::Checkpoint, QFileInfo(path).absoluteFilePath());
    const core::ModelDescription description = core::Engine::describeModel(spec.toStdString());
    if (!description.ok) {
        QMessageBox::warning(this, tr("Cannot open model"), QString::fromStdString(description.error));
        return false;
    }
    m_panel->addModel(spec);
    // What the family's model card runs, in every lane that follows the Settings' model.
    for (LaneView* lane : m_lanes) {
        if (lane->ownModel().isEmpty()) applyCard(lane, description);
    }
    refreshLaneModels();
    statusBar()->showMessage(tr("Model: %1 (type a prompt, then Ctrl+Enter)").arg(QString::fromStdString(description.family)), 6000);
    return true;
}

// A checkpoint's card: its schedule, steps and SD3's guidance scale.
void MainWindow::applyCard(LaneView* lane, const core::ModelDescription& description) {
    RunSettings settings = lane->settings(m_panel->shared());
    settings.schedule = QString::fromStdString(description.defaultSchedule);
    settings.steps = description.defaultSteps;
    settings.guidance = {};
    if (description.defaultCfg != 1.0) {
        settings.guidance.method = core::GuidanceMethod::Cfg;
        settings.guidance.scale = description.defaultCfg;
    }
    lane->setLaneSettings(settings);
    // Also an unguided card (Turbo): the bar shows what the lane will run.
    lane->guidanceBar()->setSettings(settings.guidance);
    lane->setConditional(guidable(lane->settings(m_panel->shared())));
}

// Lanes may run another open checkpoint while the Settings' model is one.
void MainWindow::refreshLaneModels() {
    const QString current = m_panel->shared().model;
    QStringList others;
    if (core::specHasForm(current.toStdString(), core::SpecForm::Checkpoint)) {
        const QComboBox* models = m_panel->modelBox();
        for (int i = 0; i < models->count(); ++i) {
            const QString spec = models->itemText(i);
            if (spec != current && core::specHasForm(spec.toStdString(), core::SpecForm::Checkpoint)) others << spec;
        }
    }
    for (LaneView* lane : m_lanes) lane->setModelChoices(others);
}

bool MainWindow::guidable(const RunSettings& settings) const {
    if (settings.model == m_panel->shared().model) return !settings.condition.isEmpty() || m_panel->inputGuided();
    // A lane's own checkpoint: guided towards the prompt where it has a negative prompt (SD3).
    auto known = m_promptGuided.find(settings.model);
    if (known == m_promptGuided.end()) {
        known = m_promptGuided.insert(settings.model, core::Engine::describeModel(settings.model.toStdString()).negativePrompt);
    }
    return known.value();
}

bool MainWindow::openBundle(const QString& folder) {
    const QString directory = QDir(folder).absolutePath();
    const core::BundleInfo info = core::Engine::inspectBundle(directory.toStdString());
    if (!info.ok) {
        QMessageBox::warning(this, tr("Cannot open model"), QString::fromStdString(info.error));
        return false;
    }
    // Opening a bundle is the user asking again: forget earlier refusals.
    m_declined.clear();
    const QString spec = modelSpec(core::SpecForm::Bundle, directory);
    if (!ensureTrusted(spec)) return false;
    m_recentBundles.removeAll(spec);
    m_recentBundles.prepend(spec);
    while (m_recentBundles.size() > kRecentBundles) m_recentBundles.removeLast();
    m_panel->addModel(spec);
    m_train->addSourceModel(spec);
    statusBar()->showMessage(tr("Model: %1").arg(QString::fromStdString(info.name)), 4000);
    return true;
}

bool MainWindow::ensureTrusted(const QString& spec) {
    QString folder;
    if (!specHasForm(spec, core::SpecForm::Bundle, &folder)) return true;
    const QString stamp = folderStamp(folder);
    if (m_trustedStamps.value(folder) == stamp && !stamp.isEmpty()) return true;
    const core::BundleInfo info = core::Engine::inspectBundle(folder.toStdString());
    // A bundle that cannot be read is reported by the run itself, with the engine's message.
    if (!info.ok) return true;
    QString key;
    QStringList hashes;
    for (const auto& program : info.programs) {
        if (program.trusted) continue;
        key += QString::fromStdString(program.sha256);
        hashes << tr("%1\nSHA-256 %2").arg(QString::fromStdString(program.path), QString::fromStdString(program.sha256));
    }
    if (!hashes.isEmpty()) {
        if (m_declined.contains(key)) return false;
        QMessageBox box(QMessageBox::Warning, tr("Trust this model?"),
                        tr("“%1” contains TorchScript code. Loading it runs that code on this computer with your "
                           "permissions, as running a program would. Load it only if you trust where it came from.")
                            .arg(QString::fromStdString(info.name)),
                        QMessageBox::NoButton, this);
        box.setObjectName("trustDialog");
        box.setInformativeText(hashes.join("\n\n") +
                               tr("\n\nFlowScope remembers your answer for these exact files (also for flowscope-cli)."));
        QPushButton* trust = box.addButton(tr("Trust and load"), QMessageBox::AcceptRole);
        trust->setObjectName("trustButton");
        QPushButton* refuse = box.addButton(tr("Do not load"), QMessageBox::RejectRole);
        refuse->setObjectName("refuseButton");
        box.setDefaultButton(refuse);
        m_askingTrust = true;
        box.exec();
        m_askingTrust = false;
        if (box.clickedButton() != trust) {
            m_declined.insert(key);
            return false;
        }
        for (const auto& program : info.programs) {
            std::string error;
            if (!program.trusted && !core::Engine::trustProgram(program, &error)) {
                QMessageBox::warning(this, tr("Cannot remember trust"), QString::fromStdString(error));
                return false;
            }
        }
    }
    m_trustedStamps.insert(folder, stamp);
    return true;
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
    if (event->mimeData()->hasUrls()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
    const auto urls = event->mimeData()->urls();
    if (urls.isEmpty()) return;
    const QString local = urls.front().toLocalFile();
    if (QFileInfo(local).isDir()) {
        openBundle(local);
        return;
    }
    QString error;
    if (!restoreFromPng(urls.front().toLocalFile(), &error)) QMessageBox::warning(this, tr("Cannot restore"), error);
}

void MainWindow::applyDefaults() {
    RunSettings defaults;
    m_panel->setShared(defaults);
    m_panel->setLaneCount(2);
    setLaneCount(2);
    for (int i = 0; i < int(m_lanes.size()); ++i) m_lanes[i]->setLaneSettings(kDefaultLanes[i]);
    m_charts->setLogScale(false);
}

void MainWindow::resetToDefaults() {
    applyDefaults();
    AppSettings::open()->remove("run");
    runNow();
}

void MainWindow::readSettings() {
    const auto settings = AppSettings::open();
    QStringList problems;
    // Said once, now, rather than losing the settings silently when the window closes.
    if (const QString why = AppSettings::unwritableReason(); !why.isEmpty()) {
        problems << tr("Settings will not be saved: %1.").arg(why);
    }
    const auto report = qScopeGuard([&] {
        if (!problems.isEmpty()) statusBar()->showMessage(problems.join(QLatin1Char(' ')), kSettingsMessageMs);
    });
    m_restoredGeometry = restoreGeometry(settings->value("window/geometry").toByteArray());
    applyDefaults();
    m_lastFolder = settings->value("files/lastFolder").toString();
    m_recentBundles = settings->value("models/bundles").toStringList();
    m_charts->setLogScale(settings->value("view/logScale", false).toBool());
    for (const QString& spec : std::as_const(m_recentBundles)) {
        if (!specHasForm(spec, core::SpecForm::Bundle)) continue;
        m_panel->modelBox()->addItem(spec);
        m_train->addSourceModel(spec);
    }
    if (!settings->contains("run/shared")) return;  // first launch: the defaults
    RunSettings shared;
    QString why;
    if (!RunSettings::fromJson(settings->value("run/shared").toByteArray(), &shared, &why)) {
        qWarning("FlowScope: ignoring saved settings (%s); using defaults", qPrintable(why));
        problems << tr("The saved settings were not used (%1); these are the defaults.").arg(why);
        return;
    }
    m_panel->setShared(shared);
    const int lanes = std::clamp(settings->value("run/lanes", 2).toInt(), 1, kMaxLanes);
    m_panel->setLaneCount(lanes);
    setLaneCount(lanes);
    for (int i = 0; i < lanes; ++i) {
        RunSettings lane;
        if (RunSettings::fromJson(settings->value(QStringLiteral("run/lane%1").arg(i)).toByteArray(), &lane, &why)) {
            m_lanes[i]->setLaneSettings(lane);
        } else {
            problems << tr("Lane %1's saved settings were not used (%2); it has the defaults.").arg(i + 1).arg(why);
        }
    }
    restoreState(settings->value("window/state").toByteArray());
}

void MainWindow::writeSettings() const {
    const auto settings = AppSettings::open();
    settings->setValue("window/geometry", saveGeometry());
    settings->setValue("window/state", saveState());
    settings->setValue("files/lastFolder", m_lastFolder);
    settings->setValue("models/bundles", m_recentBundles);
    settings->setValue("view/logScale", m_charts->logScale());
    const RunSettings shared = m_panel->shared();
    settings->setValue("run/shared", shared.toJson());
    settings->setValue("run/lanes", int(m_lanes.size()));
    for (int i = 0; i < int(m_lanes.size()); ++i) {
        settings->setValue(QStringLiteral("run/lane%1").arg(i), m_lanes[i]->settings(shared).toJson());
    }
    settings->sync();
    // The window is closing: the status bar said so at startup if the folder was not writable.
    if (settings->status() != QSettings::NoError) {
        qWarning("FlowScope: the settings could not be saved to %s", qPrintable(settings->fileName()));
    }
}

void MainWindow::closeEvent(QCloseEvent* event) {
    writeSettings();
    m_controller->cancelAll();
    event->accept();
}

}  // namespace flowscope::ui
