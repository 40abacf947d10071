// core/media (image folders, PNG writing and text chunks) and the core file helpers (atomic
// writes, .npy), exercised on real files in a temporary folder.
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <QDir>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>
#include <zlib.h>

#include "core/api/Engine.h"
#include "core/io/AtomicFile.h"
#include "core/io/NpyFile.h"
#include "core/media/ImageDecoder.h"
#include "core/media/ImageFolder.h"
#include "core/media/ImageWriter.h"
#include "tests/TestSupport.h"

using flowscope::test::readBytes;
using flowscope::test::writeBytes;

namespace {

// Fixed pseudo-random bytes that no image decoder accepts (no image signature at the start).
std::string garbageBytes(size_t count) {
    std::mt19937 generator(1234);
    std::string bytes = "garbage:";
    while (bytes.size() < count) bytes += static_cast<char>(generator() & 0xff);
    return bytes;
}

// Every entry of a folder, hidden ones included, so that a leftover ".name.XXXXXX" shows up.
QStringList listFolder(const QString& folder) {
    return QDir(folder).entryList(QDir::AllEntries | QDir::Hidden | QDir::System | QDir::NoDotAndDotDot, QDir::Name);
}

// The message of the E that `call` throws, or a text saying what happened instead, so a test can
// check both the exception type and what it tells the user with one QVERIFY2.
template <typename E, typename F>
std::string messageOf(F&& call) {
    try {
        call();
    } catch (const E& error) {
        return error.what();
    } catch (const std::exception& error) {
        return std::string("wrong exception type: ") + error.what();
    }
    return "no exception";
}

uint32_t bigEndian32(const std::string& bytes, size_t offset) {
    return (uint32_t(uint8_t(bytes[offset])) << 24) | (uint32_t(uint8_t(bytes[offset + 1])) << 16) |
           (uint32_t(uint8_t(bytes[offset + 2])) << 8) | uint32_t(uint8_t(bytes[offset + 3]));
}

}  // namespace

class TestMedia : public QObject {
    Q_OBJECT

private slots:
    void loadImageFolderReadsMixedFormats();
    void loadImageFolderRefusesFoldersWithoutImages();
    void pngTextRoundTrip();
    void sampleToImageMapsRange();
    void failedWritesLeaveNothingBehind();
    void atomicWriteReplacesContent();
    void npyRoundTripAndHeader();
    void decompressionBombIsRefusedWithBoundedMemory();
    void bombWithinOpenCvsDefaultsIsRefusedFromItsHeader();
    void devicesAndPipesAreWrittenInPlace();
};

