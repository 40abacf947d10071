#include "ui/GeometryCharts.h"

#include <algorithm>
#include <cmath>

#include <QChart>
#include <QCheckBox>
#include <QChartView>
#include <QHBoxLayout>
#include <QLineSeries>
#include <QLogValueAxis>
#include <QPainter>
#include <QVBoxLayout>
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
          const QString& yTitle, bool equalAspect = false, bool logY = false) {
    chart->removeAllSeries();
    for (QAbstractAxis* axis : chart->axes()) {
        chart->removeAxis(axis);
        delete axis;
    }
    auto* x = new QValueAxis;
    QValueAxis* y = nullptr;
    QLogValueAxis* logAxis = nullptr;
    QAbstractAxis* yAxis = nullptr;
    if (logY) {
        logAxis = new QLogValueAxis;
        logAxis->setLabelFormat("%g");
        logAxis->setMinorTickCount(8);
        yAxis = logAxis;
    } else {
        y = new QValueAxis;
        y->setTickCount(5);
        y->setLabelFormat("%.2g");
        yAxis = y;
    }
    x->setTickCount(5);
    x->setLabelFormat("%.2g");
    QFont small = chart->font();
    small.setPointSizeF(std::max(6.0, small.pointSizeF() * 0.8));
    for (QAbstractAxis* axis : {static_cast<QAbstractAxis*>(x), yAxis}) {
        axis->setLabelsFont(small);
        axis->setTitleFont(small);
    }
    x->setTitleText(xTitle);
    yAxis->setTitleText(logY ? QStringLiteral("%1 (log)").arg(yTitle) : yTitle);
    chart->addAxis(x, Qt::AlignBottom);
    chart->addAxis(yAxis, Qt::AlignLeft);
    double xMin = 0, xMax = 1, yMin = 0, yMax = 1e-9;
    bool first = true;
    for (int i = 0; i < lines.size(); ++i) {
        auto* series = new QLineSeries;
        series->setName(labels.value(i));
        series->setColor(GeometryCharts::laneColor(i));
        series->setPointsVisible(lines[i].size() <= 40);
        for (const QPointF& p : lines[i]) {
            if (!std::isfinite(p.x()) || !std::isfinite(p.y())) continue;
            if (logY && !(p.y() > 0.0)) continue;  // a log axis has no 0 (the final state's own distance)
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
        series->attachAxis(yAxis);
    }
    if (xMax <= xMin) xMax = xMin + 1;
    x->setRange(xMin, xMax);
    // Round ends and steps (0, 0.05, 0.1, ... rather than 0, 0.049, 0.099, ...).
    x->applyNiceNumbers();
    if (logY) {
        // Whole decades, so that the axis always has labelled ticks.
        if (first) {
            logAxis->setRange(0.1, 1.0);
        } else {
            logAxis->setRange(std::pow(10.0, std::floor(std::log10(yMin))) * 0.999,
                              std::pow(10.0, std::ceil(std::log10(yMax * 1.01))));
        }
        return;
    }
    yMin = std::min(0.0, yMin);
    if (equalAspect) yMax = std::max(yMax, 0.1);
    if (yMax <= yMin) yMax = yMin + 1;
    y->setRange(yMin, yMax + 0.05 * (yMax - yMin));
    y->applyNiceNumbers();
}

}  // namespace

GeometryCharts::GeometryCharts(QWidget* parent) : QWidget(parent) {
    m_velocity = makeView(tr("Velocity norm per step"), this);
    m_distance = makeView(tr("Distance to the final state"), this);
    m_projection = makeView(tr("Trajectory in the chord plane"), this);
    m_projection->setToolTip(tr("Each lane's first (or focused) sample: along the chord from start (0) to end (1) "
                                "horizontally, its largest deviation from the chord vertically. Straight paths stay flat."));
    // One lane far from the others (the ve path's large velocities, say) flattens them on a
    // linear scale; on a log scale every lane keeps its shape.
    m_logScale = new QCheckBox(tr("Log scale"), this);
    m_logScale->setObjectName("geometryLogScale");
    m_logScale->setToolTip(tr("Velocity and distance on a logarithmic axis, so that lanes of very different size compare"));
    connect(m_logScale, &QCheckBox::toggled, this, [this] { rebuild(); });
    auto* charts = new QHBoxLayout;
    charts->addWidget(m_velocity);
    charts->addWidget(m_distance);
    charts->addWidget(m_projection);
    auto* options = new QHBoxLayout;
    options->addStretch(1);
    options->addWidget(m_logScale);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(0);
    layout->addLayout(options);
    layout->addLayout(charts, 1);
}

void GeometryCharts::setLogScale(bool on) { m_logScale->setChecked(on); }

bool GeometryCharts::logScale() const { return m_logScale->isChecked(); }

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
    fill(m_velocity->chart(), velocity, labels, tr("t"), tr("RMS |v|"), false, logScale());
    fill(m_distance->chart(), distance, labels, tr("t"), tr("RMS |x_t - x_end|"), false, logScale());
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
