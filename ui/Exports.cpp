#include "ui/Exports.h"

#include <algorithm>
#include <cmath>
#include <exception>

#include <QBuffer>
#include <QChartView>
#include <QFileInfo>
#include <QJsonDocument>
#include <QPainter>
#include <QSaveFile>
#include <QSvgGenerator>
#include <opencv2/core/mat.hpp>
#include <opencv2/imgproc.hpp>

#include "core/api/Files.h"
#include "core/media/ImageWriter.h"
#include "core/media/VideoExport.h"
#include "ui/GeometryCharts.h"

namespace flowscope::ui::exports {
namespace {

constexpr int kGap = 2;
const QColor kBackground(24, 24, 28);
const QColor kText(225, 225, 230);

bool saveBytes(const QByteArray& bytes, const QString& path, QString* error) {
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly)) {
        *error = QObject::tr("cannot write %1: %2").arg(path, file.errorString());
        return false;
    }
    if (file.write(bytes) != bytes.size() || !file.commit()) {
        *error = QObject::tr("cannot write %1: %2").arg(path, file.errorString());
        return false;
    }
    return true;
}

// An image as an 8-bit RGB (or grey, or RGBA) matrix, its pixels copied, `scale` times larger
// by nearest neighbours.
cv::Mat matFromImage(const QImage& image, int scale = 1) {
    const bool grey = image.format() == QImage::Format_Grayscale8;
    const bool alpha = image.hasAlphaChannel();
    const QImage pixels = image.convertToFormat(grey ? QImage::Format_Grayscale8
                                                : alpha ? QImage::Format_RGBA8888
                                                        : QImage::Format_RGB888);
    cv::Mat mat = cv::Mat(pixels.height(), pixels.width(), grey ? CV_8UC1 : alpha ? CV_8UC4 : CV_8UC3,
                          const_cast<uchar*>(pixels.constBits()), static_cast<size_t>(pixels.bytesPerLine()))
                      .clone();
    if (scale > 1) cv::resize(mat, mat, cv::Size(), scale, scale, cv::INTER_NEAREST);
    return mat;
}

// The images square-ish in a grid, tiled by core/media as the CLI's pictures are.
QImage grid(const QVector<QImage>& images, int scale) {
    if (images.isEmpty()) return {};
    const int columns = int(std::ceil(std::sqrt(double(images.size()))));
    std::vector<std::vector<cv::Mat>> rows;
    for (int i = 0; i < images.size(); ++i) {
        if (i % columns == 0) rows.emplace_back();
        rows.back().push_back(matFromImage(images[i].convertToFormat(QImage::Format_RGB888), scale));
    }
    return imageFromMat(media::tileImages(rows, kGap));
}

// The label pen and font shared by the labelled exports.
void useLabelStyle(QPainter& painter) {
    painter.setPen(kText);
    QFont font = painter.font();
    font.setPixelSize(11);
    painter.setFont(font);
}

QVector<int> spread(int frames, int count) {
    QVector<int> chosen;
    const int shown = std::min(frames, count);
    for (int i = 0; i < shown; ++i) chosen << (shown > 1 ? int(qint64(i) * (frames - 1) / (shown - 1)) : 0);
    return chosen;
}

QString laneTitle(const LaneSnapshot& lane) {
    QString title = QObject::tr("Lane %1: %2, %3, %4, %5 steps")
                        .arg(lane.index + 1)
                        .arg(lane.settings.path, lane.settings.solver, lane.settings.schedule)
                        .arg(lane.settings.steps);
    if (!lane.settings.condition.isEmpty()) title += QStringLiteral(", ") + lane.settings.conditionLabel();
    return title;
}

QString laneMeasures(const LaneSnapshot& lane) {
    QString text = QObject::tr("NFE %1, path length ratio %2, straightness %3")
                       .arg(lane.result.nfe)
                       .arg(lane.result.pathLengthRatio, 0, 'f', 3)
                       .arg(lane.result.straightness, 0, 'g', 3);
    if (lane.referenceError >= 0) text += QObject::tr(", RMSE %1").arg(lane.referenceError, 0, 'g', 3);
    return text;
}

}  // namespace

bool savePng(const QImage& image, const QString& path, const QList<QPair<QString, QString>>& text, QString* error) {
    if (image.isNull()) {
        *error = QObject::tr("there is nothing to export yet");
        return false;
    }
    // The CLI's PNG writer (core/media): the same chunks, in the same order, as its files carry.
    const cv::Mat mat = matFromImage(image);
    std::vector<std::pair<std::string, std::string>> chunks;
    for (const auto& [key, value] : text) chunks.emplace_back(key.toStdString(), value.toStdString());
    std::string bytes;
    try {
        bytes = media::encodePng(mat, chunks);
    } catch (const std::exception& failure) {
        *error = QObject::tr("cannot encode %1: %2").arg(path, QString::fromStdString(failure.what()));
        return false;
    }
    return saveBytes(QByteArray(bytes.data(), qsizetype(bytes.size())), path, error);
}

