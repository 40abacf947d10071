#pragma once

#include <QByteArray>
#include <QList>
#include <QMetaType>
#include <QPair>
#include <QString>
#include <QStringList>

#include "core/api/Engine.h"
#include "core/api/Names.h"

class QIODevice;

namespace flowscope::ui {

// Everything that determines one lane's run: the engine's request as the widgets hold it. It is
// stored (exported PNGs' `flowscope` chunk, the saved session) through the engine's one settings
// codec (core/api/SettingsCodec.h), the same as the CLI's, so settings move between them whole.
struct RunSettings {
    // The engine's defaults (core::SampleRequest), but for the batch: the window shows a grid.
    QString model = QString::fromStdString(defaults().model);
    QString path = QString::fromStdString(defaults().path);
    QString solver = QString::fromStdString(defaults().solver);
    QString schedule = QString::fromStdString(defaults().schedule);
    int steps = defaults().steps;
    quint64 seed = defaults().seed;
    int batch = 16;
    int resolution = defaults().resolution;
    QString device = QString::fromStdString(defaults().device);
    // No widget shows these; they are kept as a restored PNG or session gave them.
    QString dtype = QString::fromStdString(defaults().dtype);
    double tEnd = defaults().tEnd;
    double rtol = defaults().rtol;
    double atol = defaults().atol;
    // A conditional model's class ("" unconditional), shared by the lanes, and the lane's guidance.
    QString condition{};
    core::GuidanceSettings guidance{};
    // A text-to-image checkpoint's prompt, image size and distilled guidance, shared by the lanes.
    core::TextSettings text{};

    static const core::SampleRequest& defaults() {
        static const core::SampleRequest request;
        return request;
    }
    core::SampleRequest toRequest() const;
    static RunSettings fromRequest(const core::SampleRequest& request);
    // The codec's JSON (compact, UTF-8).
    QByteArray toJson() const;
    // Reads what toJson (or the CLI) wrote; false with the reason for anything missing, malformed
    // or out of what the widgets and the engine take (nothing is clamped).
    static bool fromJson(const QByteArray& json, RunSettings* settings, QString* error);
    // The settings a PNG exported by FlowScope carries in its "flowscope" text chunk. False with
    // a reason for anything else (not an image, no such chunk, damaged JSON or values).
    static bool fromPng(QIODevice* device, RunSettings* settings, QString* error);
    // The PNG text chunks of a run with these settings: the A1111-style parameters line, then the
    // settings JSON.
    QList<QPair<QString, QString>> pngChunks(int nfe, const std::vector<int64_t>& sampleShape) const;

    // The run's class and guidance in a few words ("north, cfg w = 5"; "" when unconditional),
    // for titles and legends.
    QString conditionLabel() const;

    bool operator==(const RunSettings&) const = default;
};

// The engine's names of `kind`, for the boxes that offer them.
QStringList engineNames(core::NameKind kind);
// The model spec of `name` in `form` (core::makeSpec), and whether `spec` has that form (its
// name after the prefix in `name`).
QString modelSpec(core::SpecForm form, const QString& name);
bool specHasForm(const QString& spec, core::SpecForm form, QString* name = nullptr);

}  // namespace flowscope::ui

Q_DECLARE_METATYPE(flowscope::ui::RunSettings)
