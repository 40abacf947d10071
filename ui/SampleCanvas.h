#pragma once

#include <QImage>
#include <QString>
#include <QVector>
#include <QWidget>

namespace flowscope::ui {

// Paints a batch of samples as a grid, scaled with nearest-neighbour so a 28x28 image stays crisp
// at any zoom. Shows the state x_t, the prediction x̂0, or both side by side. Clicking a sample
// focuses it (shown alone, as large as fits); clicking again returns to the grid.
class SampleCanvas : public QWidget {
    Q_OBJECT

public:
    enum class View { State, Prediction, Both };

    explicit SampleCanvas(QWidget* parent = nullptr);

    // `plots`: the images are drawings (2-D scatter plots), not pixels: they are scaled smoothly
    // to fill the canvas instead of by whole pixels.
    void setImages(const QVector<QImage>& states, const QVector<QImage>& predictions, bool plots = false);
    // What the canvas says while it has no images (by default that the first step is coming).
    void setPlaceholder(const QString& text);
    void setView(View view);
    View view() const { return m_view; }
    int focusedSample() const { return m_focused; }
    void setFocusedSample(int index);
    const QVector<QImage>& states() const { return m_states; }
    const QVector<QImage>& predictions() const { return m_predictions; }
    // The integer zoom at which the current layout paints each image pixel (1 when shrinking).
    int pixelScale() const;
    // Zoom steps set with Ctrl+wheel or Ctrl+plus/minus: 0 fits the view, n > 0 enlarges n times
    // beyond the largest whole zoom that fits (scroll-free: the view centres on the grid).
    void setZoomSteps(int steps);
    int zoomSteps() const { return m_zoomSteps; }

    QSize sizeHint() const override { return {360, 360}; }
    QSize minimumSizeHint() const override { return {120, 120}; }

Q_SIGNALS:
    void focusChanged(int index);

protected:
    void paintEvent(QPaintEvent* event) override;
    void mousePressEvent(QMouseEvent* event) override;
    void wheelEvent(QWheelEvent* event) override;

private:
    struct Layout {
        int columns = 1;
        int rows = 1;
        int cell = 1;  // pixels per cell side
        int scale = 1;         // whole-pixel zoom when enlarging
        double shrink = 1.0;   // the scale when `smooth`: shrinking images, or any plot
        bool smooth = false;
        QPoint origin;
        int panels = 1;
        int panelWidth = 0;
    };
    Layout layout() const;
    QVector<int> visibleSamples() const;

    QVector<QImage> m_states;
    QVector<QImage> m_predictions;
    QString m_placeholder;
    bool m_plots = false;
    View m_view = View::State;
    int m_focused = -1;
    int m_zoomSteps = 0;
};

}  // namespace flowscope::ui
