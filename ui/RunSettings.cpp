#include "ui/RunSettings.h"

#include <cmath>
#include <utility>

#include <QImageReader>
#include <QJsonDocument>
#include <QObject>

#include <QJsonValue>

namespace flowscope::ui {

core::SampleRequest RunSettings::toRequest() const {
    core::SampleRequest request;
    request.model = model.toStdString();
    request.path = path.toStdString();
    request.solver = solver.toStdString();
    request.schedule = schedule.toStdString();
    request.steps = steps;
    request.seed = seed;
    request.batch = batch;
    request.resolution = resolution;
    request.device = device.toStdString();
    request.recordTrajectory = false;
    return request;
}

QJsonObject RunSettings::toJson() const {
    return QJsonObject{{"model", model},   {"path", path},   {"solver", solver},
                       {"schedule", schedule}, {"steps", steps}, {"seed", QString::number(seed)},
                       {"batch", batch},   {"resolution", resolution}, {"device", device}};
}

bool RunSettings::fromJson(const QJsonObject& json, RunSettings* settings, QString* error) {
    RunSettings parsed;
    for (const char* key : {"model", "path", "solver", "schedule"}) {
        if (!json.value(key).isString()) {
            *error = QStringLiteral("the settings have no '%1'").arg(key);
            return false;
        }
    }
    parsed.model = json.value("model").toString();
    parsed.path = json.value("path").toString();
    parsed.solver = json.value("solver").toString();
    parsed.schedule = json.value("schedule").toString();
    parsed.steps = json.value("steps").toInt(-1);
    parsed.batch = json.value("batch").toInt(-1);
    parsed.resolution = json.value("resolution").toInt(0);
    parsed.device = json.value("device").toString(QStringLiteral("auto"));
    // The seed is a 64-bit number: stored as a string (JSON numbers are doubles), read either way.
    bool seedOk = false;
    const QJsonValue seed = json.value("seed");
    parsed.seed = seed.isString() ? seed.toString().toULongLong(&seedOk) : quint64(seed.toDouble(-1));
    if (seed.isDouble()) seedOk = seed.toDouble(-1) >= 0 && seed.toDouble() == std::floor(seed.toDouble());
    if (parsed.steps < 1 || parsed.steps > core::kMaxSteps || parsed.batch < 1 || parsed.batch > core::kMaxBatch ||
        !seedOk || parsed.seed > core::kMaxSeed) {
        *error = QStringLiteral("the settings have an invalid steps, batch or seed value (steps 1-%1, batch 1-%2, "
                                "seed 0-%3)")
                     .arg(core::kMaxSteps)
                     .arg(core::kMaxBatch)
                     .arg(core::kMaxSeed);
        return false;
    }
    // Names the engine does not know are refused like numbers out of range: shown in a box, they
    // would pass for settings that run, and be written back.
    const std::pair<core::NameKind, const QString*> names[] = {{core::NameKind::Path, &parsed.path},
                                                               {core::NameKind::Solver, &parsed.solver},
                                                               {core::NameKind::Schedule, &parsed.schedule},
                                                               {core::NameKind::Device, &parsed.device}};
    for (const auto& [kind, name] : names) {
        const std::string why = core::Engine::checkName(kind, name->toStdString());
        if (!why.empty()) {
            *error = QString::fromStdString(why);
            return false;
        }
    }
    *settings = parsed;
    return true;
}

QStringList engineNames(core::NameKind kind) {
    QStringList names;
    for (const std::string& name : core::Engine::names(kind)) names << QString::fromStdString(name);
    return names;
}

QString RunSettings::parametersLine(int nfe) const {
    return QStringLiteral("Steps: %1, Sampler: %2, Schedule type: %3, Seed: %4, Batch: %5, Model: %6, Path: %7, NFE: %8, Version: FlowScope %9")
        .arg(steps)
        .arg(solver, schedule)
        .arg(seed)
        .arg(batch)
        .arg(model, path)
        .arg(nfe)
        .arg(QString::fromStdString(core::Engine::version()));
}

}  // namespace flowscope::ui

namespace flowscope::ui {

bool RunSettings::fromPng(QIODevice* device, RunSettings* settings, QString* error) {
    QImageReader reader(device, "png");
    if (!reader.canRead()) {
        *error = QObject::tr("it is not an image FlowScope can read");
        return false;
    }
    const QString text = reader.text("flowscope");
    if (text.isEmpty()) {
        *error = QObject::tr("it holds no FlowScope settings (it was not exported by FlowScope)");
        return false;
    }
    QJsonParseError parseError;
    const QJsonDocument document = QJsonDocument::fromJson(text.toUtf8(), &parseError);
    QString why;
    if (!document.isObject()) {
        *error = QObject::tr("its FlowScope settings are damaged: %1").arg(parseError.errorString());
        return false;
    }
    if (!fromJson(document.object(), settings, &why)) {
        *error = QObject::tr("its FlowScope settings are damaged: %1").arg(why);
        return false;
    }
    return true;
}

}  // namespace flowscope::ui
