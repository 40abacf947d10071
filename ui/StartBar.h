#pragma once

#include <QImage>
#include <QWidget>

class QLabel;
class QSlider;
class QToolButton;

namespace flowscope::ui {

// A lane's start, when it is not the seed's noise: a start image (image to image) with its
// strength, or the lane's fork of another lane's run. Hidden while the lane starts from noise.
class StartBar : public QWidget {
    Q_OBJECT

public:
    explicit StartBar(QWidget* parent = nullptr);

    // Image to image from `name`'s picture, at the strength the slider keeps (0.75 at first).
    void showImage(const QString& name, const QImage& thumbnail);
    // A fork: `text` says of what, and no strength applies.
    void showFork(const QString& text);
    void showNoise();

    // How much of the image is redone: 0 keeps it, 1 is plain sampling from the seed's noise.
    double strength() const;
    void setStrength(double strength);
    QSlider* strengthSlider() const { return m_strength; }
    QToolButton* clearButton() const { return m_clear; }
    QString text() const;

Q_SIGNALS:
    void strengthChanged();
    void clearRequested();

private:
    QLabel* m_thumbnail;
    QLabel* m_label;
    QSlider* m_strength;
    QLabel* m_value;
    QToolButton* m_clear;
};

}  // namespace flowscope::ui
