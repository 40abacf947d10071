#pragma once

#include <QJsonObject>
#include <QMetaType>
#include <QString>
#include <QStringList>

#include "core/Engine.h"

class QIODevice;

namespace flowscope::ui {

// Everything that determines one lane's run. It converts to the engine's request, to the JSON
// stored in exported PNGs (the `flowscope` text chunk), and back, so an export can be restored.
struct RunSettings {
    QString model = QStringLiteral("fashion-mnist");
    QString path = QStringLiteral("linear");
    QString solver = QStringLiteral("euler");
    QString schedule = QStringLiteral("uniform");
    int steps = 8;
    quint64 seed = 0;
    int batch = 16;
    int resolution = 0;
    QString device = QStringLiteral("auto");

    core::SampleRequest toRequest() const;
    QJsonObject toJson() const;
    // Reads what toJson wrote; returns false and says why for anything missing or malformed.
    static bool fromJson(const QJsonObject& json, RunSettings* settings, QString* error);
    // The settings a PNG exported by FlowScope carries in its "flowscope" text chunk. False with
    // a reason for anything else (not an image, no such chunk, damaged JSON or values).
    static bool fromPng(QIODevice* device, RunSettings* settings, QString* error);
    // The one-line "Steps: 8, Sampler: euler, ..." parameters in the style AUTOMATIC1111 writes.
    QString parametersLine(int nfe) const;

    bool operator==(const RunSettings&) const = default;
};

// The engine's names of `kind`, for the boxes that offer them.
QStringList engineNames(core::NameKind kind);

}  // namespace flowscope::ui

Q_DECLARE_METATYPE(flowscope::ui::RunSettings)
