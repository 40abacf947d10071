#include "ui/RunSettings.h"

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
    if (seed.isDouble()) seedOk = seed.toDouble(-1) >= 0;
    if (parsed.steps < 1 || parsed.steps > 10000 || parsed.batch < 1 || parsed.batch > 4096 || !seedOk) {
        *error = QStringLiteral("the settings have an invalid steps, batch or seed value");
        return false;
    }
    *settings = parsed;
    return true;
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
