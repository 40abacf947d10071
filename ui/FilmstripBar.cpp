#include "ui/FilmstripBar.h"

#include <QMouseEvent>
#include <QPainter>

namespace flowscope::ui {

FilmstripBar::FilmstripBar(QWidget* parent) : QWidget(parent) {
    setToolTip(tr("Click a thumbnail to jump to that step"));
    setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
    setFixedHeight(52);
}

void FilmstripBar::setThumbnails(const QVector<QImage>& thumbnails, const QVector<int>& frames) {
    m_thumbnails = thumbnails;
    m_frames = frames;
    update();
}

void FilmstripBar::setCurrentFrame(int frame) {
    m_current = frame;
    update();
}

QRect FilmstripBar::cellRect(int index) const {
    const int count = std::max<int>(1, m_thumbnails.size());
    const int side = std::min(height() - 6, (width() - 4) / count - 4);
    const int total = count * (side + 4);
    const int x0 = std::max(2, (width() - total) / 2);
    return QRect(x0 + index * (side + 4) + 2, 3, side, side);
}

int FilmstripBar::frameAt(const QPoint& point) const {
    for (int i = 0; i < m_thumbnails.size(); ++i) {
        if (cellRect(i).adjusted(-2, -2, 2, 2).contains(point)) return m_frames.value(i, -1);
    }
    return -1;
}

void FilmstripBar::paintEvent(QPaintEvent*) {
    QPainter painter(this);
    painter.fillRect(rect(), QColor(40, 41, 46));
    painter.setRenderHint(QPainter::SmoothPixmapTransform, false);
    // The outlined thumbnail is the last one at or before the shown frame.
    int outlined = -1;
    for (int i = 0; i < m_frames.size(); ++i) {
        if (m_frames[i] <= m_current) outlined = i;
    }
    for (int i = 0; i < m_thumbnails.size(); ++i) {
        const QRect cell = cellRect(i);
        painter.drawImage(cell, m_thumbnails[i]);
        if (i == outlined) {
            painter.setPen(QPen(QColor(255, 170, 40), 2));
            painter.drawRect(cell.adjusted(-1, -1, 1, 1));
        }
    }
}

void FilmstripBar::mousePressEvent(QMouseEvent* event) {
    const int frame = frameAt(event->position().toPoint());
    if (frame >= 0) Q_EMIT frameClicked(frame);
}

}  // namespace flowscope::ui
