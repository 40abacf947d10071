#include "ui/GuidanceFigures.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <QChart>
#include <QChartView>
#include <QGridLayout>
#include <QLineSeries>
#include <QValueAxis>

#include "ui/GeometryCharts.h"

namespace flowscope::ui {
namespace {

struct Figure {
    const char* title;
    const char* axis;
    double (*value)(const core::EvaluationRow&);
};

const Figure kFigures[4] = {
    {QT_TRANSLATE_NOOP("GuidanceFigures", "Class accuracy"), "%",
     [](const core::EvaluationRow& row) { return 100.0 * row.classAccuracy; }},
    {QT_TRANSLATE_NOOP("GuidanceFigures", "Frechet distance to the class"), "FD",
     [](const core::EvaluationRow& row) { return row.frechet; }},
    {QT_TRANSLATE_NOOP("GuidanceFigures", "Diversity"), "RMS",
     [](const core::EvaluationRow& row) { return row.diversity; }},
    {QT_TRANSLATE_NOOP("GuidanceFigures", "Straightness S"), "S",
     [](const core::EvaluationRow& row) { return row.straightness; }},
};

QString rowName(const core::EvaluationRow& row) {
    return row.steps > 0 ? GuidanceFigures::tr("%1 steps").arg(row.steps) : QString::fromStdString(row.solver);
}

}  // namespace

GuidanceFigures::GuidanceFigures(QWidget* parent) : QWidget(parent) {
    auto* grid = new QGridLayout(this);
    grid->setContentsMargins(0, 0, 0, 0);
    grid->setSpacing(2);
    for (int k = 0; k < 4; ++k) {
        auto* chart = new QChart;
        chart->setTitle(tr(kFigures[k].title));
        chart->setMargins(QMargins(2, 2, 2, 2));
        chart->legend()->setVisible(false);
        m_charts[k] = new QChartView(chart, this);
        m_charts[k]->setRenderHint(QPainter::Antialiasing);
        m_charts[k]->setMinimumSize(160, 130);
        grid->addWidget(m_charts[k], k / 2, k % 2);
    }
    refresh();
}

void GuidanceFigures::clear() {
    m_rows.clear();
    m_floor = -1.0;
    refresh();
}

void GuidanceFigures::addRow(const core::EvaluationRow& row) {
    m_rows.push_back(row);
    refresh();
}

void GuidanceFigures::setFloor(double frechetFloor) {
    m_floor = frechetFloor;
    refresh();
}

void GuidanceFigures::refresh() {
    // One line per step count (or adaptive solver), its points in order of w.
    std::map<std::pair<int, std::string>, std::vector<const core::EvaluationRow*>> lines;
    double wLow = 0.0, wHigh = 1.0;
    for (const auto& row : m_rows) {
        lines[{row.steps, row.solver}].push_back(&row);
        wLow = std::min(wLow, row.cfg);
        wHigh = std::max(wHigh, row.cfg);
    }
    for (int k = 0; k < 4; ++k) {
        QChart* chart = m_charts[k]->chart();
        chart->removeAllSeries();
        for (QAbstractAxis* axis : chart->axes()) {
            chart->removeAxis(axis);
            delete axis;
        }
        auto* x = new QValueAxis;
        auto* y = new QValueAxis;
        x->setTitleText(tr("w"));
        x->setLabelFormat("%g");
        y->setLabelFormat("%.3g");
        y->setTitleText(kFigures[k].axis);
        chart->addAxis(x, Qt::AlignBottom);
        chart->addAxis(y, Qt::AlignLeft);
        double low = 1e300, high = -1e300;
        int index = 0;
        for (auto& [key, rows] : lines) {
            std::sort(rows.begin(), rows.end(), [](const auto* a, const auto* b) { return a->cfg < b->cfg; });
            auto* series = new QLineSeries;
            series->setName(rowName(*rows.front()));
            series->setColor(GeometryCharts::laneColor(index++ % 4));
            series->setPointsVisible(true);
            for (const auto* row : rows) {
                const double value = kFigures[k].value(*row);
                if (!std::isfinite(value)) continue;
                series->append(row->cfg, value);
                low = std::min(low, value);
                high = std::max(high, value);
            }
            chart->addSeries(series);
            series->attachAxis(x);
            series->attachAxis(y);
        }
        if (k == 1 && m_floor >= 0.0 && !m_rows.empty()) {
            // The distance real images have: no model gets below it.
            auto* floor = new QLineSeries;
            floor->setName(tr("real images"));
            floor->setPen(QPen(Qt::gray, 1, Qt::DashLine));
            floor->append(wLow, m_floor);
            floor->append(wHigh, m_floor);
            chart->addSeries(floor);
            floor->attachAxis(x);
            floor->attachAxis(y);
            low = std::min(low, m_floor);
            high = std::max(high, m_floor);
        }
        chart->legend()->setVisible(lines.size() > 1 && k == 0);
        x->setRange(wLow, wHigh > wLow ? wHigh : wLow + 1.0);
        // Accuracy on its whole scale; the others from at least 0, with round ends that read well.
        if (k == 0) {
            y->setRange(0.0, 100.0);
        } else if (low <= high) {
            const double pad = std::max(0.08 * (high - low), 0.05 * std::max(std::abs(high), 1e-3));
            y->setRange(std::max(0.0, low - pad), high + pad);
            y->applyNiceNumbers();
            if (y->min() < 0.0) y->setMin(0.0);
        } else {
            y->setRange(0.0, 1.0);
        }
    }
}

}  // namespace flowscope::ui
