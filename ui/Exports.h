#pragma once

#include <QImage>
#include <QString>
#include <QStringList>
#include <QVector>

#include "ui/LaneFrame.h"
#include "ui/RunSettings.h"

namespace flowscope::ui {

class GeometryCharts;

// What the exports need to know about one lane.
struct LaneSnapshot {
    int index = 0;
    RunSettings settings;
    QVector<LaneFrame> frames;
    LaneResult result;
    double referenceError = -1.0;
};

// Every export writes atomically (QSaveFile, or a temporary file renamed into place) and, on
// failure, returns false with a reason and leaves any existing file untouched.
namespace exports {

// A PNG with text chunks.
bool savePng(const QImage& image, const QString& path, const QList<QPair<QString, QString>>& text, QString* error);
// The picture of the lane's final samples that `flowscope-cli sample --out` writes for the same
// run, pixel for pixel (core/media's runPicture).
QImage finalPicture(const LaneSnapshot& lane);
// Final images in a grid (the canvas's look, pixels enlarged `scale` times).
QImage finalGrid(const LaneSnapshot& lane, int scale = 1);
// Rows per sample (at most `samples`): the state x_t and/or the prediction x̂0, at up to
// `columns` steps spread over the run, each column labelled with its t.
QImage filmstrip(const LaneSnapshot& lane, bool states, bool predictions, int samples = 8, int columns = 10);
// Every lane's final images side by side, each under a label with its settings and measures.
QImage comparisonGrid(const QVector<LaneSnapshot>& lanes);
// The run as a video: one frame per step (the batch grid, enlarged), .mp4 or .avi.
bool saveAnimation(const LaneSnapshot& lane, const QString& path, double fps, QString* error);
// The recorded states [steps + 1, B, ...] as float32 .npy.
bool saveTrajectory(const LaneSnapshot& lane, const QString& path, QString* error);
// One row per lane and frame: settings, summary measures and the per-step geometry.
bool saveMetricsCsv(const QVector<LaneSnapshot>& lanes, const QString& path, QString* error);
// The three geometry charts, as PNG or SVG by the extension.
bool saveCharts(GeometryCharts& charts, const QString& path, QString* error);

}  // namespace exports
}  // namespace flowscope::ui
