#include "ui/LaneView.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>

#include <QComboBox>
#include <QContextMenuEvent>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileInfo>
#include <QGridLayout>
#include <QMenu>
#include <QMimeData>
#include <QPainter>
#include <QLabel>
#include <QResizeEvent>
#include <QSignalBlocker>
#include <QSlider>
#include <QSpinBox>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>

namespace flowscope::ui {
namespace {

constexpr qsizetype kMaxFrames = 400;
constexpr qsizetype kMaxFrameBytes = qsizetype(256) << 20;

// The steps slider spans the counts worth dragging through; the box beside it takes any count
// the engine runs (the slider then rests at its end).
constexpr int kSliderSteps = 1000;

QComboBox* makeCombo(core::NameKind kind, QWidget* parent, bool editable = false) {
    auto* combo = new QComboBox(parent);
    combo->addItems(engineNames(kind));
    combo->setEditable(editable);
    return combo;
}

}  // namespace

LaneView::LaneView(int index, QWidget* parent) : QWidget(parent), m_index(index) {
    m_path = makeCombo(core::NameKind::Path, this);
    m_path->setToolTip(tr("Probability path: linear is rectified flow (straight); vp and cosine are diffusion (curved); ve is EDM"));
    m_solver = makeCombo(core::NameKind::Solver, this);
    m_schedule = makeCombo(core::NameKind::Schedule, this, true);
    // Four lanes side by side must fit a laptop's screen: the solver's box (whose longest names
    // are the longest) may shrink below them, eliding, and grows back whenever there is room.
    // The path's names are short, and the schedule's box is edited, so they keep their width.
    m_solver->setMinimumWidth(4 * m_solver->fontMetrics().averageCharWidth() + 28);
    m_schedule->setToolTip(tr("Time grid; shift:S takes any S > 0"));
    m_steps = new QSpinBox(this);
    m_steps->setRange(1, core::kMaxSteps);
    m_steps->setValue(8);
    m_steps->setToolTip(tr("Steps (1-%1)").arg(core::kMaxSteps));
    m_stepsSlider = new QSlider(Qt::Horizontal, this);
    m_stepsSlider->setRange(1, kSliderSteps);
    m_stepsSlider->setValue(8);

    m_title = new QLabel(tr("<b>Lane %1</b>").arg(index + 1), this);
    m_stepsTitle = new QLabel(tr("Steps"), this);
    m_header = new QGridLayout;

    m_guidance = new GuidanceBar(this);
    m_guidance->setConditional(false);
    connect(m_guidance, &GuidanceBar::changed, this, &LaneView::settingsChanged);

    m_modelRow = new QWidget(this);
    m_model = new QComboBox(m_modelRow);
    m_model->setObjectName("laneModelBox");
    m_model->setToolTip(tr("Run another open checkpoint in this lane, from the same prompt, seed and noise"));
    m_model->addItem(tr("the Settings' model"), QString());
    auto* modelLayout = new QHBoxLayout(m_modelRow);
    modelLayout->setContentsMargins(0, 0, 0, 0);
    modelLayout->addWidget(new QLabel(tr("Model"), m_modelRow));
    modelLayout->addWidget(m_model, 1);
    m_modelRow->setVisible(false);
    connect(m_model, &QComboBox::currentIndexChanged, this, [this] {
        Q_EMIT ownModelChanged(ownModel());
        Q_EMIT settingsChanged();
    });

    m_startBar = new StartBar(this);
    connect(m_startBar, &StartBar::strengthChanged, this, &LaneView::settingsChanged);
    connect(m_startBar, &StartBar::clearRequested, this, [this] {
        clearStart();
        Q_EMIT settingsChanged();
    });
    setAcceptDrops(true);

    m_canvas = new SampleCanvas(this);
    connect(m_canvas, &SampleCanvas::focusChanged, this, [this] { refreshFilmstrip(); });

    m_play = new QToolButton(this);
    m_play->setText(QStringLiteral("▶"));
    m_play->setToolTip(tr("Play the run step by step (Space)"));
    m_timeline = new QSlider(Qt::Horizontal, this);
    m_timeline->setRange(0, 0);
    m_timeline->setToolTip(tr("Scrub through every step of the run (Left/Right)"));
    m_stepLabel = new QLabel(this);
    auto* timelineRow = new QHBoxLayout;
    timelineRow->addWidget(m_play);
    timelineRow->addWidget(m_timeline, 1);
    timelineRow->addWidget(m_stepLabel);

    m_filmstrip = new FilmstripBar(this);
    connect(m_filmstrip, &FilmstripBar::frameClicked, this, [this](int frame) {
        if (frame < 0) return;  // a fork's parent's step, shown for context
        m_timeline->setValue(frame);
        if (frame < m_frames.size()) Q_EMIT scrubbed(m_frames[frame].t);
    });

    m_metrics = new QLabel(this);
    m_metrics->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_metrics->setWordWrap(true);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    arrangeHeader(false);
    layout->addLayout(m_header);
    layout->addWidget(m_modelRow);
    layout->addWidget(m_guidance);
    layout->addWidget(m_startBar);
    layout->addWidget(m_canvas, 1);
    layout->addLayout(timelineRow);
    layout->addWidget(m_filmstrip);
    layout->addWidget(m_metrics);

    m_playTimer = new QTimer(this);
    m_playTimer->setInterval(120);
    connect(m_playTimer, &QTimer::timeout, this, [this] {
        if (m_timeline->value() >= m_timeline->maximum()) {
            togglePlay();
            return;
        }
        stepBy(1);
    });
    connect(m_play, &QToolButton::clicked, this, &LaneView::togglePlay);
    connect(m_timeline, &QSlider::valueChanged, this, [this](int value) {
        m_followLive = value >= m_timeline->maximum();
        showFrame(value);
    });
    connect(m_timeline, &QSlider::sliderMoved, this, [this](int value) {
        if (value < m_frames.size()) Q_EMIT scrubbed(m_frames[value].t);
    });

    connect(m_stepsSlider, &QSlider::valueChanged, m_steps, &QSpinBox::setValue);
    connect(m_steps, &QSpinBox::valueChanged, this, [this](int value) {
        const QSignalBlocker block(m_stepsSlider);
        m_stepsSlider->setValue(value);
        Q_EMIT settingsChanged();
    });
    for (QComboBox* combo : {m_path, m_solver}) {
        connect(combo, &QComboBox::currentTextChanged, this, &LaneView::settingsChanged);
    }
    connect(m_schedule, &QComboBox::currentTextChanged, this, &LaneView::settingsChanged);
}

void LaneView::setModelChoices(const QStringList& specs) {
    const QString chosen = ownModel();
    const QSignalBlocker block(m_model);
    while (m_model->count() > 1) m_model->removeItem(1);
    for (const QString& spec : specs) {
        // The folder's or file's name; the whole spec in the tooltip.
        const QString name = QFileInfo(spec.section(':', 1)).fileName();
        m_model->addItem(name.isEmpty() ? spec : name, spec);
        m_model->setItemData(m_model->count() - 1, spec, Qt::ToolTipRole);
    }
    const int kept = m_model->findData(chosen);
    m_model->setCurrentIndex(kept > 0 ? kept : 0);
    m_modelRow->setVisible(!specs.isEmpty());
    if (kept <= 0 && !chosen.isEmpty()) Q_EMIT ownModelChanged(QString());  // its model was closed
}

QString LaneView::ownModel() const { return m_model->currentData().toString(); }

void LaneView::setOwnModel(const QString& spec) {
    const QSignalBlocker block(m_model);  // as the user's choice would, but without its card
    const int index = m_model->findData(spec);
    m_model->setCurrentIndex(index > 0 ? index : 0);
}

RunSettings LaneView::settings(const RunSettings& shared) const {
    RunSettings settings = shared;
    if (!ownModel().isEmpty()) {
        settings.model = ownModel();
        settings.condition.clear();  // the Settings' class is the Settings' model's
    }
    settings.path = m_path->currentText();
    settings.solver = m_solver->currentText();
    settings.schedule = m_schedule->currentText().trimmed();
    settings.steps = m_steps->value();
    // Guidance steers towards a class or an input of the run: without one the run is unguided.
    settings.guidance = m_conditional ? m_guidance->settings() : core::GuidanceSettings{};
    return settings;
}

void LaneView::setStartImage(const QString& name, const core::HostArray& pixels) {
    m_fork.reset();
    m_startImage = pixels;
    const QVector<QImage> images = imagesFromBatch(pixels);
    m_startBar->showImage(name, images.isEmpty() ? QImage() : images.front());
}

void LaneView::setFork(std::shared_ptr<const ForkSource> fork) {
    m_startImage = {};
    m_fork = std::move(fork);
    refreshFilmstrip();
    m_startBar->showFork(tr("fork of lane %1 at step %2 (t = %3)")
                             .arg(m_fork->parentLane + 1)
                             .arg(m_fork->step)
                             .arg(m_fork->t, 0, 'f', 3));
}

void LaneView::clearStart() {
    m_startImage = {};
    m_fork.reset();
    m_startBar->showNoise();
}

core::RunStart LaneView::start(const RunSettings& settings, QString* dropped) {
    core::RunStart start;
    if (hasStartImage()) {
        start.kind = core::RunStart::Kind::Image;
        start.image = m_startImage;
        start.time = 1.0 - m_startBar->strength();
        return start;
    }
    if (!m_fork) return start;
    const core::SampleRequest child = settings.toRequest();
    const core::SampleRequest& parent = m_fork->parent;
    if (child.model != parent.model || child.seed != parent.seed || child.batch != parent.batch ||
        child.resolution != parent.resolution || child.condition != parent.condition) {
        *dropped = tr("Lane %1 no longer forks lane %2: the model, seed, batch or class changed; it starts from the "
                      "seed's noise")
                       .arg(m_index + 1)
                       .arg(m_fork->parentLane + 1);
        clearStart();
        return start;
    }
    try {
        return core::Engine::forkStart(parent, m_fork->parentRun, m_fork->step, child);
    } catch (const std::invalid_argument& error) {
        *dropped = QString::fromStdString(error.what());
        clearStart();
        return start;
    }
}

int LaneView::currentStepIndex() const {
    const int frame = currentFrame();
    return frame >= 0 && frame < m_frames.size() ? m_frames[frame].index : -1;
}

void LaneView::contextMenuEvent(QContextMenuEvent* event) {
    QMenu menu(this);
    const int frame = currentFrame();
    const bool canFork = m_hasResult && !m_result.trajectory.shape.empty() && frame >= 0 && frame < m_frames.size() &&
                         !m_frames[frame].final;
    QAction* fork = menu.addAction(tr("Fork from this step"), this, [this] { Q_EMIT forkRequested(currentStepIndex()); });
    fork->setEnabled(canFork);
    fork->setToolTip(tr("A new lane continues this run from the step shown, with settings of its own"));
    menu.addAction(tr("Start from an image..."), this, &LaneView::startImageRequested);
    QAction* invert = menu.addAction(tr("Invert the focused sample"), this, &LaneView::invertRequested);
    invert->setEnabled(m_hasResult);
    menu.addAction(tr("Invert an image..."), this, &LaneView::invertImageRequested);
    QAction* clear = menu.addAction(tr("Start from the seed's noise"), this, [this] {
        clearStart();
        Q_EMIT settingsChanged();
    });
    clear->setEnabled(hasStartImage() || m_fork);
    menu.exec(event->globalPos());
}

void LaneView::dragEnterEvent(QDragEnterEvent* event) {
    const auto urls = event->mimeData()->urls();
    if (urls.size() == 1 && urls.front().isLocalFile() && QFileInfo(urls.front().toLocalFile()).isFile()) {
        event->acceptProposedAction();
    }
}

void LaneView::dropEvent(QDropEvent* event) {
    const auto urls = event->mimeData()->urls();
    if (urls.isEmpty()) return;
    event->acceptProposedAction();
    Q_EMIT imageDropped(urls.front().toLocalFile());
}

void LaneView::setLaneSettings(const RunSettings& settings) {
    const QSignalBlocker b1(m_path), b2(m_solver), b3(m_schedule), b4(m_steps), b5(m_stepsSlider);
    // RunSettings::fromJson refuses what these boxes cannot show (names the engine does not
    // know, counts past its limits), so nothing is clamped or replaced here.
    m_path->setCurrentText(settings.path);
    m_solver->setCurrentText(settings.solver);
    m_schedule->setCurrentText(settings.schedule);
    m_steps->setValue(settings.steps);
    m_stepsSlider->setValue(m_steps->value());
    if (!settings.condition.isEmpty() || settings.guidance.guides()) m_guidance->setSettings(settings.guidance);
}

void LaneView::beginRun(quint64 runId, const RunSettings& settings) {
    m_runId = runId;
    m_runSettings = settings;
    m_result = {};
    m_frames.clear();
    m_frameBytes = 0;
    m_followLive = true;
    m_hasResult = false;
    m_referenceError = -1.0;
    const QSignalBlocker block(m_timeline);
    m_timeline->setRange(0, 0);
    m_filmstrip->setThumbnails({}, {});
    m_metrics->setText(tr("running..."));
    // The old frame stays until the first new one arrives (no flash); its step does not.
    updateStepLabel();
    m_canvas->setPlaceholder({});
}

bool LaneView::addFrame(quint64 runId, const LaneFrame& frame) {
    if (runId != m_runId) return false;  // a frame from a run that was replaced
    m_frames.push_back(frame);
    for (const auto* images : {&frame.states, &frame.predictions}) {
        for (const QImage& image : *images) m_frameBytes += image.sizeInBytes();
    }
    // Long or large runs keep every other frame once there are too many or they take too much
    // memory, always the first and the newest, so the timeline stays bounded.
    if (m_frames.size() > kMaxFrames || m_frameBytes > kMaxFrameBytes) {
        QVector<LaneFrame> thinned;
        thinned.reserve(m_frames.size() / 2 + 2);
        m_frameBytes = 0;
        for (qsizetype i = 0; i < m_frames.size(); ++i) {
            if (i % 2 != 0 && i + 1 != m_frames.size()) continue;
            thinned.push_back(m_frames[i]);
            for (const auto* images : {&m_frames[i].states, &m_frames[i].predictions}) {
                for (const QImage& image : *images) m_frameBytes += image.sizeInBytes();
            }
        }
        m_frames = std::move(thinned);
        if (!m_followLive) {
            // The shown frame moved to half its index.
            const QSignalBlocker block(m_timeline);
            m_timeline->setRange(0, int(m_frames.size()) - 1);
            m_timeline->setValue(m_timeline->value() / 2);
            showFrame(m_timeline->value());
        }
    }
    const QSignalBlocker block(m_timeline);
    m_timeline->setRange(0, int(m_frames.size()) - 1);
    if (m_followLive) {
        m_timeline->setValue(m_timeline->maximum());
        showFrame(m_timeline->maximum());
    } else {
        updateStepLabel();
    }
    return true;
}

void LaneView::finishRun(quint64 runId, const LaneResult& result) {
    if (runId != m_runId) return;
    m_result = result;
    m_hasResult = true;
    m_metrics->setText(metricsText());
    refreshFilmstrip();
}

void LaneView::failRun(quint64 runId, const QString& message, bool cancelled) {
    if (runId != m_runId) return;
    m_metrics->setText(cancelled ? tr("cancelled") : tr("<span style='color:#d33'>%1</span>").arg(message.toHtmlEscaped()));
    if (!cancelled && m_frames.isEmpty()) {
        // Refused before its first step: the previous run's picture belongs to other settings.
        m_canvas->setImages({}, {});
        m_canvas->setPlaceholder(tr("No result with these settings: the reason is below."));
    }
}

void LaneView::refreshFilmstrip() {
    // Up to 12 frames spread evenly over the run, first and last included; the first sample (or
    // the focused one) as x_t.
    QVector<QImage> thumbnails;
    QVector<int> indices;
    const int sample = std::max(0, m_canvas->focusedSample());
    // A fork's parent before the fork, greyed: the steps this lane did not take itself.
    if (m_fork) {
        for (const LaneFrame& frame : m_fork->history) {
            if (frame.states.isEmpty()) continue;
            QImage greyed = frame.states.value(sample, frame.states.front()).convertToFormat(QImage::Format_ARGB32);
            QPainter painter(&greyed);
            painter.fillRect(greyed.rect(), QColor(150, 150, 150, 170));
            painter.end();
            thumbnails << greyed;
            indices << -1;
        }
    }
    const int count = int(m_frames.size());
    const int shown = std::min(count, 12 - int(thumbnails.size()));
    for (int i = 0; i < shown; ++i) {
        const int frame = shown > 1 ? int(qint64(i) * (count - 1) / (shown - 1)) : 0;
        const auto& states = m_frames[frame].states;
        if (states.isEmpty()) continue;
        thumbnails << states.value(sample, states.front());
        indices << frame;
    }
    m_filmstrip->setThumbnails(thumbnails, indices);
    m_filmstrip->setCurrentFrame(m_timeline->value());
}

void LaneView::setReferenceError(quint64 runId, double rmse) {
    if (runId != m_runId) return;
    m_referenceError = rmse;
    m_metrics->setText(metricsText());
}

void LaneView::showNearestTime(double t) {
    if (m_frames.isEmpty()) return;
    int best = 0;
    for (int i = 1; i < m_frames.size(); ++i) {
        if (std::abs(m_frames[i].t - t) < std::abs(m_frames[best].t - t)) best = i;
    }
    m_timeline->setValue(best);
}

QString LaneView::statusText() const { return m_metrics->text(); }

QString LaneView::metricsText() const {
    if (!m_hasResult) return {};
    QString text = tr("NFE %1 · path length ratio %2 · straightness %3 · %4 s")
                       .arg(m_result.nfe)
                       .arg(m_result.pathLengthRatio, 0, 'f', 3)
                       .arg(m_result.straightness, 0, 'g', 3)
                       .arg(m_result.seconds, 0, 'f', 2);
    if (std::isnan(m_referenceError)) {
        text += tr(" · RMSE vs reference: not measured");
    } else {
        text += m_referenceError >= 0.0 ? tr(" · RMSE vs reference %1").arg(m_referenceError, 0, 'g', 3)
                                        : tr(" · RMSE vs reference: measuring...");
    }
    for (const QString& note : m_result.notes) text += QStringLiteral("\n") + note;
    return text;
}

int LaneView::currentFrame() const { return m_timeline->value(); }

void LaneView::showFrame(int index) {
    if (index < 0 || index >= m_frames.size()) return;
    const LaneFrame& frame = m_frames[index];
    m_canvas->setImages(frame.states, frame.predictions, frame.pointCloud);
    m_filmstrip->setCurrentFrame(index);
    updateStepLabel();
}

void LaneView::updateStepLabel() {
    const int index = m_timeline->value();
    if (index < 0 || index >= m_frames.size()) {
        m_stepLabel->clear();
        return;
    }
    const LaneFrame& frame = m_frames[index];
    const QString total = frame.plannedSteps > 0 ? QString::number(frame.plannedSteps) : QStringLiteral("?");
    // Compact: the NFE is in the measures below the filmstrip.
    m_stepLabel->setText(m_compact ? tr("%1/%2 · t %3").arg(frame.index).arg(total).arg(frame.t, 0, 'f', 3)
                                   : tr("step %1/%2 · t %3 · NFE %4")
                                         .arg(frame.index)
                                         .arg(total)
                                         .arg(frame.t, 0, 'f', 3)
                                         .arg(frame.nfe));
}

void LaneView::arrangeHeader(bool compact) {
    for (QWidget* widget : std::initializer_list<QWidget*>{m_title, m_path, m_solver, m_schedule, m_stepsTitle,
                                                            m_stepsSlider, m_steps}) {
        m_header->removeWidget(widget);
    }
    const int row = compact ? 1 : 0;
    if (compact) {
        m_header->addWidget(m_title, 0, 0, 1, 4);
        m_header->addWidget(m_path, 1, 0, 1, 2);
    } else {
        m_header->addWidget(m_title, 0, 0);
        m_header->addWidget(m_path, 0, 1);
    }
    m_header->addWidget(m_solver, row, 2);
    m_header->addWidget(m_schedule, row, 3);
    m_header->addWidget(m_stepsTitle, row + 1, 0);
    m_header->addWidget(m_stepsSlider, row + 1, 1, 1, 2);
    m_header->addWidget(m_steps, row + 1, 3);
    m_stepLabel->setMinimumWidth(m_stepLabel->fontMetrics().horizontalAdvance(
        compact ? tr("88/88 · t 0.000") : tr("step 88/88 · t 0.000 · NFE 888")));
    m_compact = compact;
    updateStepLabel();
}

void LaneView::resizeEvent(QResizeEvent* event) {
    QWidget::resizeEvent(event);
    // The title and the three boxes at their natural widths, on one line.
    const int spacing = std::max(0, m_header->horizontalSpacing());
    const QMargins margins = layout()->contentsMargins();
    const int oneLine = m_title->sizeHint().width() + m_path->sizeHint().width() + m_solver->sizeHint().width() +
                        m_schedule->sizeHint().width() + 3 * spacing + margins.left() + margins.right();
    const bool compact = width() < oneLine;
    if (compact != m_compact) arrangeHeader(compact);
}

void LaneView::togglePlay() {
    if (m_playTimer->isActive()) {
        m_playTimer->stop();
        m_play->setText(QStringLiteral("▶"));
        return;
    }
    if (m_frames.isEmpty()) return;
    if (m_timeline->value() >= m_timeline->maximum()) m_timeline->setValue(0);
    m_playTimer->start();
    m_play->setText(QStringLiteral("⏸"));
}

void LaneView::stepBy(int delta) {
    m_timeline->setValue(std::clamp(m_timeline->value() + delta, 0, m_timeline->maximum()));
    if (m_timeline->value() < m_frames.size()) Q_EMIT scrubbed(m_frames[m_timeline->value()].t);
}

}  // namespace flowscope::ui
