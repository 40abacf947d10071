// The IDX reader on the real Debian dataset and on malformed files, the missing-package message,
// and the 2-D point clouds.
#include <cstdlib>

#include <QtTest/QtTest>
#include <torch/torch.h>
#include <zlib.h>

#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/models/Datasets.h"

using namespace flowscope::core;

namespace {

void writeBytes(const QString& path, const QByteArray& bytes, bool gzip) {
    if (gzip) {
        gzFile file = gzopen(path.toLocal8Bit().constData(), "wb");
        QVERIFY(file);
        QCOMPARE(gzwrite(file, bytes.constData(), bytes.size()), int(bytes.size()));
        gzclose(file);
    } else {
        QFile file(path);
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.write(bytes);
    }
}

QByteArray idxHeader(std::initializer_list<quint32> dims, char type = 0x08) {
    QByteArray header;
    header.append('\0').append('\0').append(type).append(char(dims.size()));
    for (quint32 d : dims) {
        for (int shift = 24; shift >= 0; shift -= 8) header.append(char((d >> shift) & 0xff));
    }
    return header;
}

QString errorOf(const QString& path) {
    try {
        readIdx(path.toStdString());
    } catch (const std::exception& error) {
        return error.what();
    }
    return {};
}

}  // namespace

class TestDatasets : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void fashionMnistFromTheDebianPackage();
    void fashionMnistLabelsAreBalanced();
    void idxRoundTripPlainAndGzip();
    void malformedIdxFilesAreRefused();
    void missingPackageNamesIt();
    void pointClouds();
};

void TestDatasets::fashionMnistFromTheDebianPackage() {
    const auto images = loadFashionMnist(true, 0);
    QCOMPARE(images.sizes().vec(), (std::vector<int64_t>{60000, 1, 28, 28}));
    QCOMPARE(images.scalar_type(), torch::kFloat32);
    QCOMPARE(images.min().item<float>(), -1.0f);
    QCOMPARE(images.max().item<float>(), 1.0f);
    const auto test = loadFashionMnist(false, 100);
    QCOMPARE(test.size(0), 100);
    // Values are exactly x/127.5 - 1 of bytes.
    const auto bytes = (test + 1.0) * 127.5;
    QVERIFY((bytes - bytes.round()).abs().max().item<float>() < 1e-3f);
}

void TestDatasets::fashionMnistLabelsAreBalanced() {
    // Fashion-MNIST has exactly 6,000 training images per class.
    const auto labels = readIdx(fashionMnistDirectory() + "/train-labels-idx1-ubyte.gz");
    QCOMPARE(labels.sizes().vec(), (std::vector<int64_t>{60000}));
    const auto counts = torch::bincount(labels.to(torch::kLong));
    QCOMPARE(counts.size(0), 10);
    QVERIFY(torch::all(counts == 6000).item<bool>());
}

void TestDatasets::idxRoundTripPlainAndGzip() {
    QTemporaryDir dir;
    QByteArray payload;
    for (int i = 0; i < 2 * 3 * 4; ++i) payload.append(char(i * 7));
    for (bool gzip : {false, true}) {
        const QString path = dir.filePath(gzip ? "a.gz" : "a.idx");
        writeBytes(path, idxHeader({2, 3, 4}) + payload, gzip);
        const auto tensor = readIdx(path.toStdString());
        QCOMPARE(tensor.sizes().vec(), (std::vector<int64_t>{2, 3, 4}));
        QCOMPARE(tensor[1][2][3].item<uint8_t>(), uint8_t(23 * 7));
    }
}

void TestDatasets::malformedIdxFilesAreRefused() {
    QTemporaryDir dir;
    const QString path = dir.filePath("bad.idx");
    writeBytes(path, QByteArray("ab"), false);
    QVERIFY(errorOf(path).contains("too short"));
    writeBytes(path, idxHeader({2, 2}, 0x0D) + QByteArray(16, 0), false);
    QVERIFY(errorOf(path).contains("not an IDX file of unsigned bytes"));
    writeBytes(path, idxHeader({2, 2}) + QByteArray(3, 0), false);
    QVERIFY(errorOf(path).contains("truncated"));
    writeBytes(path, idxHeader({2, 2}) + QByteArray(5, 0), false);
    QVERIFY(errorOf(path).contains("trailing"));
    writeBytes(path, idxHeader({0, 2}), false);
    QVERIFY(errorOf(path).contains("bad dimension"));
    QVERIFY(errorOf(dir.filePath("absent.idx")).contains("cannot open"));
}

void TestDatasets::missingPackageNamesIt() {
    QTemporaryDir empty;
    qputenv("FLOWSCOPE_FASHION_MNIST_DIR", empty.path().toLocal8Bit());
    QString message;
    try {
        loadFashionMnist(true, 0);
    } catch (const std::exception& error) {
        message = error.what();
    }
    qunsetenv("FLOWSCOPE_FASHION_MNIST_DIR");
    QVERIFY2(message.contains("dataset-fashion-mnist"), qPrintable(message));
}

void TestDatasets::pointClouds() {
    for (const auto& name : pointCloudNames()) {
        const auto a = makePointCloud(name, 500);
        QCOMPARE(a.sizes().vec(), (std::vector<int64_t>{500, 2}));
        QVERIFY(torch::equal(a, makePointCloud(name, 500)));
        QVERIFY(a.abs().max().item<float>() < 4.5f);
        QVERIFY(a.std().item<float>() > 0.3f);
    }
    // Checkerboard points lie in the dark cells: floor(x) + floor(y) even on [-2, 2]^2.
    const auto board = makePointCloud("checkerboard", 1000);
    const auto parity = (board.floor().sum(1).to(torch::kLong) % 2 + 2) % 2;
    QVERIFY(torch::all(parity == 0).item<bool>());
    QVERIFY_THROWS_EXCEPTION(UnknownNameError, makePointCloud("circles"));
}

QTEST_GUILESS_MAIN(TestDatasets)
#include "tst_datasets.moc"
