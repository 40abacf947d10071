// The window's export functions on their own (ui/Exports.h), on a real run of the engine: the
// final picture against its definition (a grid of [-1, 1] values mapped to bytes), PNG chunks that
// restore the run, .npy and CSV contents, and failures that leave nothing behind.
#include <cmath>

#include <QBuffer>
#include <QElapsedTimer>
#include <QFile>
#include <QImageReader>
#include <QImageWriter>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "core/api/Engine.h"
#include "core/io/NpyFile.h"
#include "ui/Exports.h"
#include "ui/RunSettings.h"

using namespace flowscope;
using namespace flowscope::ui;

namespace {

// A lane's snapshot of a real run with `settings`, as the window keeps it.
LaneSnapshot snapshotOf(const RunSettings& settings) {
    core::SampleRequest request = settings.toRequest();
    request.recordTrajectory = true;
    request.analyze = true;
    core::Engine engine;
    const core::SampleResult result = engine.sample(request);
    if (!result.ok()) qFatal("the run failed: %s", result.error.c_str());
    LaneSnapshot lane;
    lane.settings = settings;
    lane.result.nfe = result.nfe;
    lane.result.steps = result.steps;
    lane.result.sampleShape = result.sampleShape;
    lane.result.final = result.final;
    lane.result.finalImage = result.finalImage.shape.empty() ? result.final : result.finalImage;
    lane.result.trajectory = result.trajectory;
    lane.result.analysis = result.analysis;
    for (size_t f = 0; f < result.times.size(); ++f) {
        LaneFrame frame;
        frame.index = int(f);
        frame.t = result.times[f];
        lane.frames.push_back(frame);
    }
    return lane;
}

RunSettings mixtureSettings() {
    RunSettings settings;
    settings.model = "gmm:8gaussians";
    settings.batch = 5;
    settings.steps = 3;
    settings.seed = 4000000000;
    return settings;
}

}  // namespace

class TestExports : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void finalPictureIsAGridOfTheMappedValues();
    void pngChunksRestoreTheRun();
    void failedPngWriteLeavesNothing();
    void restoreRefusesAPngWhoseChunkRunsPastItsEnd();
    void trajectoryIsTheRecordedStates();
    void metricsHaveARowPerFrame();
};

void TestExports::finalPictureIsAGridOfTheMappedValues() {
    RunSettings settings;
    settings.model = "fashion-mnist:200";
    settings.batch = 4;
    settings.steps = 2;
    const LaneSnapshot lane = snapshotOf(settings);
    const QImage picture = exports::finalPicture(lane).convertToFormat(QImage::Format_RGB888);
    // Four 28x28 samples in a 2x2 grid, each pixel enlarged 4 times (under 64 pixels a side),
    // 2-pixel gaps around and between.
    constexpr int side = 28, scale = 4, gap = 2;
    QCOMPARE(picture.size(), QSize(2 * side * scale + 3 * gap, 2 * side * scale + 3 * gap));
    const core::HostArray& images = lane.result.finalImage;
    for (int sample = 0; sample < 4; ++sample) {
        const int left = gap + (sample % 2) * (side * scale + gap);
        const int top = gap + (sample / 2) * (side * scale + gap);
        for (int y = 0; y < side; y += 3) {
            for (int x = 0; x < side; x += 3) {
                const float value = images.values[size_t(sample) * side * side + size_t(y) * side + size_t(x)];
                const int expected = int(std::lround((std::clamp(value, -1.0f, 1.0f) + 1.0f) * 127.5f));
                const QColor pixel = picture.pixelColor(left + x * scale + scale / 2, top + y * scale + scale / 2);
                QCOMPARE(pixel.red(), expected);
                QCOMPARE(pixel.green(), expected);
            }
        }
    }
}

void TestExports::pngChunksRestoreTheRun() {
    QTemporaryDir dir;
    const RunSettings settings = mixtureSettings();
    const LaneSnapshot lane = snapshotOf(settings);
    const QString path = dir.filePath("run.png");
    QString error;
    QVERIFY2(exports::savePng(exports::finalPicture(lane), path, settings.pngChunks(lane.result.nfe, lane.result.sampleShape),
                              &error),
             qPrintable(error));
    QImageReader reader(path);
    QVERIFY(reader.text("parameters").startsWith("Steps: 3, Sampler: euler"));
    QVERIFY(reader.text("parameters").contains("Seed: 4000000000"));
    QFile file(path);
    QVERIFY(file.open(QIODevice::ReadOnly));
    RunSettings restored;
    QVERIFY2(RunSettings::fromPng(&file, &restored, &error), qPrintable(error));
    QCOMPARE(restored, settings);
    // Text beyond ASCII (in UTF-8 iTXt chunks, which tEXt's Latin-1 cannot hold) comes back whole.
    RunSettings unicode = settings;
    unicode.text.conditioning = "/prompts/caf\u00e9 \u72d0.safetensors";
    const QString unicodePath = dir.filePath("unicode.png");
    QVERIFY2(exports::savePng(exports::finalPicture(lane), unicodePath,
                              unicode.pngChunks(lane.result.nfe, lane.result.sampleShape), &error),
             qPrintable(error));
    QVERIFY(QImageReader(unicodePath).text("flowscope").contains(QString::fromUtf8("caf\u00e9 \u72d0")));
    QFile unicodeFile(unicodePath);
    QVERIFY(unicodeFile.open(QIODevice::ReadOnly));
    QVERIFY2(RunSettings::fromPng(&unicodeFile, &restored, &error), qPrintable(error));
    QCOMPARE(restored, unicode);
}

