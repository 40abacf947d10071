#include "ui/SampleCanvas.h"

#include <algorithm>
#include <cmath>

#include <QMouseEvent>
#include <QWheelEvent>
#include <QPainter>

namespace flowscope::ui {
namespace {
constexpr int kGap = 4;
constexpr int kPanelGap = 12;
}  // namespace

SampleCanvas::SampleCanvas(QWidget* parent) : QWidget(parent) {
    setAutoFillBackground(true);
    QPalette p = palette();
    p.setColor(QPalette::Window, QColor(30, 31, 36));
    setPalette(p);
    setAttribute(Qt::WA_OpaquePaintEvent);
    setToolTip(tr("Click a sample to focus it; click again to see the whole batch"));
}

void SampleCanvas::setImages(const QVector<QImage>& states, const QVector<QImage>& predictions, bool plots) {
    m_states = states;
    m_predictions = predictions;
    m_plots = plots;
    if (m_focused >= m_states.size()) m_focused = -1;
    update();
}

void SampleCanvas::setPlaceholder(const QString& text) {
    m_placeholder = text;
    update();
}

void SampleCanvas::setView(View view) {
    m_view = view;
    update();
}

void SampleCanvas::setFocusedSample(int index) {
    const int clamped = (index >= 0 && index < m_states.size()) ? index : -1;
    if (clamped == m_focused) return;
    m_focused = clamped;
    update();
    Q_EMIT focusChanged(m_focused);
}

QVector<int> SampleCanvas::visibleSamples() const {
    QVector<int> samples;
    if (m_focused >= 0) {
        samples << m_focused;
    } else {
        for (int i = 0; i < m_states.size(); ++i) samples << i;
    }
    return samples;
}

SampleCanvas::Layout SampleCanvas::layout() const {
    Layout l;
    const int count = std::max<int>(1, visibleSamples().size());
    l.panels = (m_view == View::Both && !m_predictions.isEmpty()) ? 2 : 1;
    l.panelWidth = (width() - (l.panels - 1) * kPanelGap) / l.panels;
    const QSize imageSize = m_states.isEmpty() ? QSize(1, 1) : m_states.front().size();
    const int side = std::max(imageSize.width(), imageSize.height());
    // The grid shape that gives the largest cells in the available area.
    double best = -1.0;
    for (int columns = 1; columns <= count; ++columns) {
        const int rows = (count + columns - 1) / columns;
        const int cellW = (l.panelWidth - (columns + 1) * kGap) / columns;
        const int cellH = (height() - (rows + 1) * kGap) / rows;
        const double scale = std::min(double(cellW), double(cellH)) / side;
        if (scale > best + 1e-9) {
            best = scale;
            l.columns = columns;
            l.rows = rows;
        }
    }
    if (m_plots) {
        // A drawing has no pixels to keep square: it fills the lane, at any scale.
        l.shrink = std::max(0.05, best) * (1 + m_zoomSteps);
        l.smooth = true;
        l.cell = std::max(1, int(std::floor(side * l.shrink)));
    } else if (best >= 1.0) {
        // Whole-pixel zoom keeps pixels square and crisp; Ctrl+wheel zooms further.
        l.scale = int(std::floor(best)) + m_zoomSteps;
        l.cell = l.scale * side;
    } else {
        l.scale = 1;
        l.shrink = std::max(0.05, best);
        l.smooth = true;
        l.cell = std::max(1, int(std::floor(side * l.shrink)));
    }
    const int gridW = l.columns * l.cell + (l.columns - 1) * kGap;
    const int gridH = l.rows * l.cell + (l.rows - 1) * kGap;
    l.origin = QPoint((l.panelWidth - gridW) / 2, (height() - gridH) / 2);
    if (m_zoomSteps == 0) l.origin = QPoint(std::max(kGap, l.origin.x()), std::max(kGap, l.origin.y()));
    return l;
}

void SampleCanvas::setZoomSteps(int steps) {
    m_zoomSteps = std::clamp(steps, 0, 40);
    update();
}

void SampleCanvas::wheelEvent(QWheelEvent* event) {
    if (!(event->modifiers() & Qt::ControlModifier)) {
        event->ignore();
        return;
    }
    setZoomSteps(m_zoomSteps + (event->angleDelta().y() > 0 ? 1 : -1));
    event->accept();
}

int SampleCanvas::pixelScale() const { return layout().scale; }

void SampleCanvas::paintEvent(QPaintEvent*) {
    QPainter painter(this);
    painter.fillRect(rect(), palette().color(QPalette::Window));
    if (m_states.isEmpty()) {
        painter.setPen(QColor(150, 150, 160));
        painter.drawText(rect().adjusted(8, 8, -8, -8), Qt::AlignCenter | Qt::TextWordWrap,
                         m_placeholder.isEmpty() ? tr("Waiting for the first step...") : m_placeholder);
        return;
    }
    painter.setRenderHint(QPainter::SmoothPixmapTransform, false);
    const Layout l = layout();
    const QVector<int> samples = visibleSamples();
    for (int panel = 0; panel < l.panels; ++panel) {
        const bool prediction = m_view == View::Prediction || panel == 1;
        const QVector<QImage>& images = (prediction && !m_predictions.isEmpty()) ? m_predictions : m_states;
        const int x0 = panel * (l.panelWidth + kPanelGap) + l.origin.x();
        for (int i = 0; i < samples.size(); ++i) {
            const int index = samples[i];
            if (index >= images.size()) continue;
            const QImage& image = images[index];
            const QSize drawn = l.smooth ? image.size() * l.shrink : image.size() * l.scale;
            const QRect target(x0 + (i % l.columns) * (l.cell + kGap), l.origin.y() + (i / l.columns) * (l.cell + kGap),
                               std::max(1, drawn.width()), std::max(1, drawn.height()));
            // Shrinking needs smoothing to stay legible; enlarging pixels must not be smoothed.
            painter.setRenderHint(QPainter::SmoothPixmapTransform, l.smooth);
            painter.drawImage(target, image);
        }
        if (l.panels == 2) {
            painter.setPen(QColor(170, 170, 180));
            painter.drawText(QRect(panel * (l.panelWidth + kPanelGap), 0, l.panelWidth, 16), Qt::AlignCenter,
                             prediction ? tr("prediction x̂0") : tr("state x_t"));
        }
    }
}

void SampleCanvas::mousePressEvent(QMouseEvent* event) {
    if (event->button() != Qt::LeftButton || m_states.isEmpty()) return;
    if (m_focused >= 0) {
        setFocusedSample(-1);
        return;
    }
    const Layout l = layout();
    QPoint p = event->position().toPoint();
    if (l.panels == 2 && p.x() > l.panelWidth) p.rx() -= l.panelWidth + kPanelGap;
    const int column = (p.x() - l.origin.x()) / (l.cell + kGap);
    const int row = (p.y() - l.origin.y()) / (l.cell + kGap);
    if (p.x() < l.origin.x() || p.y() < l.origin.y() || column >= l.columns) return;
    const int index = row * l.columns + column;
    if (index < m_states.size()) setFocusedSample(index);
}

}  // namespace flowscope::ui
