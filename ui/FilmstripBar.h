#pragma once

#include <QImage>
#include <QVector>
#include <QWidget>

namespace flowscope::ui {

// A row of thumbnails of one sample at evenly spread steps of a run; the shown step is outlined
// and clicking a thumbnail jumps there.
class FilmstripBar : public QWidget {
    Q_OBJECT

public:
    explicit FilmstripBar(QWidget* parent = nullptr);

    // thumbnails[i] shows frame frames[i].
    void setThumbnails(const QVector<QImage>& thumbnails, const QVector<int>& frames);
    void setCurrentFrame(int frame);
    int thumbnailCount() const { return int(m_thumbnails.size()); }
    // The frame under a point, or -1.
    int frameAt(const QPoint& point) const;

    QSize sizeHint() const override { return {360, 52}; }
    QSize minimumSizeHint() const override { return {60, 52}; }

Q_SIGNALS:
    void frameClicked(int frame);

protected:
    void paintEvent(QPaintEvent* event) override;
    void mousePressEvent(QMouseEvent* event) override;

private:
    QRect cellRect(int index) const;

    QVector<QImage> m_thumbnails;
    QVector<int> m_frames;
    int m_current = -1;
};

}  // namespace flowscope::ui