void TestMedia::loadImageFolderReadsMixedFormats() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string root = dir.path().toStdString();

    // 40x20 (wide): the centre 20x20 square is red, the 10-pixel sides blue, so the centre crop
    // sees only red and any off-centre crop or stretch would pull blue in. OpenCV writes BGR.
    cv::Mat wide(20, 40, CV_8UC3, cv::Scalar(255, 0, 0));
    wide(cv::Rect(10, 0, 20, 20)).setTo(cv::Scalar(0, 0, 255));
    QVERIFY(cv::imwrite(root + "/a.png", wide));
    // 15x30 (tall), pure green.
    QVERIFY(cv::imwrite(root + "/b.png", cv::Mat(30, 15, CV_8UC3, cv::Scalar(0, 255, 0))));
    // 45x30 JPEG, uniform grey: lossy, but a flat image survives almost exactly.
    QVERIFY(cv::imwrite(root + "/c.jpg", cv::Mat(30, 45, CV_8UC3, cv::Scalar(128, 128, 128))));
    writeBytes(dir.filePath("bad.png"), garbageBytes(300));
    // A DICOM file named .png: OpenCV's DICOM reader aborts the process on this one (found by
    // fuzz_image); it must be skipped like any other file that is not a supported image.
    writeBytes(dir.filePath("dicom.png"), flowscope::test::readBytes(QStringLiteral(FLOWSCOPE_SOURCE_DIR) +
                                                                      "/tests/fuzz/corpus/fuzz_image/dicom-gdcm-assert"));
    writeBytes(dir.filePath("readme.txt"), "not an image\n");

    std::vector<std::string> notes;
    const torch::Tensor images = flowscope::media::loadImageFolder(root, 8, notes);
    QCOMPARE(images.sizes().vec(), (std::vector<int64_t>{3, 3, 8, 8}));
    QCOMPARE(images.scalar_type(), torch::kFloat32);
    QVERIFY(images.min().item<float>() >= -1.0f);
    QVERIFY(images.max().item<float>() <= 1.0f);

    // Only the corrupt PNG and the DICOM count as skipped; the .txt file is not an image file at all.
    QCOMPARE(notes.size(), size_t(1));
    QVERIFY2(notes[0].find("2 file(s)") != std::string::npos, notes[0].c_str());
    QVERIFY2(notes[0].find("skipped") != std::string::npos, notes[0].c_str());

    // File-name order: a.png, b.png, (bad.png skipped), c.jpg. Channels are R, G, B.
    const torch::Tensor red = images[0];
    QVERIFY(torch::allclose(red[0], torch::ones({8, 8}), 0.0, 1e-6));
    QVERIFY(torch::allclose(red[1], -torch::ones({8, 8}), 0.0, 1e-6));
    QVERIFY(torch::allclose(red[2], -torch::ones({8, 8}), 0.0, 1e-6));

    const torch::Tensor green = images[1];
    QVERIFY(torch::allclose(green[0], -torch::ones({8, 8}), 0.0, 1e-6));
    QVERIFY(torch::allclose(green[1], torch::ones({8, 8}), 0.0, 1e-6));
    QVERIFY(torch::allclose(green[2], -torch::ones({8, 8}), 0.0, 1e-6));

    // 128 / 127.5 - 1 = 0.0039; allow a couple of JPEG levels.
    const torch::Tensor grey = images[2];
    QVERIFY((grey - 128.0 / 127.5 + 1.0).abs().max().item<double>() < 3.0 / 127.5);

    // The host-array variant carries the same values for the engine.
    std::vector<std::string> hostNotes;
    const flowscope::core::HostArray host = flowscope::media::loadImageFolderToHost(root, 8, hostNotes);
    QCOMPARE(host.shape, (std::vector<int64_t>{3, 3, 8, 8}));
    QCOMPARE(host.values.size(), size_t(3 * 3 * 8 * 8));
    QVERIFY(std::memcmp(host.values.data(), images.data_ptr<float>(), host.values.size() * sizeof(float)) == 0);
}

void TestMedia::loadImageFolderRefusesFoldersWithoutImages() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(QDir(dir.path()).mkdir("empty"));
    QVERIFY(QDir(dir.path()).mkdir("corrupt"));
    writeBytes(dir.filePath("corrupt/broken.png"), garbageBytes(200));
    writeBytes(dir.filePath("plain.txt"), "hello");

    std::vector<std::string> notes;
    std::string message = messageOf<std::invalid_argument>(
        [&] { flowscope::media::loadImageFolder(dir.filePath("empty").toStdString(), 8, notes); });
    QVERIFY2(message.find("no readable image") != std::string::npos, message.c_str());

    notes.clear();
    message = messageOf<std::invalid_argument>(
        [&] { flowscope::media::loadImageFolder(dir.filePath("corrupt").toStdString(), 8, notes); });
    QVERIFY2(message.find("no readable image") != std::string::npos, message.c_str());
    // The user should learn that a file was there but unreadable, not that the folder was empty.
    QVERIFY2(message.find("1 unreadable") != std::string::npos, message.c_str());

    message = messageOf<std::invalid_argument>(
        [&] { flowscope::media::loadImageFolder(dir.filePath("plain.txt").toStdString(), 8, notes); });
    QVERIFY2(message.find("not a folder") != std::string::npos, message.c_str());
    message = messageOf<std::invalid_argument>(
        [&] { flowscope::media::loadImageFolder(dir.filePath("missing").toStdString(), 8, notes); });
    QVERIFY2(message.find("not a folder") != std::string::npos, message.c_str());
}

