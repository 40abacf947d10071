#include "ui/DifferenceView.h"

#include <algorithm>
#include <cmath>

#include <QComboBox>
#include <QEvent>
#include <QHBoxLayout>
#include <QLabel>
#include <QPixmap>
#include <QVBoxLayout>
#include <opencv2/imgproc.hpp>

namespace flowscope::ui {

DifferenceView::DifferenceView(QWidget* parent) : QWidget(parent) {
    m_a = new QComboBox(this);
    m_b = new QComboBox(this);
    m_image = new QLabel(this);
    m_image->setObjectName("differenceImage");
    m_image->setAlignment(Qt::AlignCenter);
    m_image->setMinimumSize(200, 160);
    // The pixmap follows the view's size, never the other way round.
    m_image->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Ignored);
    m_image->installEventFilter(this);
    m_caption = new QLabel(this);
    m_caption->setWordWrap(true);
    auto* row = new QHBoxLayout;
    row->addWidget(new QLabel(tr("Difference between lane"), this));
    row->addWidget(m_a);
    row->addWidget(new QLabel(tr("and lane"), this));
    row->addWidget(m_b);
    row->addStretch(1);
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(row);
    layout->addWidget(m_image, 1);
    layout->addWidget(m_caption);
    connect(m_a, &QComboBox::currentIndexChanged, this, &DifferenceView::refresh);
    connect(m_b, &QComboBox::currentIndexChanged, this, &DifferenceView::refresh);
    setLaneCount(2);
}

void DifferenceView::setLaneCount(int count) {
    const int a = std::max(0, m_a->currentIndex());
    const int b = m_b->currentIndex() < 0 ? 1 : m_b->currentIndex();
    {
        const QSignalBlocker blockA(m_a), blockB(m_b);
        m_a->clear();
        m_b->clear();
        for (int i = 0; i < count; ++i) {
            m_a->addItem(QString::number(i + 1));
            m_b->addItem(QString::number(i + 1));
        }
        const int first = std::min(a, count - 1);
        int second = std::min(b, count - 1);
        // Back from one lane (where both had to be lane 1), compare two lanes again.
        if (second == first && count > 1) second = first == 0 ? 1 : 0;
        m_a->setCurrentIndex(first);
        m_b->setCurrentIndex(second);
    }
    m_finals.resize(count);
    refresh();
}

void DifferenceView::setLaneFinal(int lane, const core::HostArray& final) {
    if (lane < 0 || lane >= m_finals.size()) return;
    m_finals[lane] = final;
    refresh();
}

int DifferenceView::laneA() const { return m_a->currentIndex(); }
int DifferenceView::laneB() const { return m_b->currentIndex(); }

void DifferenceView::setLanes(int a, int b) {
    m_a->setCurrentIndex(a);
    m_b->setCurrentIndex(b);
}

QImage DifferenceView::differenceHeatMap(const core::HostArray& a, const core::HostArray& b, double* mean) {
    if (a.shape.size() != 4 || a.shape != b.shape) return {};
    const int count = int(a.shape[0]), channels = int(a.shape[1]), height = int(a.shape[2]), width = int(a.shape[3]);
    const int columns = int(std::ceil(std::sqrt(double(count))));
    const int rows = (count + columns - 1) / columns;
    cv::Mat gray(rows * (height + 1) + 1, columns * (width + 1) + 1, CV_8UC1, cv::Scalar(0));
    double total = 0.0;
    for (int s = 0; s < count; ++s) {
        const int top = 1 + (s / columns) * (height + 1);
        const int left = 1 + (s % columns) * (width + 1);
        for (int y = 0; y < height; ++y) {
            for (int x = 0; x < width; ++x) {
                double d = 0.0;
                for (int c = 0; c < channels; ++c) {
                    const size_t k = ((size_t(s) * channels + c) * height + y) * width + x;
                    d += std::abs(double(a.values[k]) - double(b.values[k]));
                }
                d /= channels;
                total += d;
                gray.at<uchar>(top + y, left + x) = uchar(std::lround(std::clamp(d, 0.0, 1.0) * 255.0));
            }
        }
    }
    if (mean) *mean = total / std::max<double>(1.0, double(count) * height * width);
    cv::Mat colored;
    cv::applyColorMap(gray, colored, cv::COLORMAP_INFERNO);
    cv::cvtColor(colored, colored, cv::COLOR_BGR2RGB);
    return QImage(colored.data, colored.cols, colored.rows, int(colored.step), QImage::Format_RGB888).copy();
}

void DifferenceView::refresh() {
    const int a = laneA(), b = laneB();
    m_heatMap = {};
    if (a < 0 || b < 0 || a >= m_finals.size() || b >= m_finals.size()) {
        m_image->clear();
        return;
    }
    m_heatMap = differenceHeatMap(m_finals[a], m_finals[b], &m_mean);
    if (m_heatMap.isNull()) {
        m_image->clear();
        m_caption->setText(tr("The heat map compares finished image lanes; 2-D models and unfinished lanes have none."));
        return;
    }
    showHeatMap();
    m_caption->setText(tr("Mean |lane %1 - lane %2| per pixel: %3 (black 0, yellow 1 or more; images span -1 to 1)")
                           .arg(a + 1).arg(b + 1).arg(m_mean, 0, 'f', 4));
}

void DifferenceView::showHeatMap() {
    if (m_heatMap.isNull()) return;
    const int scale = std::max(1, std::min(m_image->width() / std::max(1, m_heatMap.width()),
                                           m_image->height() / std::max(1, m_heatMap.height())));
    m_image->setPixmap(QPixmap::fromImage(m_heatMap.scaled(m_heatMap.size() * scale, Qt::KeepAspectRatio, Qt::FastTransformation)));
}

bool DifferenceView::eventFilter(QObject* watched, QEvent* event) {
    // The dock is often hidden behind another tab when a run finishes: enlarge when it is shown.
    if (watched == m_image && event->type() == QEvent::Resize) showHeatMap();
    return QWidget::eventFilter(watched, event);
}

}  // namespace flowscope::ui
