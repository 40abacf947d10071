#pragma once

#include <QColor>
#include <QMap>
#include <QVector>
#include <QWidget>

#include "core/api/EvaluationJob.h"
#include "ui/LaneFrame.h"

class QComboBox;
class QGridLayout;
class QLabel;
class QListWidget;
class QPushButton;
class QSpinBox;

QT_BEGIN_NAMESPACE
class QChartView;
QT_END_NAMESPACE

namespace flowscope::ui {

class EvaluationController;
class GuidanceFigures;

// A sweep over steps (1, 2, 4, ... up to a maximum) by path, by solver or by guidance scale (a
// conditional run's w, each against the reference solve of its own guided ODE): a grid of final
// images, filled in as cells finish, beside the log-log chart of error against NFE.
class SweepView : public QWidget {
    Q_OBJECT

public:
    explicit SweepView(QWidget* parent = nullptr);

    enum class By { Path, Solver, Guidance };
    By by() const;
    void setBy(By by);
    QStringList selectedItems() const;
    // By::Guidance: the selected scales as numbers.
    std::vector<double> selectedScales() const;
    void setSelectedItems(const QStringList& items);
    QVector<int> stepCounts() const;
    void setMaxSteps(int steps);

    // A new sweep with `rows` (paths or solvers) and these step counts begins.
    void begin(quint64 sweepId, const QStringList& rows, const QVector<int>& steps);
    void addCell(quint64 sweepId, const SweepCell& cell);
    void finish(quint64 sweepId, const QStringList& notes);
    void fail(quint64 sweepId, const QString& message, bool cancelled);

    int cellCount() const { return int(m_cells.size()); }
    const QVector<SweepCell>& cells() const { return m_cells; }
    QChartView* chartView() const { return m_chart; }

    // By guidance, for classes of models of Fashion-MNIST's shape: the evaluate figures against w
    // (GuidanceFigures), measured on `measureSamples()` samples per scale at `measureSteps()`.
    // `available` says whether the model can be measured, and if not, why.
    void setMeasurable(bool available, const QString& why);
    int measureSamples() const;
    int measureSteps() const;
    // Measures `request` (its cfgs the selected scales), filling the figures row by row.
    bool measure(const core::EvaluationRequest& request);
    void cancelMeasuring();
    bool isMeasuring() const;
    GuidanceFigures* figures() const { return m_figures; }
    QPushButton* measureButton() const { return m_measure; }
    QLabel* measureStatus() const { return m_measureStatus; }

Q_SIGNALS:
    void runRequested();
    void measureRequested();

private:
    void refreshChart();
    // A row's colour in the chart (nine distinct ones).
    static QColor rowColor(int row);
    QString rowKey(const SweepCell& cell) const;
    QWidget* makeMeasurePanel();

    QComboBox* m_by;
    QListWidget* m_items;
    QComboBox* m_maxSteps;
    QPushButton* m_run;
    QLabel* m_status;
    QWidget* m_gridHost;
    QGridLayout* m_grid;
    QChartView* m_chart;
    quint64 m_sweepId = 0;
    By m_runningBy = By::Path;  // what the sweep in the grid compares, fixed when it begins
    QStringList m_rows;
    QVector<int> m_steps;
    QVector<SweepCell> m_cells;
    bool m_failed = false;
    QWidget* m_measurePanel;
    QSpinBox* m_measureSamples;
    QSpinBox* m_measureSteps;
    QPushButton* m_measure;
    bool m_measurable = false;
    QLabel* m_measureStatus;
    GuidanceFigures* m_figures;
    EvaluationController* m_evaluation;
};

}  // namespace flowscope::ui
