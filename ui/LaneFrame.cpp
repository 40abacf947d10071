#include "ui/LaneFrame.h"

#include <algorithm>
#include <cmath>

#include <QPainter>
#include <opencv2/core/mat.hpp>

#include "core/media/ImageWriter.h"

namespace flowscope::ui {

QVector<QImage> imagesFromBatch(const core::HostArray& batch) {
    QVector<QImage> images;
    if (batch.shape.size() != 4) return images;
    const int count = int(batch.shape[0]);
    const int channels = int(batch.shape[1]);
    const int height = int(batch.shape[2]);
    const int width = int(batch.shape[3]);
    images.reserve(count);
    for (int b = 0; b < count; ++b) {
        QImage image(width, height, channels == 1 ? QImage::Format_Grayscale8 : QImage::Format_RGB888);
        const float* base = batch.values.data() + size_t(b) * channels * height * width;
        for (int y = 0; y < height; ++y) {
            uchar* row = image.scanLine(y);
            for (int x = 0; x < width; ++x) {
                for (int c = 0; c < std::min(channels, 3); ++c) {
                    row[x * std::min(channels, 3) + c] = media::valueToByte(base[(size_t(c) * height + y) * width + x]);
                }
            }
        }
        images.push_back(image);
    }
    return images;
}

QImage imageFromMat(const cv::Mat& picture) {
    if (picture.empty() || picture.depth() != CV_8U || (picture.channels() != 1 && picture.channels() != 3)) return {};
    const QImage::Format format = picture.channels() == 1 ? QImage::Format_Grayscale8 : QImage::Format_RGB888;
    return QImage(picture.data, picture.cols, picture.rows, static_cast<qsizetype>(picture.step), format).copy();
}

QRectF scatterBounds(const core::HostArray& reference) {
    // Runs start from a standard normal's noise (at sigma(t0) <= 1 on every path but ve, whose
    // first steps lie far outside): three standard deviations hold all but a few in a thousand.
    constexpr double kNoise = 3.0;
    constexpr double kMargin = 0.05;
    double left = -kNoise, right = kNoise, bottom = -kNoise, top = kNoise;
    for (size_t i = 0; i + 1 < reference.values.size(); i += 2) {
        left = std::min(left, double(reference.values[i]));
        right = std::max(right, double(reference.values[i]));
        bottom = std::min(bottom, double(reference.values[i + 1]));
        top = std::max(top, double(reference.values[i + 1]));
    }
    // A square around the centre of both, so the plot keeps equal aspect at any size.
    const double side = std::max(right - left, top - bottom) * (1.0 + 2.0 * kMargin);
    const QPointF centre((left + right) / 2, (bottom + top) / 2);
    return {centre - QPointF(side / 2, side / 2), QSizeF(side, side)};
}

QImage scatterImage(const core::HostArray& points, const core::HostArray& reference, const QRectF& bounds,
                    const QVector<core::HostArray>& history, const core::HostArray& field, double fieldExtent,
                    int size, const core::HostArray& classReference) {
    QImage image(size, size, QImage::Format_RGB32);
    image.fill(QColor(250, 250, 250));
    QPainter painter(&image);
    painter.setRenderHint(QPainter::Antialiasing);
    // `bounds` holds plane coordinates with y up; the image's y runs down.
    auto toPixel = [&](double x, double y) {
        return QPointF((x - bounds.left()) / bounds.width() * size, (bounds.bottom() - y) / bounds.height() * size);
    };
    painter.setPen(QColor(225, 225, 225));
    painter.drawLine(toPixel(bounds.left(), 0), toPixel(bounds.right(), 0));
    painter.drawLine(toPixel(0, bounds.top()), toPixel(0, bounds.bottom()));
    painter.setPen(Qt::NoPen);
    painter.setBrush(QColor(200, 200, 200));
    for (size_t i = 0; i + 1 < reference.values.size(); i += 2) {
        painter.drawEllipse(toPixel(reference.values[i], reference.values[i + 1]), 1.6, 1.6);
    }
    painter.setBrush(QColor(150, 90, 210));
    for (size_t i = 0; i + 1 < classReference.values.size(); i += 2) {
        painter.drawEllipse(toPixel(classReference.values[i], classReference.values[i + 1]), 2.0, 2.0);
    }
    // Velocity arrows, scaled so the longest spans one grid cell.
    if (field.shape.size() == 3 && field.shape[0] > 1) {
        const int res = int(field.shape[0]);
        double longest = 1e-12;
        for (size_t i = 0; i + 1 < field.values.size(); i += 2) {
            longest = std::max(longest, std::hypot(double(field.values[i]), double(field.values[i + 1])));
        }
        const double cell = 2.0 * fieldExtent / (res - 1);
        painter.setPen(QPen(QColor(90, 140, 90, 170), 1.0));
        for (int row = 0; row < res; ++row) {
            for (int col = 0; col < res; ++col) {
                const size_t k = (size_t(row) * res + col) * 2;
                const double x = -fieldExtent + col * cell;
                const double y = fieldExtent - row * cell;
                const double dx = field.values[k] / longest * cell * 0.9;
                const double dy = field.values[k + 1] / longest * cell * 0.9;
                const QPointF from = toPixel(x, y);
                const QPointF to = toPixel(x + dx, y + dy);
                painter.drawLine(from, to);
                const QPointF direction = (to - from) / std::max(1e-9, std::hypot((to - from).x(), (to - from).y()));
                const QPointF normal(-direction.y(), direction.x());
                painter.drawLine(to, to - 3.0 * direction + 2.0 * normal);
                painter.drawLine(to, to - 3.0 * direction - 2.0 * normal);
            }
        }
    }
    // Trails: each particle's path through the earlier states.
    if (!history.isEmpty()) {
        painter.setPen(QPen(QColor(70, 130, 200, 150), 1.0));
        const size_t count = points.values.size() / 2;
        for (size_t b = 0; b < count; ++b) {
            QPolygonF line;
            // At most ~100 points per trail, so long runs stay cheap to draw.
            const qsizetype stride = std::max<qsizetype>(1, (history.size() + 99) / 100);
            for (qsizetype h = 0; h < history.size(); h += stride) {
                const core::HostArray& past = history[h];
                if (past.values.size() < 2 * (b + 1)) continue;
                line << toPixel(past.values[2 * b], past.values[2 * b + 1]);
            }
            line << toPixel(points.values[2 * b], points.values[2 * b + 1]);
            painter.drawPolyline(line);
        }
    }
    painter.setPen(Qt::NoPen);
    painter.setBrush(QColor(220, 80, 40));
    for (size_t i = 0; i + 1 < points.values.size(); i += 2) {
        painter.drawEllipse(toPixel(points.values[i], points.values[i + 1]), 2.8, 2.8);
    }
    return image;
}

}  // namespace flowscope::ui
