#include "ui/LaneFrame.h"

#include <algorithm>
#include <cmath>

#include <QPainter>

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
                    const float raw = base[(size_t(c) * height + y) * width + x];
                    const float v = std::isnan(raw) ? -1.0f : std::clamp(raw, -1.0f, 1.0f);
                    row[x * std::min(channels, 3) + c] = uchar(std::lround((v + 1.0f) * 127.5f));
                }
            }
        }
        images.push_back(image);
    }
    return images;
}

QImage scatterImage(const core::HostArray& points, const core::HostArray& reference, int size) {
    QImage image(size, size, QImage::Format_RGB32);
    image.fill(QColor(250, 250, 250));
    QPainter painter(&image);
    painter.setRenderHint(QPainter::Antialiasing);
    constexpr double kExtent = 4.5;
    auto toPixel = [&](float x, float y) {
        return QPointF((x / kExtent * 0.5 + 0.5) * size, (0.5 - y / kExtent * 0.5) * size);
    };
    painter.setPen(QColor(225, 225, 225));
    painter.drawLine(toPixel(-kExtent, 0), toPixel(kExtent, 0));
    painter.drawLine(toPixel(0, -kExtent), toPixel(0, kExtent));
    painter.setPen(Qt::NoPen);
    painter.setBrush(QColor(195, 195, 195));
    for (int64_t i = 0; i + 1 < int64_t(reference.values.size()); i += 2) {
        painter.drawEllipse(toPixel(reference.values[i], reference.values[i + 1]), 1.5, 1.5);
    }
    painter.setBrush(QColor(220, 80, 40));
    for (int64_t i = 0; i + 1 < int64_t(points.values.size()); i += 2) {
        painter.drawEllipse(toPixel(points.values[i], points.values[i + 1]), 2.5, 2.5);
    }
    return image;
}

}  // namespace flowscope::ui
