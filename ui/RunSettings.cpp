#include "ui/RunSettings.h"

#include <QBuffer>
#include <QImageReader>
#include <QObject>
#include <zlib.h>

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
    request.condition = condition.toStdString();
    request.guidance = guidance;
    request.text = text;
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
    settings.condition = QString::fromStdString(request.condition);
    settings.guidance = request.guidance;
    settings.text = request.text;
    return settings;
}

QString RunSettings::conditionLabel() const {
    if (condition.isEmpty()) return {};
    if (!guidance.guides()) return condition;
    return QStringLiteral("%1, %2 w = %3")
        .arg(condition, QString::fromStdString(core::toString(guidance.method)))
        .arg(guidance.scale);
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

namespace {

// Settings chunks are a few hundred bytes; a PNG file FlowScope reads them from is at most this.
constexpr qint64 kMaxPngBytes = qint64(256) << 20;
constexpr uLong kMaxTextBytes = 1 << 20;

uint32_t bigEndian(const QByteArray& bytes, qsizetype at) {
    return (uint32_t(uchar(bytes[at])) << 24) | (uint32_t(uchar(bytes[at + 1])) << 16) |
           (uint32_t(uchar(bytes[at + 2])) << 8) | uint32_t(uchar(bytes[at + 3]));
}

// Whether compressed data inflates to at most kMaxTextBytes (a small chunk may inflate to
// gigabytes, which the PNG reader would allocate).
bool inflatesSmall(const char* data, qsizetype size) {
    z_stream stream{};
    if (inflateInit(&stream) != Z_OK) return false;
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
    stream.avail_in = uInt(size);
    char buffer[16384];
    int status = Z_OK;
    while (status == Z_OK && stream.total_out <= kMaxTextBytes) {
        stream.next_out = reinterpret_cast<Bytef*>(buffer);
        stream.avail_out = sizeof buffer;
        status = inflate(&stream, Z_NO_FLUSH);
    }
    const bool small = stream.total_out <= kMaxTextBytes;
    inflateEnd(&stream);
    return small;
}

// False for a chunk before the image data that runs past the end of the file (the PNG reader
// would allocate the length it declares, up to 4 GB), or a compressed text chunk (zTXt, or iTXt
// with its compression flag) that would inflate past kMaxTextBytes.
bool textChunksAreSmall(const QByteArray& bytes) {
    for (qsizetype offset = 8; offset + 12 <= bytes.size();) {
        const uint32_t length = bigEndian(bytes, offset);
        if (length > uint64_t(bytes.size() - offset - 12)) return false;
        const QByteArray type = bytes.mid(offset + 4, 4);
        const char* body = bytes.constData() + offset + 8;
        const qsizetype keyEnd = QByteArrayView(body, length).indexOf('\0');
        if (type == "zTXt" && keyEnd >= 0 && keyEnd + 2 <= qsizetype(length)) {
            if (!inflatesSmall(body + keyEnd + 2, length - keyEnd - 2)) return false;
        } else if (type == "iTXt" && keyEnd >= 0 && keyEnd + 3 <= qsizetype(length) && body[keyEnd + 1] == 1) {
            // After the flag and the method: a language tag and a translated keyword, each ended by 0.
            const QByteArrayView rest(body + keyEnd + 3, length - keyEnd - 3);
            const qsizetype language = rest.indexOf('\0');
            const qsizetype keyword = language < 0 ? -1 : rest.sliced(language + 1).indexOf('\0');
            if (keyword >= 0) {
                const qsizetype start = language + 1 + keyword + 1;
                if (!inflatesSmall(rest.data() + start, rest.size() - start)) return false;
            }
        }
        if (type == "IEND") break;
        offset += 12 + qsizetype(length);
    }
    return true;
}

}  // namespace

bool RunSettings::fromPng(QIODevice* device, RunSettings* settings, QString* error) {
    QByteArray bytes = device->read(kMaxPngBytes + 1);
    if (bytes.size() > kMaxPngBytes) {
        *error = QObject::tr("it is larger than the %1 MB FlowScope reads settings from").arg(kMaxPngBytes >> 20);
        return false;
    }
    if (!textChunksAreSmall(bytes)) {
        *error = QObject::tr("it is damaged or its text chunks are too large to be FlowScope settings");
        return false;
    }
    QBuffer buffer(&bytes);
    buffer.open(QIODevice::ReadOnly);
    QImageReader reader(&buffer, "png");
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
