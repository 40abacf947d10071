// The restore path: settings read back from a PNG's text chunks, both by the app (Qt's reader,
// then the JSON settings) and by the engine's own chunk reader.
#include <cstdint>
#include <stdexcept>
#include <string>

#include <QBuffer>
#include <QByteArray>
#include <QCoreApplication>

#include "core/media/ImageWriter.h"
#include "tests/fuzz/FuzzSupport.h"
#include "ui/RunSettings.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static int argc = 1;
    static char name[] = "fuzz_png_settings";
    static char* argv[] = {name, nullptr};
    static QCoreApplication app(argc, argv);

    QByteArray bytes(reinterpret_cast<const char*>(data), static_cast<qsizetype>(size));
    QBuffer buffer(&bytes);
    buffer.open(QIODevice::ReadOnly);
    flowscope::ui::RunSettings settings;
    QString error;
    if (!flowscope::ui::RunSettings::fromPng(&buffer, &settings, &error) && error.isEmpty()) std::abort();
    try {
        flowscope::media::readPngText(std::string(reinterpret_cast<const char*>(data), size));
    } catch (const std::runtime_error& failure) {
        flowscope::fuzz::requireMessage(failure);
    }
    return 0;
}