void TestExports::failedPngWriteLeavesNothing() {
    QTemporaryDir dir;
    const LaneSnapshot lane = snapshotOf(mixtureSettings());
    QString error;
    // Into a folder that does not exist: refused with the reason, no file.
    const QString missing = dir.filePath("no/such/folder/run.png");
    QVERIFY(!exports::savePng(exports::finalPicture(lane), missing, {}, &error));
    QVERIFY(!error.isEmpty());
    QVERIFY(!QFile::exists(missing));
    // Nothing to export yet: refused in words.
    error.clear();
    QVERIFY(!exports::savePng(QImage(), dir.filePath("empty.png"), {}, &error));
    QVERIFY2(error.contains("nothing to export"), qPrintable(error));
    QVERIFY(!QFile::exists(dir.filePath("empty.png")));
}

void TestExports::restoreRefusesAPngWhoseChunkRunsPastItsEnd() {
    // A settings PNG whose next text chunk declares 2 GB in a file of a few hundred bytes: the PNG
    // reader would allocate what it declares. Refused at once, in words.
    const RunSettings settings = mixtureSettings();
    QImage image(8, 8, QImage::Format_RGB888);
    image.fill(Qt::gray);
    QByteArray bytes;
    {
        QBuffer buffer(&bytes);
        buffer.open(QIODevice::WriteOnly);
        QImageWriter writer(&buffer, "png");
        image.setText("flowscope", QString::fromUtf8(settings.toJson()));
        QVERIFY(writer.write(image));
    }
    const QByteArray bomb = QByteArray::fromHex("77359400") + "tEXt" + "flowscope" + QByteArray(1, '\0') + "{}";
    bytes.insert(8 + 25, bomb);  // after the signature and IHDR
    QBuffer device(&bytes);
    QVERIFY(device.open(QIODevice::ReadOnly));
    RunSettings restored;
    QString error;
    QElapsedTimer timer;
    timer.start();
    QVERIFY(!RunSettings::fromPng(&device, &restored, &error));
    QVERIFY2(error.contains("damaged"), qPrintable(error));
    QVERIFY(timer.elapsed() < 5000);
}

void TestExports::trajectoryIsTheRecordedStates() {
    QTemporaryDir dir;
    const LaneSnapshot lane = snapshotOf(mixtureSettings());
    const QString path = dir.filePath("trajectory.npy");
    QString error;
    QVERIFY2(exports::saveTrajectory(lane, path, &error), qPrintable(error));
    const core::NpyArray read = core::readNpy(path.toStdString());
    QCOMPARE(read.shape, (std::vector<int64_t>{4, 5, 2}));
    QCOMPARE(read.data, lane.result.trajectory.values);
    // A lane without a recorded trajectory says so and writes nothing.
    LaneSnapshot empty = lane;
    empty.result.trajectory = {};
    QVERIFY(!exports::saveTrajectory(empty, dir.filePath("none.npy"), &error));
    QVERIFY2(error.contains("no recorded trajectory"), qPrintable(error));
    QVERIFY(!QFile::exists(dir.filePath("none.npy")));
}

void TestExports::metricsHaveARowPerFrame() {
    QTemporaryDir dir;
    LaneSnapshot lane = snapshotOf(mixtureSettings());
    lane.referenceError = 0.25;
    const QString path = dir.filePath("metrics.csv");
    QString error;
    QVERIFY2(exports::saveMetricsCsv({lane}, path, &error), qPrintable(error));
    QFile file(path);
    QVERIFY(file.open(QIODevice::ReadOnly));
    const QList<QByteArray> lines = file.readAll().trimmed().split('\n');
    QCOMPARE(lines.size(), 1 + 4);  // header, then frames t_0 .. t_3
    QVERIFY(lines[0].startsWith("lane,model,path,solver,schedule,steps,seed,batch,nfe,"));
    const QList<QByteArray> first = lines[1].split(',');
    QCOMPARE(first[1], QByteArray("gmm:8gaussians"));
    QCOMPARE(first[6], QByteArray("4000000000"));
    QCOMPARE(first[11].toDouble(), 0.25);
    QCOMPARE(lines[4].split(',')[14].toDouble(), 1.0);  // the last frame's t
}

QTEST_MAIN(TestExports)
#include "tst_exports.moc"