void TestMedia::pngTextRoundTrip() {
    // Distinct values per pixel and channel, so a channel swap or row shift would be visible.
    cv::Mat rgb(4, 5, CV_8UC3);
    for (int y = 0; y < rgb.rows; ++y) {
        for (int x = 0; x < rgb.cols; ++x) rgb.at<cv::Vec3b>(y, x) = cv::Vec3b(uchar(10 * x), uchar(50 * y), uchar(7 + x + y));
    }
    const std::vector<std::pair<std::string, std::string>> text{
        {"parameters", "Steps: 4, Sampler: heun, Seed: 7"},
        {"flowscope", R"({"steps":4,"solver":"heun"})"},
    };
    const std::string bytes = flowscope::media::encodePng(rgb, text);
    QCOMPARE(flowscope::media::readPngText(bytes), text);

    // Every chunk's CRC must be right, or strict readers (libpng on critical errors, browsers)
    // drop the metadata; walk the chunk list ourselves.
    QVERIFY(bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
    size_t offset = 8;
    int textChunks = 0;
    bool sawEnd = false;
    while (offset + 12 <= bytes.size()) {
        const uint32_t length = bigEndian32(bytes, offset);
        QVERIFY(offset + 12 + length <= bytes.size());
        const uint32_t crc = static_cast<uint32_t>(
            crc32(0, reinterpret_cast<const Bytef*>(bytes.data() + offset + 4), length + 4));
        QCOMPARE(bigEndian32(bytes, offset + 8 + length), crc);
        const std::string type = bytes.substr(offset + 4, 4);
        if (offset == 8) QCOMPARE(type, std::string("IHDR"));
        if (type == "tEXt") ++textChunks;
        offset += 12 + length;
        if (type == "IEND") {
            sawEnd = true;
            break;
        }
    }
    QVERIFY(sawEnd);
    QCOMPARE(offset, bytes.size());
    QCOMPARE(textChunks, 2);

    const std::vector<uchar> buffer(bytes.begin(), bytes.end());
    cv::Mat decoded = cv::imdecode(buffer, cv::IMREAD_COLOR);
    QVERIFY(!decoded.empty());
    cv::cvtColor(decoded, decoded, cv::COLOR_BGR2RGB);
    QCOMPARE(decoded.size(), rgb.size());
    QCOMPARE(cv::norm(decoded, rgb, cv::NORM_INF), 0.0);

    // No text: a plain PNG with no tEXt chunks; random bytes: no chunks and no crash.
    QVERIFY(flowscope::media::readPngText(flowscope::media::encodePng(rgb)).empty());
    QVERIFY(flowscope::media::readPngText(garbageBytes(64)).empty());
    QVERIFY(flowscope::media::readPngText(bytes.substr(0, 40)).empty());
}

void TestMedia::sampleToImageMapsRange() {
    // Batch of two RGB 1x4 images; only the second is converted, to check the batch offset.
    flowscope::core::HostArray batch;
    batch.shape = {2, 3, 1, 4};
    batch.values.assign(2 * 3 * 4, 0.25f);
    const std::vector<float> red{-1.0f, 1.0f, 0.0f, -3.0f};
    const std::vector<float> green{2.0f, -0.5f, 0.5f, 1.0f};
    const std::vector<float> blue{0.0f, 0.0f, -1.0f, 7.5f};
    for (int x = 0; x < 4; ++x) {
        batch.values[12 + x] = red[x];
        batch.values[12 + 4 + x] = green[x];
        batch.values[12 + 8 + x] = blue[x];
    }
    const cv::Mat image = flowscope::media::sampleToImage(batch, 1);
    QCOMPARE(image.type(), CV_8UC3);
    QCOMPARE(image.rows, 1);
    QCOMPARE(image.cols, 4);
    // -1 -> 0, 1 -> 255, 0 -> round(127.5) = 128, -0.5 -> round(63.75) = 64, 0.5 -> round(191.25) = 191;
    // values outside [-1, 1] clamp.
    const std::vector<cv::Vec3b> expected{{0, 255, 128}, {255, 64, 128}, {128, 191, 0}, {0, 255, 255}};
    for (int x = 0; x < 4; ++x) QCOMPARE(image.at<cv::Vec3b>(0, x), expected[x]);

    // The first image is 0.25 everywhere: round(1.25 * 127.5) = round(159.375) = 159.
    const cv::Mat first = flowscope::media::sampleToImage(batch, 0);
    QCOMPARE(first.at<cv::Vec3b>(0, 2), cv::Vec3b(159, 159, 159));

    // One channel (Fashion-MNIST) is repeated into grey RGB.
    flowscope::core::HostArray gray;
    gray.shape = {1, 1, 1, 3};
    gray.values = {-1.0f, 0.0f, 1.0f};
    const cv::Mat grey = flowscope::media::sampleToImage(gray, 0);
    QCOMPARE(grey.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 0));
    QCOMPARE(grey.at<cv::Vec3b>(0, 1), cv::Vec3b(128, 128, 128));
    QCOMPARE(grey.at<cv::Vec3b>(0, 2), cv::Vec3b(255, 255, 255));

    flowscope::core::HostArray flat;
    flat.shape = {4, 2};
    flat.values.assign(8, 0.0f);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, flowscope::media::sampleToImage(flat, 0));
}

