#include "ui/InvertDialog.h"

#include <algorithm>
#include <cmath>

#include <QChart>
#include <QChartView>
#include <QGridLayout>
#include <QLabel>
#include <QLineSeries>
#include <QLogValueAxis>
#include <QPixmap>
#include <QVBoxLayout>

#include "ui/DifferenceView.h"

namespace flowscope::ui {
namespace {

constexpr int kImageSide = 168;

QLabel* imageLabel(QWidget* parent) {
    auto* label = new QLabel(parent);
    label->setFixedSize(kImageSide, kImageSide);
    label->setAlignment(Qt::AlignCenter);
    label->setFrameShape(QFrame::StyledPanel);
    return label;
}

void showImage(QLabel* label, const QImage& image) {
    if (image.isNull()) {
        label->clear();
        return;
    }
    // Small images enlarged by whole factors, so their pixels stay square and sharp.
    const int scale = std::max(1, kImageSide / std::max(image.width(), image.height()));
    label->setPixmap(QPixmap::fromImage(
        image.scaled(image.size() * scale, Qt::KeepAspectRatio,
                     scale > 1 ? Qt::FastTransformation : Qt::SmoothTransformation)
            .scaled(kImageSide, kImageSide, Qt::KeepAspectRatio, Qt::SmoothTransformation)));
}

QWidget* captioned(QLabel* image, const QString& caption, QWidget* parent) {
    auto* box = new QWidget(parent);
    auto* layout = new QVBoxLayout(box);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(image);
    auto* text = new QLabel(caption, box);
    text->setAlignment(Qt::AlignHCenter);
    layout->addWidget(text);
    return box;
}

}  // namespace

InvertDialog::InvertDialog(QWidget* parent) : QDialog(parent) {
    setWindowTitle(tr("Inversion"));
    m_data = imageLabel(this);
    m_noise = imageLabel(this);
    m_roundtrip = imageLabel(this);
    m_difference = imageLabel(this);
    m_figures = new QLabel(this);
    m_figures->setWordWrap(true);
    m_figures->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* chart = new QChart;
    chart->setTitle(tr("Round-trip RMSE against steps"));
    chart->legend()->setAlignment(Qt::AlignRight);
    m_chartView = new QChartView(chart, this);
    m_chartView->setRenderHint(QPainter::Antialiasing);
    m_chartView->setMinimumSize(420, 260);

    auto* images = new QGridLayout;
    images->addWidget(captioned(m_data, tr("data"), this), 0, 0);
    images->addWidget(captioned(m_noise, tr("recovered noise (÷3)"), this), 0, 1);
    images->addWidget(captioned(m_roundtrip, tr("round trip"), this), 0, 2);
    images->addWidget(captioned(m_difference, tr("|data − round trip|"), this), 0, 3);
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(images);
    layout->addWidget(m_figures);
    layout->addWidget(m_chartView, 1);
}

void InvertDialog::begin(const QString& title, quint64 inversionId, quint64 sweepId, const QStringList& solvers) {
    setWindowTitle(title);
    m_inversionId = inversionId;
    m_sweepId = sweepId;
    m_hasInversion = false;
    m_curves.clear();
    for (const QString& solver : solvers) m_curves[solver] = {};
    for (QLabel* label : {m_data, m_noise, m_roundtrip, m_difference}) label->clear();
    m_figures->setText(tr("inverting..."));
    redrawChart();
}

void InvertDialog::showInversion(quint64 id, const InversionView& view) {
    if (id != m_inversionId) return;
    m_hasInversion = true;
    showImage(m_data, view.data);
    showImage(m_noise, view.noise);
    showImage(m_roundtrip, view.roundtrip);
    double mean = 0.0;
    const QImage heat = view.dataArray.shape.size() == 4 && view.dataArray.shape == view.roundtripArray.shape
                            ? DifferenceView::differenceHeatMap(view.dataArray, view.roundtripArray, &mean)
                            : QImage();
    showImage(m_difference, heat);
    if (heat.isNull()) m_difference->setText(tr("points: the\nround trip is\nthe third plot"));
    QString text = tr("Round trip: RMSE %1 per element · NFE %2 back, %3 forth.  Noise: mean %4, std %5, skewness "
                      "%6, excess kurtosis %7; Kolmogorov-Smirnov distance to N(0, 1) %8 (p = %9)")
                       .arg(view.roundtripRmse, 0, 'g', 3)
                       .arg(view.nfe)
                       .arg(view.roundtripNfe)
                       .arg(view.noiseMean, 0, 'f', 3)
                       .arg(view.noiseStd, 0, 'f', 3)
                       .arg(view.noiseSkewness, 0, 'f', 3)
                       .arg(view.noiseKurtosis, 0, 'f', 3)
                       .arg(view.normalityDistance, 0, 'f', 4)
                       .arg(view.normalityP, 0, 'g', 3);
    for (const QString& note : view.notes) text += QStringLiteral("\n") + note;
    m_figures->setText(text);
}

void InvertDialog::failInversion(quint64 id, const QString& message) {
    if (id != m_inversionId) return;
    m_figures->setText(tr("The inversion failed: %1").arg(message));
}

void InvertDialog::addCell(quint64 sweepId, const SweepCell& cell) {
    if (sweepId != m_sweepId) return;
    m_curves[cell.solver].push_back(QPointF(cell.steps, cell.rmse));
    redrawChart();
}

QString InvertDialog::figuresText() const { return m_figures->text(); }

void InvertDialog::redrawChart() {
    QChart* chart = m_chartView->chart();
    chart->removeAllSeries();
    for (QAbstractAxis* axis : chart->axes()) {
        chart->removeAxis(axis);
        delete axis;
    }
    auto* x = new QLogValueAxis;
    x->setBase(2);
    x->setLabelFormat("%d");
    x->setTitleText(tr("steps"));
    auto* y = new QLogValueAxis;
    y->setLabelFormat("%.0e");
    y->setTitleText(tr("round-trip RMSE"));
    chart->addAxis(x, Qt::AlignBottom);
    chart->addAxis(y, Qt::AlignLeft);
    double low = 1.0, high = 1e-3;
    int exact = 0;
    for (auto it = m_curves.cbegin(); it != m_curves.cend(); ++it) {
        auto* series = new QLineSeries;
        series->setName(it.key());
        series->setPointsVisible(true);
        for (const QPointF& point : it.value()) {
            // A round trip that closes exactly (an ideal denoiser landing on its training image)
            // has no place on a log scale: it is counted in the title instead.
            if (!(point.y() > 0.0)) {
                ++exact;
                continue;
            }
            series->append(point);
            low = std::min(low, point.y());
            high = std::max(high, point.y());
        }
        chart->addSeries(series);
        series->attachAxis(x);
        series->attachAxis(y);
    }
    chart->setTitle(exact == 0 ? tr("Round-trip RMSE against steps")
                               : tr("Round-trip RMSE against steps (%1 round trips closed exactly)").arg(exact));
    x->setRange(1, 128);
    y->setRange(std::pow(10.0, std::floor(std::log10(low))), std::pow(10.0, std::ceil(std::log10(high))));
}

}  // namespace flowscope::ui
