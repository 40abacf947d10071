#include "ui/SweepView.h"

#include <algorithm>
#include <cmath>

#include <QChart>
#include <QChartView>
#include <QComboBox>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineSeries>
#include <QListWidget>
#include <QLogValueAxis>
#include <QPushButton>
#include <QScrollArea>
#include <QScatterSeries>
#include <QSpinBox>
#include <QVBoxLayout>

#include "ui/EvaluationController.h"
#include "ui/GeometryCharts.h"
#include "ui/GuidanceFigures.h"
#include "ui/RunSettings.h"

namespace flowscope::ui {
namespace {

// Whether a sweep row's solver picks its own steps (and so ignores the columns' step counts).
bool choosesItsOwnSteps(const QString& solver) {
    try {
        return core::Engine::solverIsAdaptive(solver.toStdString());
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace

SweepView::SweepView(QWidget* parent) : QWidget(parent) {
    m_by = new QComboBox(this);
    m_by->addItems({tr("paths"), tr("solvers"), tr("guidance w")});
    m_by->setItemData(2, tr("Guidance scales towards the class chosen under Condition"), Qt::ToolTipRole);
    m_items = new QListWidget(this);
    m_items->setMaximumWidth(140);
    m_maxSteps = new QComboBox(this);
    for (int steps : {8, 16, 32, 64, 128}) m_maxSteps->addItem(QString::number(steps), steps);
    m_maxSteps->setCurrentIndex(4);
    m_run = new QPushButton(tr("Run sweep"), this);
    m_status = new QLabel(this);
    m_status->setWordWrap(true);

    auto* controls = new QVBoxLayout;
    auto* byRow = new QHBoxLayout;
    byRow->addWidget(new QLabel(tr("Compare"), this));
    byRow->addWidget(m_by);
    controls->addLayout(byRow);
    controls->addWidget(m_items, 1);
    auto* stepsRow = new QHBoxLayout;
    stepsRow->addWidget(new QLabel(tr("Steps 1 to"), this));
    stepsRow->addWidget(m_maxSteps);
    controls->addLayout(stepsRow);
    controls->addWidget(m_run);
    controls->addWidget(m_status);

    m_gridHost = new QWidget(this);
    m_grid = new QGridLayout(m_gridHost);
    m_grid->setSpacing(2);
    auto* scroll = new QScrollArea(this);
    scroll->setWidget(m_gridHost);
    scroll->setWidgetResizable(true);

    m_chart = new QChartView(new QChart, this);
    m_chart->chart()->setTitle(tr("Error against NFE (log-log)"));
    m_chart->setRenderHint(QPainter::Antialiasing);
    m_chart->setMinimumWidth(320);

    m_measurePanel = makeMeasurePanel();
    auto* charts = new QVBoxLayout;
    charts->addWidget(m_chart, 1);
    charts->addWidget(m_measurePanel, 1);

    auto* layout = new QHBoxLayout(this);
    layout->addLayout(controls);
    layout->addWidget(scroll, 3);
    layout->addLayout(charts, 2);

    connect(m_by, &QComboBox::currentIndexChanged, this, [this] {
        setSelectedItems(by() == By::Path     ? QStringList{"linear", "vp"}
                         : by() == By::Solver ? QStringList{"euler", "heun", "dpm++2m"}
                                              : QStringList{"0", "1", "3", "7.5"});
        m_measurePanel->setVisible(by() == By::Guidance);
    });
    connect(m_run, &QPushButton::clicked, this, &SweepView::runRequested);
    setSelectedItems({"linear", "vp"});
}

QWidget* SweepView::makeMeasurePanel() {
    auto* panel = new QWidget(this);
    m_measureSamples = new QSpinBox(panel);
    m_measureSamples->setObjectName("measureSamplesBox");
    m_measureSamples->setRange(core::kMinEvaluationSamples, 10000);
    m_measureSamples->setValue(500);
    m_measureSamples->setToolTip(tr("Samples per scale; the Frechet distance compares 128 features, so it needs more "
                                    "than 128 (flowscope-cli evaluate uses 10,000)"));
    m_measureSteps = new QSpinBox(panel);
    m_measureSteps->setObjectName("measureStepsBox");
    m_measureSteps->setRange(1, core::kMaxSteps);
    m_measureSteps->setValue(16);
    m_measure = new QPushButton(tr("Measure w"), panel);
    m_measure->setObjectName("measureButton");
    m_measure->setToolTip(tr("The shipped classifier's figures for each selected scale, towards the class under "
                             "Condition, with lane 1's path, solver, schedule and guidance method"));
    m_measureStatus = new QLabel(panel);
    m_measureStatus->setWordWrap(true);
    m_figures = new GuidanceFigures(panel);
    m_evaluation = new EvaluationController(this);

    auto* row = new QHBoxLayout;
    row->addWidget(new QLabel(tr("Samples"), panel));
    row->addWidget(m_measureSamples);
    row->addWidget(new QLabel(tr("steps"), panel));
    row->addWidget(m_measureSteps);
    row->addWidget(m_measure);
    auto* column = new QVBoxLayout(panel);
    column->setContentsMargins(0, 0, 0, 0);
    column->addLayout(row);
    column->addWidget(m_measureStatus);
    column->addWidget(m_figures, 1);
    panel->setVisible(false);

    connect(m_measure, &QPushButton::clicked, this, [this] {
        if (isMeasuring()) {
            cancelMeasuring();
        } else {
            Q_EMIT measureRequested();
        }
    });
    connect(m_evaluation, &EvaluationController::rowReady, this, [this](const core::EvaluationRow& measured) {
        m_figures->addRow(measured);
    });
    connect(m_evaluation, &EvaluationController::progressed, this, [this](int done, int total) {
        m_measureStatus->setText(tr("measuring: %1 of %2 samples...").arg(done).arg(total));
    });
    connect(m_evaluation, &EvaluationController::finished, this, [this](const EvaluationFinish& finish) {
        m_measure->setText(tr("Measure w"));
        m_measure->setEnabled(m_measurable);  // as the settings are now
        if (finish.failure != core::Failure::None) {
            m_measureStatus->setText(finish.failure == core::Failure::Cancelled ? tr("measuring cancelled")
                                                                                 : tr("cannot measure: %1").arg(finish.error));
            return;
        }
        m_figures->setFloor(finish.frechetFloor);
        m_measureStatus->setText(tr("done: %1 scales. Real images' own Frechet distance (the floor): %2.%3")
                                     .arg(m_figures->rows().size())
                                     .arg(finish.frechetFloor, 0, 'g', 3)
                                     .arg(finish.notes.isEmpty() ? QString() : QStringLiteral("\n") + finish.notes.join('\n')));
    });
    return panel;
}

void SweepView::setMeasurable(bool available, const QString& why) {
    m_measurable = available;
    m_measure->setEnabled(available || isMeasuring());
    if (!isMeasuring()) m_measureStatus->setText(available ? QString() : why);
}

int SweepView::measureSamples() const { return m_measureSamples->value(); }

int SweepView::measureSteps() const { return m_measureSteps->value(); }

bool SweepView::measure(const core::EvaluationRequest& request) {
    if (!m_evaluation->start(request)) return false;
    m_figures->clear();
    m_measure->setText(tr("Cancel"));
    m_measureStatus->setText(tr("measuring: loading the model and the classifier..."));
    return true;
}

void SweepView::cancelMeasuring() { m_evaluation->cancel(); }

bool SweepView::isMeasuring() const { return m_evaluation->isRunning(); }

SweepView::By SweepView::by() const { return static_cast<By>(std::clamp(m_by->currentIndex(), 0, 2)); }

void SweepView::setBy(By by) { m_by->setCurrentIndex(static_cast<int>(by)); }

// The guidance scales the list offers.
const QStringList kScaleItems{"0", "1", "1.5", "2", "3", "5", "7.5", "10", "15"};

std::vector<double> SweepView::selectedScales() const {
    std::vector<double> scales;
    for (const QString& item : selectedItems()) scales.push_back(item.toDouble());
    return scales;
}

QStringList SweepView::selectedItems() const {
    QStringList items;
    for (int i = 0; i < m_items->count(); ++i) {
        if (m_items->item(i)->checkState() == Qt::Checked) items << m_items->item(i)->text();
    }
    return items;
}

void SweepView::setSelectedItems(const QStringList& selected) {
    m_items->clear();
    const QStringList names = by() == By::Guidance ? kScaleItems
                                                   : engineNames(by() == By::Path ? core::NameKind::Path : core::NameKind::Solver);
    for (const QString& name : names) {
        auto* item = new QListWidgetItem(name, m_items);
        item->setFlags(item->flags() | Qt::ItemIsUserCheckable);
        item->setCheckState(selected.contains(name) ? Qt::Checked : Qt::Unchecked);
    }
}

QVector<int> SweepView::stepCounts() const {
    QVector<int> steps;
    for (int s = 1; s <= m_maxSteps->currentData().toInt(); s *= 2) steps << s;
    return steps;
}

void SweepView::setMaxSteps(int steps) {
    const int index = m_maxSteps->findData(steps);
    if (index >= 0) m_maxSteps->setCurrentIndex(index);
}

QString SweepView::rowKey(const SweepCell& cell) const {
    switch (m_runningBy) {
        case By::Path: return cell.path;
        case By::Solver: return cell.solver;
        case By::Guidance: return QString::number(cell.cfg);
    }
    return cell.path;
}

void SweepView::begin(quint64 sweepId, const QStringList& rows, const QVector<int>& steps) {
    m_sweepId = sweepId;
    m_runningBy = by();
    m_rows = rows;
    m_steps = steps;
    m_cells.clear();
    m_failed = false;
    while (QLayoutItem* item = m_grid->takeAt(0)) {
        delete item->widget();
        delete item;
    }
    for (int c = 0; c < steps.size(); ++c) {
        auto* header = new QLabel(steps[c] == 1 ? tr("1 step") : tr("%1 steps").arg(steps[c]), m_gridHost);
        header->setAlignment(Qt::AlignCenter);
        m_grid->addWidget(header, 0, c + 1);
    }
    for (int r = 0; r < rows.size(); ++r) {
        auto* label = new QLabel(m_runningBy == By::Guidance ? tr("w = %1").arg(rows[r]) : rows[r], m_gridHost);
        if (m_runningBy == By::Solver && choosesItsOwnSteps(rows[r])) {
            // Its columns are one run: it ignores the step count.
            label->setText(tr("%1\n(own steps)").arg(rows[r]));
            label->setToolTip(tr("%1 chooses its own steps (tolerance 1e-5), so every column shows the same run; "
                                 "its NFE is in each cell's tooltip.").arg(rows[r]));
        }
        m_grid->addWidget(label, r + 1, 0);
    }
    m_status->setText(tr("running %1 cells...").arg(rows.size() * steps.size()));
    refreshChart();
}

void SweepView::addCell(quint64 sweepId, const SweepCell& cell) {
    if (sweepId != m_sweepId) return;
    m_cells << cell;
    const int row = int(m_rows.indexOf(rowKey(cell)));
    const int column = int(m_steps.indexOf(cell.steps));
    if (row >= 0 && column >= 0) {
        auto* label = new QLabel(m_gridHost);
        const int scale = cell.image.width() < 64 ? 3 : 1;
        label->setPixmap(QPixmap::fromImage(cell.image.scaled(cell.image.size() * scale, Qt::KeepAspectRatio,
                                                               Qt::FastTransformation)));
        label->setToolTip(tr("%1, %2 steps: NFE %3, RMSE %4").arg(rowKey(cell)).arg(cell.steps).arg(cell.nfe).arg(cell.rmse, 0, 'g', 3));
        label->setAlignment(Qt::AlignCenter);
        m_grid->addWidget(label, row + 1, column + 1);
    }
    if (!m_failed) m_status->setText(tr("%1 of %2 cells").arg(m_cells.size()).arg(m_rows.size() * m_steps.size()));
    refreshChart();
}

void SweepView::finish(quint64 sweepId, const QStringList& notes) {
    if (sweepId != m_sweepId || m_failed) return;
    int exact = 0;
    for (const SweepCell& cell : m_cells) exact += cell.rmse == 0.0 ? 1 : 0;
    m_status->setText(tr("done: %1 cells. RMSE per value against a dopri5 reference from the same noise.%2%3")
                          .arg(m_cells.size())
                          .arg(exact == 0   ? QString()
                               : exact == 1 ? tr(" 1 exact cell (RMSE 0) is not drawn on the log axes.")
                                            : tr(" %1 exact cells (RMSE 0) are not drawn on the log axes.").arg(exact))
                          .arg(notes.isEmpty() ? QString() : QStringLiteral("\n") + notes.join('\n')));
}

void SweepView::fail(quint64 sweepId, const QString& message, bool cancelled) {
    if (sweepId != m_sweepId) return;
    m_failed = true;
    m_status->setText(cancelled ? tr("cancelled") : tr("a cell failed: %1").arg(message));
}

QColor SweepView::rowColor(int row) {
    // The lanes' four colours first, then six more, so that all nine solvers differ.
    static const QColor more[] = {QColor(255, 127, 14), QColor(140, 86, 75), QColor(227, 119, 194),
                                  QColor(127, 127, 127), QColor(188, 189, 34), QColor(23, 190, 207)};
    if (row < 4) return GeometryCharts::laneColor(row);
    return more[(row - 4) % 6];
}

void SweepView::refreshChart() {
    QChart* chart = m_chart->chart();
    chart->removeAllSeries();
    for (QAbstractAxis* axis : chart->axes()) {
        chart->removeAxis(axis);
        delete axis;
    }
    auto* x = new QLogValueAxis;
    auto* y = new QLogValueAxis;
    x->setTitleText(tr("NFE"));
    y->setTitleText(tr("RMSE"));
    x->setLabelFormat("%g");
    y->setLabelFormat("%g");
    y->setMinorTickCount(8);
    chart->addAxis(x, Qt::AlignBottom);
    chart->addAxis(y, Qt::AlignLeft);
    double yMin = 1e300, yMax = 0, xMax = 1;
    for (int r = 0; r < m_rows.size(); ++r) {
        auto* series = new QLineSeries;
        series->setColor(rowColor(r));
        series->setPointsVisible(true);
        QVector<SweepCell> row;
        for (const SweepCell& cell : m_cells) {
            if (rowKey(cell) == m_rows[r]) row << cell;
        }
        std::sort(row.begin(), row.end(), [](const SweepCell& a, const SweepCell& b) { return a.nfe < b.nfe; });
        int exact = 0;
        for (const SweepCell& cell : row) {
            if (!(cell.rmse > 0.0) || cell.nfe < 1) {  // log axes: exact cells are left out, and said so
                exact += cell.rmse == 0.0 ? 1 : 0;
                continue;
            }
            series->append(cell.nfe, cell.rmse);
            yMin = std::min(yMin, cell.rmse);
            yMax = std::max(yMax, cell.rmse);
            xMax = std::max(xMax, double(cell.nfe));
        }
        const QString name = m_runningBy == By::Guidance ? tr("w = %1").arg(m_rows[r]) : m_rows[r];
        series->setName(exact == 0 ? name
                        : exact == row.size() ? tr("%1 (exact)").arg(name)
                                              : tr("%1 (%2 exact)").arg(name).arg(exact));
        chart->addSeries(series);
        series->attachAxis(x);
        series->attachAxis(y);
    }
    // Up to four rows fit in a line above the plot; more are listed beside it, where their names
    // have room.
    chart->legend()->setAlignment(m_rows.size() > 4 ? Qt::AlignRight : Qt::AlignTop);
    x->setRange(0.8, xMax * 1.25);
    // Whole decades, so the log axis always has labelled ticks; the bottom one just inside the
    // range, or the axis leaves it unlabelled.
    if (yMax > 0) {
        y->setRange(std::pow(10.0, std::floor(std::log10(yMin))) * 0.999, std::pow(10.0, std::ceil(std::log10(yMax * 1.01))));
    }
}

}  // namespace flowscope::ui