void TestMedia::failedWritesLeaveNothingBehind() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const cv::Mat picture(6, 6, CV_8UC3, cv::Scalar(1, 2, 3));
    const std::string payload = "new content";

    if (::geteuid() == 0) {
        // Root ignores folder permissions, so make the folder itself missing instead.
        const std::string inMissing = dir.filePath("missing/out.bin").toStdString();
        std::string message = messageOf<std::runtime_error>(
            [&] { flowscope::core::writeFileAtomically(inMissing, payload); });
        QVERIFY2(message.find("does not exist") != std::string::npos, message.c_str());
        message = messageOf<std::runtime_error>(
            [&] { flowscope::media::writePng(dir.filePath("missing/out.png").toStdString(), picture); });
        QVERIFY2(message.find("cannot write") != std::string::npos, message.c_str());
        QVERIFY(!QFileInfo::exists(dir.filePath("missing")));
        QCOMPARE(listFolder(dir.path()), QStringList());
    } else {
        QVERIFY(QDir(dir.path()).mkdir("locked"));
        const QString locked = dir.filePath("locked");
        QVERIFY(::chmod(locked.toLocal8Bit().constData(), 0555) == 0);
        std::string message = messageOf<std::runtime_error>(
            [&] { flowscope::core::writeFileAtomically((locked + "/out.bin").toStdString(), payload); });
        QVERIFY2(message.find("cannot write") != std::string::npos, message.c_str());
        message = messageOf<std::runtime_error>(
            [&] { flowscope::media::writePng((locked + "/out.png").toStdString(), picture); });
        QVERIFY2(message.find("cannot write") != std::string::npos, message.c_str());
        const QStringList left = listFolder(locked);
        // Restore write permission first, so QTemporaryDir can clean up even if the check fails.
        QVERIFY(::chmod(locked.toLocal8Bit().constData(), 0755) == 0);
        QCOMPARE(left, QStringList());
    }

    // A target that is a folder: the write fails, the folder and its content stay as they were,
    // and the file next to it is not touched.
    QTemporaryDir other;
    QVERIFY(other.isValid());
    writeBytes(other.filePath("keep.npy"), "old content");
    QVERIFY(QDir(other.path()).mkdir("target.png"));
    writeBytes(other.filePath("target.png/inside.txt"), "inside");
    std::string message = messageOf<std::runtime_error>(
        [&] { flowscope::core::writeFileAtomically(other.filePath("target.png").toStdString(), payload); });
    QVERIFY2(message.find("folder") != std::string::npos, message.c_str());
    message = messageOf<std::runtime_error>(
        [&] { flowscope::media::writePng(other.filePath("target.png").toStdString(), picture); });
    QVERIFY2(message.find("cannot write") != std::string::npos, message.c_str());
    QVERIFY(QFileInfo(other.filePath("target.png")).isDir());
    QCOMPARE(listFolder(other.filePath("target.png")), QStringList{"inside.txt"});
    QCOMPARE(readBytes(other.filePath("target.png/inside.txt")), std::string("inside"));
    QCOMPARE(readBytes(other.filePath("keep.npy")), std::string("old content"));
    QCOMPARE(listFolder(other.path()), (QStringList{"keep.npy", "target.png"}));
}

