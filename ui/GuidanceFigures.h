#pragma once

#include <QWidget>

#include <vector>

#include "core/api/EvaluationJob.h"

QT_BEGIN_NAMESPACE
class QChartView;
QT_END_NAMESPACE

namespace flowscope::ui {

// The evaluate figures of a guided model against the guidance scale w, one small chart each:
// how often the classifier names the class, the Frechet distance to that class's test images (with
// the real images' floor), the samples' diversity, and the paths' straightness. Together they show
// guidance's trade-off (Ho and Salimans 2022): accuracy up and diversity down as w grows, the
// distance first down, then up.
class GuidanceFigures : public QWidget {
    Q_OBJECT

public:
    explicit GuidanceFigures(QWidget* parent = nullptr);

    void clear();
    // Adds a row (one scale at one step count); the charts draw a line per step count.
    void addRow(const core::EvaluationRow& row);
    void setFloor(double frechetFloor);
    const std::vector<core::EvaluationRow>& rows() const { return m_rows; }
    // 0 accuracy, 1 Frechet distance, 2 diversity, 3 straightness.
    QChartView* chart(int figure) const { return m_charts[figure]; }

private:
    void refresh();

    QChartView* m_charts[4];
    std::vector<core::EvaluationRow> m_rows;
    double m_floor = -1.0;
};

}  // namespace flowscope::ui
