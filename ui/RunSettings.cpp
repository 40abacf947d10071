#include "ui/RunSettings.h"

#include <QImageReader>
#include <QObject>

#include "core/api/SettingsCodec.h"

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
    request.dtype = dtype.toStdString();
    request.tEnd = tEnd;
    request.rtol = rtol;
    request.atol = atol;
    request.recordTrajectory = false;
    return request;
}

RunSettings RunSettings::fromRequest(const core::SampleRequest& request) {
    RunSettings settings;
    settings.model = QString::fromStdString(request.model);
    settings.path = QString::fromStdString(request.path);
    settings.solver = QString::fromStdString(request.solver);
    settings.schedule = QString::fromStdString(request.schedule);
    settings.steps = request.steps;
    settings.seed = request.seed;
    settings.batch = request.batch;
    settings.resolution = request.resolution;
    settings.device = QString::fromStdString(request.device);
    settings.dtype = QString::fromStdString(request.dtype);
    settings.tEnd = request.tEnd;
    settings.rtol = request.rtol;
    settings.atol = request.atol;
    return settings;
}

QByteArray RunSettings::toJson() const { return QByteArray::fromStdString(core::settingsToJson(toRequest())); }

bool RunSettings::fromJson(const QByteArray& json, RunSettings* settings, QString* error) {
    core::SampleRequest request = RunSettings().toRequest();
    std::string why;
    if (!core::settingsFromJson(json.toStdString(), &request, &why)) {
        *error = QString::fromStdString(why);
        return false;
    }
    *settings = fromRequest(request);
    return true;
}

bool RunSettings::fromPng(QIODevice* device, RunSettings* settings, QString* error) {
    QImageReader reader(device, "png");
    if (!reader.canRead()) {
        *error = QObject::tr("it is not an image FlowScope can read");
        return false;
    }
    const QString text = reader.text(QString::fromUtf8(core::kSettingsChunk.data(), qsizetype(core::kSettingsChunk.size())));
    if (text.isEmpty()) {
        *error = QObject::tr("it holds no FlowScope settings (it was not exported by FlowScope)");
        return false;
    }
    QString why;
    if (!fromJson(text.toUtf8(), settings, &why)) {
        *error = QObject::tr("its FlowScope settings are damaged: %1").arg(why);
        return false;
    }
    return true;
}

QList<QPair<QString, QString>> RunSettings::pngChunks(int nfe, const std::vector<int64_t>& sampleShape) const {
    QList<QPair<QString, QString>> chunks;
    for (const auto& [key, value] : core::settingsChunks(toRequest(), nfe, sampleShape)) {
        chunks.append({QString::fromStdString(key), QString::fromStdString(value)});
    }
    return chunks;
}

QString modelSpec(core::SpecForm form, const QString& name) {
    return QString::fromStdString(core::makeSpec(form, name.toStdString()));
}

bool specHasForm(const QString& spec, core::SpecForm form, QString* name) {
    std::string rest;
    if (!core::specHasForm(spec.toStdString(), form, &rest)) return false;
    if (name) *name = QString::fromStdString(rest);
    return true;
}

QStringList engineNames(core::NameKind kind) {
    QStringList names;
    for (const std::string& name : core::Engine::names(kind)) names << QString::fromStdString(name);
    return names;
}

}  // namespace flowscope::ui