void TestMedia::atomicWriteReplacesContent() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString path = dir.filePath("data.txt");
    writeBytes(path, std::string(4096, 'A'));
    QVERIFY(::chmod(path.toLocal8Bit().constData(), 0600) == 0);

    flowscope::core::writeFileAtomically(path.toStdString(), std::string("short"));
    // Nothing of the longer old content may survive past the new end.
    QCOMPARE(readBytes(path), std::string("short"));

    // The stream overload writes exactly what the callback produced.
    flowscope::core::writeFileAtomically(path.toStdString(), [](std::ostream& out) { out << "line 1\n" << 42; });
    QCOMPARE(readBytes(path), std::string("line 1\n42"));

    // A replaced file keeps its permissions (here the 0600 set above) ...
    struct stat info {};
    QVERIFY(::stat(path.toLocal8Bit().constData(), &info) == 0);
    QVERIFY(S_ISREG(info.st_mode));
    QCOMPARE(info.st_mode & 0777, mode_t(0600));
    // ... and a new one gets 0666 less the umask, not mkstemp's private 0600.
    const QString fresh = dir.filePath("fresh.txt");
    flowscope::core::writeFileAtomically(fresh.toStdString(), std::string("new"));
    const mode_t mask = ::umask(0);
    ::umask(mask);
    QVERIFY(::stat(fresh.toLocal8Bit().constData(), &info) == 0);
    QCOMPARE(info.st_mode & 0777, mode_t(0666 & ~mask));

    // A bare file name goes to the current folder.
    const QString previous = QDir::currentPath();
    QVERIFY(QDir::setCurrent(dir.path()));
    flowscope::core::writeFileAtomically("relative.txt", std::string("here"));
    QVERIFY(QDir::setCurrent(previous));
    QCOMPARE(readBytes(dir.filePath("relative.txt")), std::string("here"));

    QCOMPARE(listFolder(dir.path()), (QStringList{"data.txt", "fresh.txt", "relative.txt"}));
}

void TestMedia::npyRoundTripAndHeader() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    std::vector<float> values(24);
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.5f - 3.25f;
    values[5] = -0.0f;
    values[7] = 1e-30f;
    const QString path = dir.filePath("array.npy");
    flowscope::core::writeNpy(path.toStdString(), {2, 3, 4}, values.data());

    const flowscope::core::NpyArray array = flowscope::core::readNpy(path.toStdString());
    QCOMPARE(array.shape, (std::vector<int64_t>{2, 3, 4}));
    QCOMPARE(array.data.size(), values.size());
    QVERIFY(std::memcmp(array.data.data(), values.data(), values.size() * sizeof(float)) == 0);

    const std::string bytes = readBytes(path);
    QVERIFY(bytes.size() > 10);
    QCOMPARE(bytes.substr(0, 6), std::string("\x93NUMPY", 6));
    QCOMPARE(int(uint8_t(bytes[6])), 1);
    QCOMPARE(int(uint8_t(bytes[7])), 0);
    const size_t headerLength = uint8_t(bytes[8]) | (size_t(uint8_t(bytes[9])) << 8);
    QCOMPARE((10 + headerLength) % 64, size_t(0));
    QCOMPARE(bytes.size(), 10 + headerLength + values.size() * sizeof(float));
    const std::string header = bytes.substr(10, headerLength);
    QCOMPARE(header.back(), '\n');
    QVERIFY2(header.find("'descr': '<f4'") != std::string::npos, header.c_str());
    QVERIFY2(header.find("'fortran_order': False") != std::string::npos, header.c_str());
    QVERIFY2(header.find("'shape': (2, 3, 4)") != std::string::npos, header.c_str());
    QVERIFY(header.starts_with("{"));

    // A 1-D shape needs Python's one-element tuple syntax.
    const std::vector<float> five{1.0f, 2.0f, 3.0f, 4.0f, 5.0f};
    const QString vector = dir.filePath("vector.npy");
    flowscope::core::writeNpy(vector.toStdString(), {5}, five.data());
    const std::string vectorBytes = readBytes(vector);
    const size_t vectorHeaderLength = uint8_t(vectorBytes[8]) | (size_t(uint8_t(vectorBytes[9])) << 8);
    QCOMPARE((10 + vectorHeaderLength) % 64, size_t(0));
    const std::string vectorHeader = vectorBytes.substr(10, vectorHeaderLength);
    QVERIFY2(vectorHeader.find("'shape': (5,)") != std::string::npos, vectorHeader.c_str());
    const flowscope::core::NpyArray read = flowscope::core::readNpy(vector.toStdString());
    QCOMPARE(read.shape, (std::vector<int64_t>{5}));
    QCOMPARE(read.data, five);

    // What readNpy refuses: not an .npy file, and data that does not match the shape.
    writeBytes(dir.filePath("junk.npy"), garbageBytes(100));
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, flowscope::core::readNpy(dir.filePath("junk.npy").toStdString()));
    writeBytes(dir.filePath("short.npy"), vectorBytes.substr(0, vectorBytes.size() - 4));
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, flowscope::core::readNpy(dir.filePath("short.npy").toStdString()));
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, flowscope::core::readNpy(dir.filePath("none.npy").toStdString()));
}