QImage finalPicture(const LaneSnapshot& lane) {
    if (lane.result.finalImage.values.empty()) return {};
    try {
        return imageFromMat(media::runPicture(lane.settings.model.toStdString(), lane.result.finalImage,
                                              lane.result.final, lane.result.trajectory));
    } catch (const std::exception&) {
        return {};  // savePng reports that there is nothing to export
    }
}

QImage finalGrid(const LaneSnapshot& lane, int scale) {
    const QVector<QImage> images = imagesFromBatch(lane.result.finalImage);
    if (!images.isEmpty()) return grid(images, scale);
    // 2-D models: the last scatter plot.
    return lane.frames.isEmpty() || lane.frames.back().states.isEmpty() ? QImage() : lane.frames.back().states.front();
}

QImage filmstrip(const LaneSnapshot& lane, bool states, bool predictions, int samples, int columns) {
    if (lane.frames.isEmpty() || (!states && !predictions)) return {};
    const QVector<int> chosen = spread(int(lane.frames.size()), columns);
    const int sampleCount = std::min<int>(samples, int(lane.frames.front().states.size()));
    const QSize image = lane.frames.front().states.front().size();
    const int scale = image.width() < 64 ? 3 : 1;
    const QSize cell = image * scale;
    // The cells tiled by core/media (per sample, x_t above x̂0, one column per chosen frame), below
    // a band where each column's time is written.
    std::vector<std::vector<cv::Mat>> rows;
    for (int s = 0; s < sampleCount; ++s) {
        for (const bool prediction : {false, true}) {
            if (prediction ? !predictions : !states) continue;
            rows.emplace_back();
            for (const int index : chosen) {
                const QVector<QImage>& images = prediction ? lane.frames[index].predictions : lane.frames[index].states;
                rows.back().push_back(s < images.size()
                                          ? matFromImage(images[s].convertToFormat(QImage::Format_RGB888), scale)
                                          : cv::Mat(cell.height(), cell.width(), CV_8UC3, cv::Scalar(24, 24, 28)));
            }
        }
    }
    const QImage body = imageFromMat(media::tileImages(rows, kGap));
    const int header = 18;
    QImage out(body.width(), header + body.height(), QImage::Format_RGB888);
    out.fill(kBackground);
    QPainter painter(&out);
    painter.drawImage(QPoint(0, header), body);
    useLabelStyle(painter);
    for (int c = 0; c < chosen.size(); ++c) {
        const int x = kGap + c * (cell.width() + kGap);
        painter.drawText(QRect(x, 0, cell.width(), header), Qt::AlignCenter,
                         QStringLiteral("t=%1").arg(lane.frames[chosen[c]].t, 0, 'f', 2));
    }
    return out;
}

QImage comparisonGrid(const QVector<LaneSnapshot>& lanes) {
    QVector<QImage> grids;
    int width = kGap, height = 0;
    for (const LaneSnapshot& lane : lanes) {
        const QImage g = finalGrid(lane, 3);
        grids << g;
        width += std::max(g.width(), 260) + 8;
        height = std::max(height, g.height());
    }
    const int header = 40;
    QImage out(width, header + height + kGap, QImage::Format_RGB888);
    out.fill(kBackground);
    QPainter painter(&out);
    useLabelStyle(painter);
    int x = kGap;
    for (int i = 0; i < lanes.size(); ++i) {
        const int w = std::max(grids[i].width(), 260);
        painter.drawText(QRect(x, 2, w, 18), Qt::AlignLeft | Qt::AlignVCenter, laneTitle(lanes[i]));
        painter.drawText(QRect(x, 20, w, 18), Qt::AlignLeft | Qt::AlignVCenter, laneMeasures(lanes[i]));
        if (!grids[i].isNull()) painter.drawImage(QPoint(x, header), grids[i]);
        x += w + 8;
    }
    return out;
}

