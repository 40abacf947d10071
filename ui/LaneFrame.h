#pragma once

#include <QImage>
#include <QMetaType>
#include <QRectF>
#include <QString>
#include <QStringList>
#include <QVector>

#include "core/api/Engine.h"

namespace cv {
class Mat;
}

namespace flowscope::ui {

// One step of a run, ready to paint: made on the engine's worker thread, so the UI thread never
// converts tensors. Image models give one image per sample; 2-D models give a single scatter plot
// of all particles (and the velocity arrows of the step).
struct LaneFrame {
    int index = 0;
    int plannedSteps = 0;
    double t = 0.0;
    int nfe = 0;
    bool final = false;
    bool pointCloud = false;
    QVector<QImage> states;       // x_t per sample (or the one scatter plot)
    QVector<QImage> predictions;  // x̂0 per sample (or the one scatter plot)
};

// What a finished run reports besides its last frame.
struct LaneResult {
    int nfe = 0;
    int steps = 0;
    double seconds = 0.0;
    double pathLengthRatio = 0.0;
    double straightness = 0.0;
    QString device;
    QStringList notes;
    std::vector<int64_t> sampleShape;  // [2] for points; [C, H, W] for images and latents
    core::HostArray final;  // the final samples, engine space, for .npy export and RMSE
    // What the final samples look like: `final` itself, or for latent bundles (and other value
    // ranges) the decoded images [B, 1 or 3, H, W] in [-1, 1].
    core::HostArray finalImage;
    core::TrajectoryAnalysis analysis;
    core::HostArray trajectory;  // [steps + 1, B, ...], for .npy export
    // What a fork of this run needs (core::Engine::forkStart): the times, dopri5's step sizes,
    // the generators' draws, and for DPM-Solver++(2M) the predictions [steps + 1, B, ...].
    std::vector<double> times;
    std::vector<double> stepSizes;
    int noiseDraws = 0;
    core::HostArray predictions;
};

// What an inversion of one sample shows: the data, the noise it came from and the round trip
// (images, or for 2-D models scatter plots), with the figures core::InvertResult reports.
struct InversionView {
    QImage data, noise, roundtrip;
    core::HostArray dataArray, roundtripArray;  // the data and the round trip as the models see them
    int nfe = 0;
    int roundtripNfe = 0;
    double roundtripRmse = 0.0;
    double noiseMean = 0.0, noiseStd = 0.0, noiseSkewness = 0.0, noiseKurtosis = 0.0;
    double normalityDistance = 0.0, normalityP = 0.0;
    QStringList notes;
};

// One finished cell of a sweep.
struct SweepCell {
    QString path, solver, schedule;
    int steps = 0;
    int nfe = 0;
    double rmse = 0.0;
    double cfg = 1.0;  // the guidance scale
    QImage image;  // the first sample's final image (2-D models: the scatter plot)
};

// Engine arrays to images, by core/media's one mapping of [-1, 1] to 8 bits.
QVector<QImage> imagesFromBatch(const core::HostArray& batch);
// A picture core/media drew (8-bit RGB or gray) as a QImage that owns a copy of its pixels.
QImage imageFromMat(const cv::Mat& picture);
// The square of the plane that plots of a 2-D model show: its data (`reference`, [N, 2]) and the
// noise its runs start from, with a margin. It depends on the model only, so every lane and step
// of a model is drawn on the same axes and frames compare.
QRectF scatterBounds(const core::HostArray& reference);
// 2-D particles [B, 2] as a `size` x `size` scatter plot of `bounds` (equal aspect): `reference`
// (the target distribution) in grey beneath, each particle's trail through the earlier states
// `history` as a polyline, and the velocity field `field` ([res, res, 2] over
// [-fieldExtent, fieldExtent]^2, may be empty) as arrows. `classReference` (a conditional run's
// class, [M, 2], may be empty) is drawn in colour over the grey, so guided particles are seen to
// reach, or overshoot, their class.
QImage scatterImage(const core::HostArray& points, const core::HostArray& reference, const QRectF& bounds,
                    const QVector<core::HostArray>& history = {}, const core::HostArray& field = {},
                    double fieldExtent = 0.0, int size = 480, const core::HostArray& classReference = {});

}  // namespace flowscope::ui

Q_DECLARE_METATYPE(flowscope::ui::LaneFrame)
Q_DECLARE_METATYPE(flowscope::ui::LaneResult)
Q_DECLARE_METATYPE(flowscope::ui::SweepCell)
Q_DECLARE_METATYPE(flowscope::ui::InversionView)