// Peak resident memory of this process so far, in kB (VmHWM).
long peakResidentKb() {
    QFile status("/proc/self/status");
    if (!status.open(QIODevice::ReadOnly)) return -1;
    for (const QByteArray& line : status.readAll().split('\n')) {
        if (line.startsWith("VmHWM:")) return line.mid(6).trimmed().split(' ').front().toLong();
    }
    return -1;
}

void TestMedia::decompressionBombIsRefusedWithBoundedMemory() {
    // A PNG whose header declares 65535 x 65535 RGB pixels (12 GB decoded) in 69 bytes.
    const QString bomb = QStringLiteral(FLOWSCOPE_SOURCE_DIR "/tests/fuzz/corpus/fuzz_image/bomb-65535.png");
    const std::string bytes = flowscope::test::readBytes(bomb);
    QCOMPARE(bytes.size(), size_t{69});
    const long before = peakResidentKb();
    QVERIFY(!flowscope::media::decodeImage(bytes, 32).defined());
    QTemporaryDir dir;
    QVERIFY(QFile::copy(bomb, dir.filePath("bomb.png")));
    QVERIFY(QFile::copy(QStringLiteral(FLOWSCOPE_SOURCE_DIR "/tests/fuzz/corpus/fuzz_image/small.png"),
                        dir.filePath("good.png")));
    std::vector<std::string> notes;
    const torch::Tensor images = flowscope::media::loadImageFolder(dir.path().toStdString(), 16, notes);
    QCOMPARE(images.size(0), 1);
    QCOMPARE(notes.size(), size_t{1});
    QVERIFY2(QString::fromStdString(notes[0]).contains("1 file(s)"), notes[0].c_str());
    const long after = peakResidentKb();
    QVERIFY2(after - before < 100 * 1024, qPrintable(QString("peak memory grew by %1 kB").arg(after - before)));
}

// A real PNG of 12000 x 12000 zero pixels (144 megapixels, 430 MB as RGB) in about 150 kB: small
// enough for OpenCV's own default limits, which it reads only when the library loads.
std::string zeroPngBomb(uint32_t side) {
    auto chunk = [](const std::string& type, const std::string& data) {
        std::string out;
        for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<char>((data.size() >> shift) & 0xFF));
        const std::string body = type + data;
        out += body;
        const uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()));
        for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<char>((crc >> shift) & 0xFF));
        return out;
    };
    std::string header;
    for (uint32_t value : {side, side}) {
        for (int shift : {24, 16, 8, 0}) header.push_back(static_cast<char>((value >> shift) & 0xFF));
    }
    header += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit gray, no interlace
    // Each row is a filter byte and `side` zero bytes, deflated row by row.
    z_stream stream{};
    deflateInit(&stream, 1);
    const std::string row(side + 1, '\0');
    std::string compressed;
    std::vector<char> buffer(1 << 16);
    for (uint32_t y = 0; y <= side; ++y) {
        const bool last = y == side;
        stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(row.data()));
        stream.avail_in = last ? 0 : static_cast<uInt>(row.size());
        do {
            stream.next_out = reinterpret_cast<Bytef*>(buffer.data());
            stream.avail_out = static_cast<uInt>(buffer.size());
            deflate(&stream, last ? Z_FINISH : Z_NO_FLUSH);
            compressed.append(buffer.data(), buffer.size() - stream.avail_out);
        } while (stream.avail_out == 0);
    }
    deflateEnd(&stream);
    return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", header) + chunk("IDAT", compressed) + chunk("IEND", "");
}

