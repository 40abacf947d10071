#pragma once

#include <QColor>
#include <QVector>
#include <QWidget>

#include "core/api/Engine.h"

QT_BEGIN_NAMESPACE
class QChart;
class QCheckBox;
class QChartView;
QT_END_NAMESPACE

namespace flowscope::ui {

// The geometry of every lane's latest run, in three Qt Charts: the velocity norm per step, the
// distance to the final state, and each lane's trajectory projected onto the plane of its chord
// and its main deviation (a straight path stays on the horizontal axis).
class GeometryCharts : public QWidget {
    Q_OBJECT

public:
    explicit GeometryCharts(QWidget* parent = nullptr);

    // Replaces the lane's curves; `sample` chooses whose trajectory is projected.
    void setLane(int lane, const QString& label, const core::TrajectoryAnalysis& analysis, int sample = 0);
    void removeLanesFrom(int count);
    // Renders the three charts side by side into an image (for export).
    QImage render(const QSize& size);
    static QColor laneColor(int lane);
    // The velocity and distance charts on a logarithmic axis (the "Log scale" box).
    void setLogScale(bool on);
    bool logScale() const;

    QChartView* velocityView() const { return m_velocity; }
    QChartView* distanceView() const { return m_distance; }
    QChartView* projectionView() const { return m_projection; }

private:
    void rebuild();

    struct Lane {
        QString label;
        core::TrajectoryAnalysis analysis;
        int sample = 0;
    };
    QVector<Lane> m_lanes;
    QChartView* m_velocity;
    QChartView* m_distance;
    QChartView* m_projection;
    QCheckBox* m_logScale;
};

}  // namespace flowscope::ui
