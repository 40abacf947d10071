#include "ui/GeometryCharts.h"

#include <algorithm>
#include <cmath>

#include <QChart>
#include <QChartView>
#include <QHBoxLayout>
#include <QLineSeries>
#include <QLogValueAxis>
#include <QPainter>
#include <QValueAxis>

namespace flowscope::ui {
namespace {

QChartView* makeView(const QString& title, QWidget* parent) {
    auto* chart = new QChart;
    chart->setTitle(title);
    chart->legend()->setAlignment(Qt::AlignBottom);
    QFont small = chart->font();
    small.setPointSizeF(std::max(6.0, small.pointSizeF() * 0.8));
    chart->legend()->setFont(small);
    QFont titleFont = chart->titleFont();
    titleFont.setPointSizeF(std::max(7.0, titleFont.pointSizeF() * 0.9));
    chart->setTitleFont(titleFont);
    chart->setMargins(QMargins(4, 4, 4, 4));
    auto* view = new QChartView(chart, parent);
    view->setRenderHint(QPainter::Antialiasing);
    view->setMinimumHeight(220);
    return view;
}

// Replaces all series of a chart with one line per lane and fits the axes.
void fill(QChart* chart, const QVector<QVector<QPointF>>& lines, const QStringList& labels, const QString& xTitle,
          const QString& yTitle, bool equalAspect = false) {
    chart->removeAllSeries();
    for (QAbstractAxis* axis : chart->axes()) {
        chart->removeAxis(axis);
        delete axis;
    }
    auto* x = new QValueAxis;
    auto* y = new QValueAxis;
    QFont small = chart->font();
    small.setPointSizeF(std::max(6.0, small.pointSizeF() * 0.8));
    for (QValueAxis* axis : {x, y}) {
        axis->setLabelsFont(small);
        axis->setTitleFont(small);
        axis->setTickCount(5);
        axis->setLabelFormat("%.2g");
    }
    x->setTitleText(xTitle);
    y->setTitleText(yTitle);
    chart->addAxis(x, Qt::AlignBottom);
    chart->addAxis(y, Qt::AlignLeft);
    double xMin = 0, xMax = 1, yMin = 0, yMax = 1e-9;
    bool first = true;
    for (int i = 0; i < lines.size(); ++i) {
        auto* series = new QLineSeries;
        series->setName(labels.value(i));
        series->setColor(GeometryCharts::laneColor(i));
        series->setPointsVisible(lines[i].size() <= 40);
        for (const QPointF& p : lines[i]) {
            if (!std::isfinite(p.x()) || !std::isfinite(p.y())) continue;
            series->append(p);
            if (first) {
                xMin = xMax = p.x();
                yMin = yMax = p.y();
                first = false;
            }
            xMin = std::min(xMin, p.x());
            xMax = std::max(xMax, p.x());
            yMin = std::min(yMin, p.y());
            yMax = std::max(yMax, p.y());
        }
        chart->addSeries(series);
        series->attachAxis(x);
        series->attachAxis(y);
    }
    if (equalAspect) {
        yMin = std::min(0.0, yMin);
        yMax = std::max(yMax, 0.1);
    } else {
        yMin = std::min(0.0, yMin);
    }
    if (xMax <= xMin) xMax = xMin + 1;
    if (yMax <= yMin) yMax = yMin + 1;
    x->setRange(xMin, xMax);
    y->setRange(yMin, yMax + 0.05 * (yMax - yMin));
    // Round ends and steps (0, 0.05, 0.1, ... rather than 0, 0.049, 0.099, ...).
    x->applyNiceNumbers();
    y->applyNiceNumbers();
}

}  // namespace

GeometryCharts::GeometryCharts(QWidget* parent) : QWidget(parent) {
    m_velocity = makeView(tr("Velocity norm per step"), this);
    m_distance = makeView(tr("Distance to the final state"), this);
    m_projection = makeView(tr("Trajectory in the chord plane"), this);
    m_projection->setToolTip(tr("Each lane's first (or focused) sample: along the chord from start (0) to end (1) "
                                "horizontally, its largest deviation from the chord vertically. Straight paths stay flat."));
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_velocity);
    layout->addWidget(m_distance);
    layout->addWidget(m_projection);
}

QColor GeometryCharts::laneColor(int lane) {
    static const QColor colors[] = {QColor(31, 119, 180), QColor(214, 39, 40), QColor(44, 160, 44), QColor(148, 103, 189)};
    return colors[std::clamp(lane, 0, 3)];
}

void GeometryCharts::setLane(int lane, const QString& label, const core::TrajectoryAnalysis& analysis, int sample) {
    if (lane < 0) return;
    if (m_lanes.size() <= lane) m_lanes.resize(lane + 1);
    m_lanes[lane] = {label, analysis, sample};
    rebuild();
}

void GeometryCharts::removeLanesFrom(int count) {
    if (m_lanes.size() > count) {
        m_lanes.resize(count);
        rebuild();
    }
}

void GeometryCharts::rebuild() {
    QVector<QVector<QPointF>> velocity, distance, projection;
    QStringList labels;
    for (const Lane& lane : m_lanes) {
        labels << lane.label;
        const auto& a = lane.analysis;
        QVector<QPointF> v, d, p;
        for (size_t i = 0; i + 1 < a.times.size() && i < a.velocityRms.size(); ++i) v << QPointF(a.times[i], a.velocityRms[i]);
        for (size_t i = 0; i < a.times.size() && i < a.distanceToFinal.size(); ++i) d << QPointF(a.times[i], a.distanceToFinal[i]);
        if (a.projection.shape.size() == 3 && a.projection.shape[0] > 0) {
            const int64_t frames = a.projection.shape[1];
            const int64_t sample = std::clamp<int64_t>(lane.sample, 0, a.projection.shape[0] - 1);
            const float* base = a.projection.values.data() + sample * frames * 2;
            for (int64_t f = 0; f < frames; ++f) p << QPointF(base[2 * f], base[2 * f + 1]);
        }
        velocity << v;
        distance << d;
        projection << p;
    }
    fill(m_velocity->chart(), velocity, labels, tr("t"), tr("RMS |v|"));
    fill(m_distance->chart(), distance, labels, tr("t"), tr("RMS |x_t - x_end|"));
    fill(m_projection->chart(), projection, labels, tr("along the chord"), tr("off the chord"), true);
}

QImage GeometryCharts::render(const QSize& size) {
    QImage image(size, QImage::Format_RGB32);
    image.fill(Qt::white);
    QPainter painter(&image);
    const int third = size.width() / 3;
    int x = 0;
    for (QChartView* view : {m_velocity, m_distance, m_projection}) {
        view->render(&painter, QRectF(x, 0, third, size.height()));
        x += third;
    }
    return image;
}

}  // namespace flowscope::ui