void TestMedia::bombWithinOpenCvsDefaultsIsRefusedFromItsHeader() {
    const std::string bytes = zeroPngBomb(12000);
    QVERIFY(bytes.size() < 1000000);
    QVERIFY(!flowscope::media::imageSizeIsAcceptable(bytes));
    QTemporaryDir dir;
    writeBytes(dir.filePath("a.png"), bytes);
    writeBytes(dir.filePath("b.png"), bytes);
    QVERIFY(QFile::copy(QStringLiteral(FLOWSCOPE_SOURCE_DIR "/tests/fuzz/corpus/fuzz_image/small.png"),
                        dir.filePath("good.png")));
    const long before = peakResidentKb();
    std::vector<std::string> notes;
    const torch::Tensor images = flowscope::media::loadImageFolder(dir.path().toStdString(), 16, notes);
    const long after = peakResidentKb();
    QCOMPARE(images.size(0), 1);
    QVERIFY2(QString::fromStdString(notes.at(0)).contains("2 file(s)"), notes.at(0).c_str());
    QVERIFY2(after - before < 100 * 1024, qPrintable(QString("peak memory grew by %1 kB").arg(after - before)));
    // The same limit in every format's header: a 20000 x 20000 BMP header, an 8 x 8 one.
    std::string bmp(54, '\0');
    bmp[0] = 'B';
    bmp[1] = 'M';
    bmp[14] = 40;
    auto putLittle = [&](size_t at, uint32_t value) {
        for (int i = 0; i < 4; ++i) bmp[at + i] = static_cast<char>((value >> (8 * i)) & 0xFF);
    };
    putLittle(18, 20000);
    putLittle(22, 20000);
    QVERIFY(!flowscope::media::imageSizeIsAcceptable(bmp));
    putLittle(18, 8);
    putLittle(22, 8);
    QVERIFY(flowscope::media::imageSizeIsAcceptable(bmp));
}

void TestMedia::devicesAndPipesAreWrittenInPlace() {
    // Renaming a file over /dev/null or a FIFO would destroy it (and, as root, succeed).
    struct stat before {};
    QCOMPARE(::stat("/dev/null", &before), 0);
    QVERIFY(S_ISCHR(before.st_mode));
    flowscope::core::writeFileAtomically("/dev/null", std::string(1000, 'x'));
    struct stat after {};
    QCOMPARE(::stat("/dev/null", &after), 0);
    QVERIFY(S_ISCHR(after.st_mode));
    QCOMPARE(after.st_rdev, before.st_rdev);

    QTemporaryDir dir;
    const std::string fifo = dir.filePath("pipe").toStdString();
    QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
    std::string received;
    std::thread reader([&] {
        std::ifstream in(fifo, std::ios::binary);
        received.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    });
    flowscope::core::writeNpy(fifo, {3}, std::vector<float>{1, 2, 3}.data());
    reader.join();
    QCOMPARE(received, flowscope::core::encodeNpy({3}, std::vector<float>{1, 2, 3}.data()));
    struct stat pipe {};
    QCOMPARE(::stat(fifo.c_str(), &pipe), 0);
    QVERIFY(S_ISFIFO(pipe.st_mode));
}

QTEST_GUILESS_MAIN(TestMedia)
#include "tst_media.moc"