bool saveAnimation(const LaneSnapshot& lane, const QString& path, double fps, QString* error) {
    if (lane.frames.isEmpty()) {
        *error = QObject::tr("lane %1 has no frames to animate yet").arg(lane.index + 1);
        return false;
    }
    // Frames are streamed to the encoder one at a time, each at most about 1080 pixels wide.
    auto picture = [&](const LaneFrame& frame) {
        if (frame.pointCloud) return frame.states.front().convertToFormat(QImage::Format_RGB888);
        const QImage unscaled = grid(frame.states, 1);
        const int scale = std::max(1, 1080 / std::max(1, std::max(unscaled.width(), unscaled.height())));
        return grid(frame.states, scale).convertToFormat(QImage::Format_RGB888);
    };
    try {
        const QImage first = picture(lane.frames.front());
        media::VideoFileWriter writer(path.toStdString(), first.width(), first.height(), fps);
        auto write = [&](const QImage& image) {
            const cv::Mat mat(image.height(), image.width(), CV_8UC3, const_cast<uchar*>(image.constBits()),
                              size_t(image.bytesPerLine()));
            writer.write(mat);
        };
        for (const LaneFrame& frame : lane.frames) write(picture(frame));
        // Hold the final image for a second so the result can be seen.
        const QImage last = picture(lane.frames.back());
        for (int i = 0; i < int(fps); ++i) write(last);
        writer.commit();
    } catch (const std::exception& e) {
        *error = QString::fromStdString(e.what());
        return false;
    }
    return true;
}

bool saveTrajectory(const LaneSnapshot& lane, const QString& path, QString* error) {
    const core::HostArray& trajectory = lane.result.trajectory;
    if (trajectory.values.empty()) {
        *error = QObject::tr("lane %1 has no recorded trajectory yet").arg(lane.index + 1);
        return false;
    }
    try {
        core::writeNpyArray(path.toStdString(), trajectory);
    } catch (const std::exception& e) {
        *error = QString::fromStdString(e.what());
        return false;
    }
    return true;
}

bool saveMetricsCsv(const QVector<LaneSnapshot>& lanes, const QString& path, QString* error) {
    QByteArray csv = "lane,model,path,solver,schedule,steps,seed,batch,nfe,path_length_ratio,straightness,rmse_vs_reference,"
                     "seconds,frame,t,velocity_rms,distance_to_final\n";
    for (const LaneSnapshot& lane : lanes) {
        if (lane.frames.isEmpty()) continue;
        const auto& a = lane.result.analysis;
        const QString prefix = QStringLiteral("%1,%2,%3,%4,%5,%6,%7,%8,%9")
                                   .arg(lane.index + 1)
                                   .arg(lane.settings.model, lane.settings.path, lane.settings.solver, lane.settings.schedule)
                                   .arg(lane.settings.steps)
                                   .arg(lane.settings.seed)
                                   .arg(lane.settings.batch)
                                   .arg(lane.result.nfe);
        for (size_t f = 0; f < a.times.size(); ++f) {
            csv += QStringLiteral("%1,%2,%3,%4,%5,%6,%7,%8,%9\n")
                       .arg(prefix)
                       .arg(lane.result.pathLengthRatio, 0, 'g', 9)
                       .arg(lane.result.straightness, 0, 'g', 9)
                       .arg(lane.referenceError >= 0 ? QString::number(lane.referenceError, 'g', 9) : QString())
                       .arg(lane.result.seconds, 0, 'g', 6)
                       .arg(f)
                       .arg(a.times[f], 0, 'g', 9)
                       .arg(f < a.velocityRms.size() ? a.velocityRms[f] : 0.0, 0, 'g', 9)
                       .arg(f < a.distanceToFinal.size() ? a.distanceToFinal[f] : 0.0, 0, 'g', 9)
                       .toUtf8();
        }
    }
    return saveBytes(csv, path, error);
}

bool saveCharts(GeometryCharts& charts, const QString& path, QString* error) {
    const QSize size(1500, 420);
    if (QFileInfo(path).suffix().compare("svg", Qt::CaseInsensitive) == 0) {
        QByteArray bytes;
        QBuffer buffer(&bytes);
        buffer.open(QIODevice::WriteOnly);
        QSvgGenerator generator;
        generator.setOutputDevice(&buffer);
        generator.setSize(size);
        generator.setViewBox(QRect(QPoint(0, 0), size));
        generator.setTitle(QObject::tr("FlowScope geometry"));
        {
            QPainter painter(&generator);
            const int third = size.width() / 3;
            int x = 0;
            for (QChartView* view : {charts.velocityView(), charts.distanceView(), charts.projectionView()}) {
                view->render(&painter, QRectF(x, 0, third, size.height()));
                x += third;
            }
        }
        return saveBytes(bytes, path, error);
    }
    return savePng(charts.render(size), path, {}, error);
}

}  // namespace flowscope::ui::exports
