#pragma once

#include <QImage>
#include <QWidget>

#include "core/api/Engine.h"

class QComboBox;
class QLabel;

namespace flowscope::ui {

// A heat map of |lane A - lane B| over the final images of two lanes (OpenCV's inferno colour
// map, 0 black to >= 1 yellow, in engine units where images span [-1, 1]).
class DifferenceView : public QWidget {
    Q_OBJECT

public:
    explicit DifferenceView(QWidget* parent = nullptr);

    void setLaneCount(int count);
    // The final samples of a lane (empty to forget them).
    void setLaneFinal(int lane, const core::HostArray& final);
    int laneA() const;
    int laneB() const;
    void setLanes(int a, int b);
    const QImage& heatMap() const { return m_heatMap; }
    double meanDifference() const { return m_mean; }

    // The heat-map grid of per-pixel |a - b| (channel mean) for two batches [B, C, H, W].
    static QImage differenceHeatMap(const core::HostArray& a, const core::HostArray& b, double* mean = nullptr);

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void refresh();
    // Shows the heat map enlarged by the largest whole factor that fits the view.
    void showHeatMap();

    QComboBox* m_a;
    QComboBox* m_b;
    QLabel* m_image;
    QLabel* m_caption;
    QVector<core::HostArray> m_finals;
    QImage m_heatMap;
    double m_mean = 0.0;
};

}  // namespace flowscope::ui
