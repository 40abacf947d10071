#include "ui/TrainPanel.h"

#include <cmath>

#include <QAbstractSpinBox>
#include <QChart>
#include <QChartView>
#include <QCheckBox>
#include <QComboBox>
#include <QCoreApplication>
#include <QDir>
#include <QDoubleSpinBox>
#include <QEvent>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QLineSeries>
#include <QPainter>
#include <QProgressBar>
#include <QPushButton>
#include <QRegularExpression>
#include <QScrollArea>
#include <QScrollBar>
#include <QSpinBox>
#include <QStandardPaths>
#include <QValueAxis>
#include <QVBoxLayout>

#include "core/api/Engine.h"
#include "ui/DialogFolder.h"
#include "ui/RunSettings.h"

namespace flowscope::ui {
namespace {

bool isPointData(const QString& dataset) {
    return specHasForm(dataset, core::SpecForm::Points) || specHasForm(dataset, core::SpecForm::Mixture);
}

QString duration(double seconds) {
    if (seconds < 0 || !std::isfinite(seconds)) return QStringLiteral("?");
    const qint64 whole = qRound64(seconds);
    if (whole >= 3600) return QStringLiteral("%1:%2:%3").arg(whole / 3600).arg(whole / 60 % 60, 2, 10, QChar('0')).arg(whole % 60, 2, 10, QChar('0'));
    return QStringLiteral("%1:%2").arg(whole / 60).arg(whole % 60, 2, 10, QChar('0'));
}

}  // namespace

TrainPanel::TrainPanel(QWidget* parent) : QWidget(parent), m_controller(new TrainController(this)) {
    m_mode = new QComboBox(this);
    m_mode->setObjectName("trainMode");
    m_mode->addItem(tr("Train a new flow"), "train");
    m_mode->addItem(tr("Reflow (2-rectified flow)"), "reflow");
    m_mode->addItem(tr("Distill to one step"), "distill");
    m_dataset = new QComboBox(this);
    m_dataset->setObjectName("trainDataset");
    m_dataset->setEditable(true);
    for (const std::string& dataset : core::Engine::datasetMenu()) m_dataset->addItem(QString::fromStdString(dataset));
    m_dataset->setToolTip(tr("What to learn: 2-D points train in seconds, fashion-mnist images in minutes to hours "
                             "on a CPU; folder:PATH trains on your own images"));
    m_objective = new QComboBox(this);
    m_objective->setObjectName("trainObjective");
    m_objective->addItem(tr("rectified flow (linear, velocity)"), "rectified");
    m_objective->addItem(tr("DDPM (vp, epsilon)"), "diffusion");
    m_objective->addItem(tr("v-prediction (cosine)"), "v");
    m_conditional = new QCheckBox(tr("Conditional (classes, for guidance)"), this);
    m_conditional->setObjectName("trainConditional");
    m_conditional->setToolTip(tr("Learn the dataset's classes and a null class (labels dropped 10% of the time), "
                                 "so that samples can be asked for by class and guided"));
    m_source = new QComboBox(this);
    m_source->setObjectName("trainSource");
    m_source->setEditable(true);
    m_source->setToolTip(tr("The rectified flow whose ODE pairs noise with samples: bundle:DIR or shipped:NAME"));
    for (const core::ModelEntry& entry : core::Engine::modelMenu()) {
        if (entry.shipped && entry.nativePath == "linear") addSourceModel(QString::fromStdString(entry.spec));
    }
    m_iterations = new QSpinBox(this);
    m_iterations->setObjectName("trainIterations");
    m_iterations->setRange(1, 10'000'000);
    m_iterations->setSingleStep(500);
    m_batch = new QSpinBox(this);
    m_batch->setObjectName("trainBatch");
    m_batch->setRange(1, 65536);
    m_learningRate = new QDoubleSpinBox(this);
    m_learningRate->setObjectName("trainLearningRate");
    m_learningRate->setDecimals(5);
    m_learningRate->setRange(1e-5, 1.0);
    m_learningRate->setSingleStep(1e-4);
    m_width = new QSpinBox(this);
    m_width->setObjectName("trainWidth");
    m_width->setRange(0, 1024);
    m_width->setSpecialValueText(tr("auto"));
    m_width->setToolTip(tr("Hidden units (points) or base channels (images); auto: 256 or 32"));
    m_output = new QLineEdit(this);
    m_output->setObjectName("trainOutput");
    m_output->setToolTip(tr("The bundle folder to write; a folder with a checkpoint of the same settings resumes"));
    m_browse = new QPushButton(tr("..."), this);
    m_browse->setMaximumWidth(32);
    connect(m_browse, &QPushButton::clicked, this, [this] {
        const QString dir =
            QFileDialog::getExistingDirectory(this, tr("Folder for the trained model"), safeDialogFolder(m_output->text()));
        if (!dir.isEmpty()) m_output->setText(dir);
    });
    auto* outputRow = new QHBoxLayout;
    outputRow->addWidget(m_output, 1);
    outputRow->addWidget(m_browse);

    m_start = new QPushButton(tr("Start"), this);
    m_start->setObjectName("trainStart");
    m_pause = new QPushButton(tr("Pause"), this);
    m_pause->setObjectName("trainPause");
    m_cancel = new QPushButton(tr("Cancel"), this);
    m_cancel->setObjectName("trainCancel");
    m_cancel->setToolTip(tr("Stops and keeps a checkpoint: Start with the same settings resumes"));
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(m_start);
    buttons->addWidget(m_pause);
    buttons->addWidget(m_cancel);

    auto* form = new QFormLayout;
    form->addRow(tr("Mode"), m_mode);
    form->addRow(tr("Dataset"), m_dataset);
    form->addRow(tr("Objective"), m_objective);
    form->addRow(QString(), m_conditional);
    form->addRow(tr("Source"), m_source);
    form->addRow(tr("Iterations"), m_iterations);
    form->addRow(tr("Batch"), m_batch);
    form->addRow(tr("Learning rate"), m_learningRate);
    form->addRow(tr("Width"), m_width);
    form->addRow(tr("Output"), outputRow);
    auto* controls = new QVBoxLayout;
    controls->addLayout(form);
    controls->addLayout(buttons);
    m_progress = new QProgressBar(this);
    m_progress->setObjectName("trainProgress");
    m_progress->setTextVisible(true);
    controls->addWidget(m_progress);
    m_status = new QLabel(tr("Train a flow on 2-D points in seconds, then reflow it and watch its paths straighten."), this);
    m_status->setObjectName("trainStatus");
    m_status->setWordWrap(true);
    m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    controls->addWidget(m_status);
    controls->addStretch(1);

    auto* chart = new QChart;
    chart->setTitle(tr("Training loss"));
    chart->legend()->setAlignment(Qt::AlignBottom);
    chart->setMargins(QMargins(4, 4, 4, 4));
    m_rawLoss = new QLineSeries;
    m_rawLoss->setName(tr("loss"));
    m_rawLoss->setColor(QColor(160, 190, 230));
    m_smoothLoss = new QLineSeries;
    m_smoothLoss->setName(tr("smoothed"));
    m_smoothLoss->setColor(QColor(20, 80, 170));
    chart->addSeries(m_rawLoss);
    chart->addSeries(m_smoothLoss);
    m_xAxis = new QValueAxis;
    m_xAxis->setTitleText(tr("iteration"));
    m_xAxis->setLabelFormat("%d");
    m_yAxis = new QValueAxis;
    m_yAxis->setLabelFormat("%.3g");
    chart->addAxis(m_xAxis, Qt::AlignBottom);
    chart->addAxis(m_yAxis, Qt::AlignLeft);
    for (QLineSeries* series : {m_rawLoss, m_smoothLoss}) {
        series->attachAxis(m_xAxis);
        series->attachAxis(m_yAxis);
    }
    m_chart = new QChartView(chart, this);
    m_chart->setObjectName("trainLossChart");
    m_chart->setRenderHint(QPainter::Antialiasing);
    m_chart->setMinimumSize(280, 200);

    m_preview = new QLabel(this);
    m_preview->setObjectName("trainPreview");
    m_preview->setAlignment(Qt::AlignCenter);
    m_preview->setMinimumSize(200, 200);
    m_preview->setStyleSheet("background: #2a2a2a; color: #bbb;");
    m_preview->setText(tr("Samples of the model\nappear here as it learns"));
    m_previewCaption = new QLabel(this);
    m_previewCaption->setAlignment(Qt::AlignCenter);
    auto* previewColumn = new QVBoxLayout;
    previewColumn->addWidget(m_preview, 1);
    previewColumn->addWidget(m_previewCaption);

    // The settings scroll when the dock is short, so that the panel never makes the window taller
    // than a laptop's screen.
    auto* controlsWidget = new QWidget;
    controlsWidget->setLayout(controls);
    controls->setContentsMargins(0, 0, 0, 0);
    // The wheel scrolls the settings; it changes a box's value only once the box has focus (a
    // click or Tab), so that scrolling past a box does not edit it.
    for (QWidget* box : controlsWidget->findChildren<QWidget*>()) {
        if (qobject_cast<QAbstractSpinBox*>(box) || qobject_cast<QComboBox*>(box)) {
            box->setFocusPolicy(Qt::StrongFocus);
            box->installEventFilter(this);
        }
    }
    auto* controlsScroll = new QScrollArea(this);
    m_controlsScroll = controlsScroll;
    controlsScroll->setObjectName("trainSettingsScroll");
    controlsScroll->setFrameShape(QFrame::NoFrame);
    controlsScroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    controlsScroll->setWidgetResizable(true);
    controlsScroll->setWidget(controlsWidget);
    controlsScroll->setMinimumWidth(controlsWidget->minimumSizeHint().width() +
                                    controlsScroll->verticalScrollBar()->sizeHint().width());

    auto* layout = new QHBoxLayout(this);
    layout->addWidget(controlsScroll, 0);
    layout->addWidget(m_chart, 2);
    layout->addLayout(previewColumn, 1);

    connect(m_mode, &QComboBox::currentIndexChanged, this, [this] {
        updateMode();
        suggestOutput();
    });
    connect(m_dataset, &QComboBox::currentTextChanged, this, [this] {
        suggestSettings();
        suggestOutput();
    });
    connect(m_objective, &QComboBox::currentIndexChanged, this, &TrainPanel::suggestOutput);
    connect(m_source, &QComboBox::currentTextChanged, this, &TrainPanel::suggestOutput);
    connect(m_start, &QPushButton::clicked, this, &TrainPanel::start);
    connect(m_pause, &QPushButton::clicked, this, &TrainPanel::togglePause);
    connect(m_cancel, &QPushButton::clicked, this, &TrainPanel::cancel);
    connect(m_controller, &TrainController::progressed, this, &TrainPanel::onProgress);
    connect(m_controller, &TrainController::finished, this, &TrainPanel::onFinished);
    connect(m_iterations, &QSpinBox::valueChanged, this, [this](int iterations) {
        if (!m_controller->isRunning() && m_rawLoss->count() == 0) m_xAxis->setRange(0, iterations);
    });
    updateMode();
    suggestSettings();
    suggestOutput();
    setRunning(false);
    m_xAxis->setRange(0, m_iterations->value());
    m_xAxis->applyNiceNumbers();
}

TrainPanel::~TrainPanel() = default;

void TrainPanel::addSourceModel(const QString& spec) {
    if (m_source->findText(spec) < 0) m_source->addItem(spec);
}

int TrainPanel::lossPointCount() const { return int(m_rawLoss->count()); }

QString TrainPanel::statusText() const { return m_status->text(); }

core::TrainRequest TrainPanel::request() const {
    core::TrainRequest request;
    request.mode = m_mode->currentData().toString().toStdString();
    request.outDirectory = m_output->text().trimmed().toStdString();
    request.iterations = m_iterations->value();
    request.batch = m_batch->value();
    request.learningRate = m_learningRate->value();
    if (request.mode == "train") {
        const QString dataset = m_dataset->currentText().trimmed();
        request.dataset = dataset.toStdString();
        request.objective = m_objective->currentData().toString().toStdString();
        request.conditional = m_conditional->isChecked();
        request.width = m_width->value();
        // A short average for the quick 2-D runs, a long one for images.
        request.emaDecay = isPointData(dataset) ? 0.99 : 0.999;
    } else {
        request.source = m_source->currentText().trimmed().toStdString();
        request.emaDecay = 0.999;
    }
    request.checkpointEvery = std::max(100, m_iterations->value() / 10);
    request.previewEvery = std::max(10, m_iterations->value() / 20);  // 1,000 points or 16 images
    return request;
}

void TrainPanel::start() {
    if (m_controller->isRunning()) return;
    const core::TrainRequest request = this->request();
    if (request.outDirectory.empty()) {
        m_status->setText(tr("Choose an output folder for the trained model."));
        return;
    }
    m_rawLoss->clear();
    m_smoothLoss->clear();
    m_lossMax = 0.0;
    m_lastIteration = -1;
    m_progress->setRange(0, m_iterations->value());
    m_progress->setValue(0);
    m_status->setText(tr("Starting..."));
    if (m_controller->start(request)) setRunning(true);
}

void TrainPanel::togglePause() {
    if (!m_controller->isRunning()) return;
    const bool pause = !m_controller->isPaused();
    m_controller->setPaused(pause);
    m_pause->setText(pause ? tr("Resume") : tr("Pause"));
    if (pause) m_status->setText(tr("Paused at iteration %1.").arg(m_lastIteration));
}

void TrainPanel::cancel() {
    if (!m_controller->isRunning()) return;
    m_controller->cancel();
    m_status->setText(tr("Stopping (saving a checkpoint)..."));
}

void TrainPanel::onProgress(const TrainUpdate& update) {
    if (update.couplings) {
        m_progress->setRange(0, int(update.total));
        m_progress->setValue(int(update.done));
        m_progress->setFormat(tr("pairs %v/%m"));
        m_status->setText(tr("Pairing noise with samples through the source's ODE: %1 of %2").arg(update.done).arg(update.total));
        return;
    }
    m_progress->setFormat(tr("%v/%m"));
    m_progress->setRange(0, int(update.total));
    m_progress->setValue(int(update.done));
    if (m_lastIteration < 0) {
        m_xAxis->setRange(update.resumedFrom, double(update.total));
        m_xAxis->applyNiceNumbers();
    }
    if (update.done > m_lastIteration && std::isfinite(update.loss)) {
        m_rawLoss->append(double(update.done), update.loss);
        m_smoothLoss->append(double(update.done), update.smoothedLoss);
        m_lossMax = std::max(m_lossMax, update.loss);
        m_yAxis->setRange(0.0, m_lossMax * 1.05);
        m_yAxis->applyNiceNumbers();  // 0, 0.5, 1, ... rather than 0, 0.562, 1.12, ...
    }
    m_lastIteration = update.done;
    if (!m_controller->isPaused()) {
        const double rate = (update.done - update.resumedFrom) / std::max(update.seconds, 1e-9);
        m_status->setText(tr("Iteration %1 of %2%3 · loss %4 · %5 it/s · ETA %6")
                              .arg(update.done)
                              .arg(update.total)
                              .arg(update.resumedFrom > 0 ? tr(" (resumed at %1)").arg(update.resumedFrom) : QString())
                              .arg(update.smoothedLoss, 0, 'g', 4)
                              .arg(rate, 0, 'f', rate < 10 ? 2 : 0)
                              .arg(duration(update.etaSeconds)));
    }
    if (!update.preview.isNull()) {
        const QSize room = m_preview->size() - QSize(4, 4);
        const QImage image = update.preview;
        // Whole-pixel zoom for small images (crisp 28x28 digits), smooth shrink for large ones.
        const int scale = std::max(1, std::min(room.width() / std::max(1, image.width()), room.height() / std::max(1, image.height())));
        m_preview->setPixmap(QPixmap::fromImage(scale > 1 ? image.scaled(image.size() * scale) : image.scaled(room, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
        m_previewCaption->setText(tr("averaged network at iteration %1").arg(update.done));
    }
}

void TrainPanel::onFinished(const TrainFinish& finish) {
    setRunning(false);
    m_pause->setText(tr("Pause"));
    switch (finish.failure) {
        case core::Failure::None: {
            const QString spec = modelSpec(core::SpecForm::Bundle, finish.directory);
            m_status->setText(tr("Done: %1 iterations in %2, loss %3. Wrote %4 and added it to the model list.")
                                  .arg(finish.iterations - finish.resumedFrom)
                                  .arg(duration(finish.seconds))
                                  .arg(finish.loss, 0, 'g', 4)
                                  .arg(finish.directory) +
                              (finish.notes.isEmpty() ? QString() : QStringLiteral("\n") + finish.notes.join('\n')));
            addSourceModel(spec);
            Q_EMIT modelTrained(spec);
            break;
        }
        case core::Failure::Cancelled: {
            // The last progress report may lag the iteration the run stopped at.
            if (finish.iterations > 0 && finish.iterations <= m_progress->maximum()) m_progress->setValue(finish.iterations);
            QString why = finish.error;
            if (!why.isEmpty()) why[0] = why[0].toUpper();
            m_status->setText(why.startsWith(tr("Stopped")) ? why : tr("Stopped: %1").arg(why));
            break;
        }
        default:
            m_status->setText(tr("Training failed: %1").arg(finish.error));
            break;
    }
}

void TrainPanel::updateMode() {
    const bool train = m_mode->currentData().toString() == "train";
    m_dataset->setEnabled(train);
    m_objective->setEnabled(train);
    m_conditional->setEnabled(train);
    m_width->setEnabled(train);
    m_source->setEnabled(!train);
}

void TrainPanel::suggestSettings() {
    // Settings that train well here: quick 2-D runs, and small image networks a CPU can afford.
    if (isPointData(m_dataset->currentText())) {
        m_iterations->setValue(3000);
        m_batch->setValue(256);
        m_learningRate->setValue(3e-3);
        m_width->setValue(128);
    } else {
        m_iterations->setValue(5000);
        m_batch->setValue(64);
        m_learningRate->setValue(2e-3);
        m_width->setValue(16);
    }
}

void TrainPanel::suggestOutput() {
    if (m_controller->isRunning()) return;
    QString stem;
    const QString mode = m_mode->currentData().toString();
    if (mode == "train") {
        stem = m_dataset->currentText().trimmed() + "-" + m_objective->currentData().toString();
    } else {
        stem = QDir(m_source->currentText().trimmed().section(':', -1)).dirName() + "-" + mode;
    }
    stem.replace(QRegularExpression(QStringLiteral("[^A-Za-z0-9._-]+")), QStringLiteral("-"));
    const QString base = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
    m_output->setText(QDir(base).filePath(QStringLiteral("models/") + stem));
}

bool TrainPanel::eventFilter(QObject* watched, QEvent* event) {
    if (event->type() == QEvent::Wheel) {
        auto* box = qobject_cast<QWidget*>(watched);
        if (box && !box->hasFocus()) {
            QCoreApplication::sendEvent(m_controlsScroll->verticalScrollBar(), event);
            return true;
        }
    }
    return QWidget::eventFilter(watched, event);
}

void TrainPanel::setRunning(bool running) {
    m_start->setEnabled(!running);
    m_pause->setEnabled(running);
    m_cancel->setEnabled(running);
    for (QWidget* widget : {static_cast<QWidget*>(m_mode), static_cast<QWidget*>(m_iterations),
                            static_cast<QWidget*>(m_batch), static_cast<QWidget*>(m_learningRate),
                            static_cast<QWidget*>(m_output), static_cast<QWidget*>(m_browse)}) {
        widget->setEnabled(!running);
    }
    if (running) {
        m_dataset->setEnabled(false);
        m_objective->setEnabled(false);
        m_conditional->setEnabled(false);
        m_width->setEnabled(false);
        m_source->setEnabled(false);
    } else {
        updateMode();
    }
}

}  // namespace flowscope::ui
