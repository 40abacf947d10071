// flowscope-cli as other tooling sees it: the real executable, its exit codes, stdout JSON,
// stderr messages and the files it writes (or refuses to write), in a temporary folder.
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QProcessEnvironment>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <csignal>
#include <sys/stat.h>
#include <sys/types.h>

#include <opencv2/imgcodecs.hpp>

#include "core/io/NpyFile.h"
#include "core/io/SafeTensors.h"
#include "core/io/Sha256.h"
#include "core/media/ImageWriter.h"
#include "tests/TestSupport.h"

using flowscope::test::readBytes;
using flowscope::test::writeBytes;

namespace {

// Generous: a loaded CI machine may be slow to start LibTorch, but no run here should hang. Under
// AddressSanitizer with a build beside it, `evaluate` over 1,000 samples took more than two minutes.
constexpr int kTimeoutMs = 300000;

struct CliRun {
    bool finished = false;
    int exitCode = -1;
    QByteArray out;
    QByteArray err;
};

CliRun runCli(const QStringList& arguments, const QString& workingDirectory,
              const QProcessEnvironment& environment = QProcessEnvironment::systemEnvironment()) {
    QProcess process;
    process.setWorkingDirectory(workingDirectory);
    process.setProcessEnvironment(environment);
    process.start(QStringLiteral(FLOWSCOPE_CLI_PATH), arguments);
    CliRun run;
    if (!process.waitForStarted(kTimeoutMs)) return run;
    process.closeWriteChannel();
    run.finished = process.waitForFinished(kTimeoutMs) && process.exitStatus() == QProcess::NormalExit;
    if (!run.finished) {
        process.kill();
        process.waitForFinished();
    }
    run.exitCode = process.exitCode();
    run.out = process.readAllStandardOutput();
    run.err = process.readAllStandardError();
    return run;
}

// A diagnostic for QVERIFY2 that shows what the CLI said.
QByteArray describe(const CliRun& run) {
    return "exit " + QByteArray::number(run.exitCode) + "\nstdout: " + run.out + "\nstderr: " + run.err;
}

QJsonObject parseObject(const QByteArray& text) {
    QJsonParseError error{};
    const QJsonDocument document = QJsonDocument::fromJson(text, &error);
    if (error.error != QJsonParseError::NoError || !document.isObject()) return {};
    return document.object();
}

QStringList toStrings(const QJsonValue& value) {
    QStringList list;
    for (const QJsonValue& item : value.toArray()) list << item.toString();
    return list;
}

QStringList listFolder(const QString& folder) {
    return QDir(folder).entryList(QDir::AllEntries | QDir::Hidden | QDir::System | QDir::NoDotAndDotDot, QDir::Name);
}

}  // namespace

class TestCli : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void infoJson();
    void helpPerCommand();
    void sampleWritesOutputs();
    void nfeCounts_data();
    void nfeCounts();
    void fashionMnistSample();
    void usageErrors_data();
    void usageErrors();
    void missingDataset();
    void folderModel();
    void unwritableOutputs();
    void replacesExistingOutputs();
    void outputsAreAllWrittenOrNone();
    void notesAndJsonSayWhatTheUserNeeds();
    void interruptStopsAFolderLoad();
    void sweepConverges();
    void guidedSampleAndSweep();
    void imageToImageAndInversion();
    void startRefusals_data();
    void startRefusals();
    void tEnd();
    void safetensorsOutputs();
    void bundleNeedsTrust();
    void latentBundleWritesDecodedImages();
    void trainWritesAResumableBundle();
    void trainingHelpListsEveryOption();
    void couplingTrainingPrintsTinyLossesInFull();
    void trainRefusesACheckpointThatIsNoFile();
    void evaluateScoresMemorizedImagesNearTheFloor();
    void evaluateRefusesWhatItCannotMeasure();
    void checkpointSubStepsMatchTheReference();
    void checkpointRefusals();
    void sd3SubStepsAndAGuidedSample();

private:
    QTemporaryDir m_dir;
    // A fresh folder under m_dir for one test, so tests cannot see each other's files.
    QString freshFolder(const QString& name) {
        QDir(m_dir.path()).mkpath(name);
        return m_dir.filePath(name);
    }
};

void TestCli::initTestCase() {
    QVERIFY(m_dir.isValid());
    QVERIFY2(QFileInfo(QStringLiteral(FLOWSCOPE_CLI_PATH)).isExecutable(), FLOWSCOPE_CLI_PATH);
}

void TestCli::infoJson() {
    const CliRun run = runCli({"info", "--json"}, m_dir.path());
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    const QJsonObject info = parseObject(run.out);
    QVERIFY2(!info.isEmpty(), run.out);
    QVERIFY(info.value("paths").isArray());
    QVERIFY(info.value("solvers").isArray());
    const QStringList paths = toStrings(info.value("paths"));
    for (const char* path : {"linear", "vp", "cosine", "ve"}) QVERIFY2(paths.contains(path), path);
    const QStringList solvers = toStrings(info.value("solvers"));
    for (const char* solver : {"euler", "heun", "midpoint", "rk4", "dpm++2m", "ddim", "dopri5", "ddpm", "euler-a"}) {
        QVERIFY2(solvers.contains(solver), solver);
    }
    QVERIFY(info.value("version").isString());
    QVERIFY(!info.value("version").toString().isEmpty());
}

void TestCli::helpPerCommand() {
    // `COMMAND --help` shows that command's options and the names, not every command.
    CliRun run = runCli({"sample", "--help"}, m_dir.path());
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    QVERIFY(run.out.contains("flowscope-cli sample --model") && run.out.contains("--save-trajectory"));
    QVERIFY(run.out.contains("solvers:") && run.out.contains("dpm++2m"));
    QVERIFY(!run.out.contains("flowscope-cli train"));
    // reflow and distill share their description.
    run = runCli({"distill", "--help"}, m_dir.path());
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    QVERIFY(run.out.contains("flowscope-cli reflow") && run.out.contains("flowscope-cli distill") &&
            run.out.contains("one-step map"));
    QVERIFY(!run.out.contains("flowscope-cli classifier"));
    // No command at all is a usage error: the usage goes to stderr, nothing to stdout.
    run = runCli({}, m_dir.path());
    QVERIFY2(run.finished && run.exitCode == 2 && run.out.isEmpty() && run.err.contains("usage:"), describe(run));
}

void TestCli::sampleWritesOutputs() {
    const QString folder = freshFolder("sample");
    const CliRun run = runCli({"sample", "--model", "gmm:8gaussians", "--steps", "4", "--batch", "3", "--json",
                               "--save-final", "f.npy", "--save-trajectory", "t.npy", "--out", "o.png", "--seed",
                               "4294967293"},
                              folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    // The largest seed for three samples (seeds K to K+2 within 32 bits), written as the whole
    // number it is (not as a double).
    QVERIFY2(run.out.contains("\"seed\":4294967293,"), describe(run));
    const QJsonObject result = parseObject(run.out);
    QVERIFY2(!result.isEmpty(), run.out);
    for (const char* key : {"nfe", "seconds", "path_length_ratio", "straightness"}) {
        QVERIFY2(result.contains(key), key);
        QVERIFY2(result.value(key).isDouble(), key);
    }
    QCOMPARE(result.value("nfe").toInt(), 4);
    QVERIFY(result.value("seconds").toDouble() >= 0.0);
    // A path is never shorter than the chord between its ends.
    QVERIFY(result.value("path_length_ratio").toDouble() >= 1.0 - 1e-6);
    QVERIFY(result.value("straightness").toDouble() >= 0.0);

    const auto final = flowscope::core::readNpy(QDir(folder).filePath("f.npy").toStdString());
    QCOMPARE(final.shape, (std::vector<int64_t>{3, 2}));
    const auto trajectory = flowscope::core::readNpy(QDir(folder).filePath("t.npy").toStdString());
    QCOMPARE(trajectory.shape, (std::vector<int64_t>{5, 3, 2}));
    // The trajectory ends where the final samples are.
    for (size_t i = 0; i < 6; ++i) QCOMPARE(trajectory.data[4 * 6 + i], final.data[i]);
    for (float value : final.data) QVERIFY(std::isfinite(value));

    const QString picture = QDir(folder).filePath("o.png");
    QVERIFY(QFileInfo::exists(picture));
    const std::string bytes = readBytes(picture);
    std::map<std::string, std::string> text;
    for (const auto& [key, value] : flowscope::media::readPngText(bytes)) text[key] = value;
    QVERIFY(text.count("parameters"));
    QVERIFY2(text["parameters"].find("Steps: 4") != std::string::npos, text["parameters"].c_str());
    QVERIFY(text.count("flowscope"));
    const QJsonObject settings = parseObject(QByteArray::fromStdString(text["flowscope"]));
    QCOMPARE(settings.value("steps").toInt(), 4);
    QCOMPARE(settings.value("model").toString(), QStringLiteral("gmm:8gaussians"));
    QVERIFY(!cv::imread(picture.toStdString(), cv::IMREAD_COLOR).empty());
}

void TestCli::nfeCounts_data() {
    QTest::addColumn<QString>("solver");
    QTest::addColumn<int>("nfe");
    // With 4 steps; the last step lands on sigma = 0 and is an Euler step (one evaluation).
    QTest::newRow("euler") << "euler" << 4;
    QTest::newRow("heun") << "heun" << 7;      // 2N - 1
    QTest::newRow("midpoint") << "midpoint" << 7;
    QTest::newRow("rk4") << "rk4" << 13;       // 4N - 3
}

void TestCli::nfeCounts() {
    QFETCH(QString, solver);
    QFETCH(int, nfe);
    const CliRun run =
        runCli({"sample", "--model", "gmm:8gaussians", "--solver", solver, "--steps", "4", "--json"}, m_dir.path());
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    const QJsonObject result = parseObject(run.out);
    QCOMPARE(result.value("nfe").toInt(), nfe);
    QCOMPARE(result.value("steps").toInt(), 4);
}

void TestCli::fashionMnistSample() {
    const CliRun info = runCli({"info", "--json"}, m_dir.path());
    QVERIFY2(info.finished && info.exitCode == 0, describe(info));
    if (!parseObject(info.out).value("fashion_mnist_installed").toBool()) {
        QSKIP("Fashion-MNIST is not installed (package dataset-fashion-mnist)");
    }
    const QString folder = freshFolder("fashion");
    const CliRun run = runCli(
        {"sample", "--model", "fashion-mnist:200", "--steps", "2", "--batch", "2", "--save-final", "f.npy"}, folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    const auto final = flowscope::core::readNpy(QDir(folder).filePath("f.npy").toStdString());
    QCOMPARE(final.shape, (std::vector<int64_t>{2, 1, 28, 28}));
    QCOMPARE(final.data.size(), size_t(2 * 28 * 28));
    for (float value : final.data) {
        QVERIFY(std::isfinite(value));
        QVERIFY2(value >= -1.0001f && value <= 1.0001f, QByteArray::number(value));
    }
}

void TestCli::usageErrors_data() {
    QTest::addColumn<QStringList>("arguments");
    QTest::addColumn<QString>("message");
    const QStringList gmm{"sample", "--model", "gmm:8gaussians"};
    QTest::newRow("unknown model") << QStringList{"sample", "--model", "nope"} << "gmm:8gaussians";
    QTest::newRow("unknown path") << (gmm + QStringList{"--path", "nope"}) << "linear";
    QTest::newRow("unknown solver") << (gmm + QStringList{"--solver", "nope"}) << "dpm++2m";
    QTest::newRow("unknown schedule") << (gmm + QStringList{"--schedule", "nope"}) << "karras";
    QTest::newRow("steps 0") << (gmm + QStringList{"--steps", "0"}) << "--steps";
    QTest::newRow("steps 10001") << (gmm + QStringList{"--steps", "10001"}) << "--steps";
    QTest::newRow("batch 0") << (gmm + QStringList{"--batch", "0"}) << "--batch";
    QTest::newRow("batch 4097") << (gmm + QStringList{"--batch", "4097"}) << "--batch";
    QTest::newRow("unknown option") << (gmm + QStringList{"--stepz", "4"}) << "--stepz";
    QTest::newRow("missing model") << QStringList{"sample", "--steps", "4"} << "--model";
    // LibTorch's CPU generator keeps 32 bits of a seed: 2^32 would silently be seed 0.
    QTest::newRow("seed 2^32") << (gmm + QStringList{"--seed", "4294967296"}) << "4294967295";
    // Sample k uses seed K + k: those must stay within 32 bits too.
    QTest::newRow("seeds of the batch past 2^32") << (gmm + QStringList{"--seed", "4294967295", "--batch", "2"})
                                                  << "use a smaller seed";
    // A forgotten value is not a file named after the next option.
    QTest::newRow("value missing before a flag") << (gmm + QStringList{"--filmstrip", "--json"}) << "--filmstrip needs a value";
    // Two outputs into one file: the second write would replace the first.
    QTest::newRow("two outputs, one file") << (gmm + QStringList{"--filmstrip", "./o.png"}) << "name the same file";
    // The name promises another format than the one written.
    QTest::newRow("jpeg name for a png") << (gmm + QStringList{"--filmstrip", "steps.jpg"}) << "name it .png";
    QTest::newRow("text name for an array") << (gmm + QStringList{"--save-final", "final.txt"}) << ".npy or .safetensors";
    QTest::newRow("more images than the dataset") << QStringList{"sample", "--model", "fashion-mnist:99999999"} << "1 to 60000";
    QTest::newRow("tolerance for a fixed-step solver") << (gmm + QStringList{"--rtol", "-1"}) << "leave them out";
    QTest::newRow("negative tolerance for dopri5") << (gmm + QStringList{"--solver", "dopri5", "--atol", "-1"})
                                                   << "atol > 0";
    QTest::newRow("decoding a network without latents")
        << QStringList{"sample", "--model", "shipped:moons-rectified", "--decode-every", "2"} << "--decode-every";
    QTest::newRow("decoding a model without latents") << (gmm + QStringList{"--decode-every", "2"}) << "--decode-every";
    // Classes and guidance.
    QTest::newRow("class of an unconditional model") << QStringList{"sample", "--model", "points:moons", "--class", "0"}
                                                     << "unconditional";
    QTest::newRow("unknown class") << (gmm + QStringList{"--class", "up"}) << "2 'north'";
    QTest::newRow("class index past the classes") << (gmm + QStringList{"--class", "8"}) << "7 'south-east'";
    QTest::newRow("negative scale") << (gmm + QStringList{"--class", "north", "--cfg", "-1"}) << "at least 0";
    QTest::newRow("scale not a number") << (gmm + QStringList{"--class", "north", "--cfg", "nan"}) << "--cfg";
    QTest::newRow("interval reversed") << (gmm + QStringList{"--class", "north", "--cfg", "3", "--cfg-interval", "0.8,0.2"})
                                       << "LO <= HI";
    QTest::newRow("interval outside [0, 1]")
        << (gmm + QStringList{"--class", "north", "--cfg", "3", "--cfg-interval", "0,1.5"}) << "[0, 1]";
    QTest::newRow("guidance without a class") << (gmm + QStringList{"--cfg", "3"}) << "--class";
    QTest::newRow("unknown guidance") << (gmm + QStringList{"--class", "north", "--guidance", "pag"}) << "cfg-zero";
    QTest::newRow("apg option for cfg") << (gmm + QStringList{"--class", "north", "--cfg", "3", "--apg-eta", "1"})
                                        << "--guidance apg only";
}

void TestCli::usageErrors() {
    QFETCH(QStringList, arguments);
    QFETCH(QString, message);
    const QString folder = freshFolder(QStringLiteral("usage-%1").arg(QTest::currentDataTag()).replace(' ', '-'));
    const CliRun run = runCli(arguments + QStringList{"--out", "o.png"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2, describe(run));
    QVERIFY2(run.err.contains(message.toUtf8()), describe(run));
    QVERIFY2(run.out.isEmpty(), describe(run));
    // A refused run writes nothing.
    QCOMPARE(listFolder(folder), QStringList());
}

void TestCli::missingDataset() {
    const QString empty = freshFolder("no-dataset");
    QProcessEnvironment environment = QProcessEnvironment::systemEnvironment();
    environment.insert("FLOWSCOPE_FASHION_MNIST_DIR", empty);
    const CliRun run = runCli({"sample", "--model", "fashion-mnist", "--steps", "2"}, m_dir.path(), environment);
    QVERIFY2(run.finished && run.exitCode != 0, describe(run));
    // The message names the package that provides the data.
    QVERIFY2(run.err.contains("dataset-fashion-mnist"), describe(run));
}

void TestCli::folderModel() {
    const QString images = freshFolder("images");
    QVERIFY(cv::imwrite(QDir(images).filePath("one.png").toStdString(),
                        cv::Mat(12, 20, CV_8UC3, cv::Scalar(10, 200, 30))));
    QVERIFY(cv::imwrite(QDir(images).filePath("two.png").toStdString(),
                        cv::Mat(16, 16, CV_8UC3, cv::Scalar(250, 20, 90))));
    writeBytes(QDir(images).filePath("three.png"), std::string(256, '\x5a'));
    const QString work = freshFolder("folder-run");
    const CliRun run = runCli({"sample", "--model", "folder:" + images, "--resolution", "16", "--steps", "2",
                               "--batch", "2", "--save-final", "f.npy"},
                              work);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    QVERIFY2(run.out.contains("skipped"), describe(run));
    const auto final = flowscope::core::readNpy(QDir(work).filePath("f.npy").toStdString());
    QCOMPARE(final.shape, (std::vector<int64_t>{2, 3, 16, 16}));

    const QString empty = freshFolder("no-images");
    const CliRun failed = runCli({"sample", "--model", "folder:" + empty, "--steps", "2"}, m_dir.path());
    QVERIFY2(failed.finished && failed.exitCode != 0, describe(failed));
    QVERIFY2(failed.err.contains("no readable image"), describe(failed));
}

void TestCli::unwritableOutputs() {
    const QString folder = freshFolder("unwritable");
    CliRun run = runCli({"sample", "--model", "gmm:8gaussians", "--steps", "2", "--out", "missing/x.png"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2, describe(run));
    QVERIFY2(run.err.contains("missing"), describe(run));
    QCOMPARE(listFolder(folder), QStringList());

    // An output path that names an existing folder: refused, and the folder keeps its content.
    QVERIFY(QDir(folder).mkdir("f.npy"));
    writeBytes(QDir(folder).filePath("f.npy/keep.txt"), "keep");
    run = runCli({"sample", "--model", "gmm:8gaussians", "--steps", "2", "--save-final", "f.npy"}, folder);
    QVERIFY2(run.finished && run.exitCode != 0, describe(run));
    QVERIFY2(!run.err.isEmpty(), describe(run));
    QVERIFY(QFileInfo(QDir(folder).filePath("f.npy")).isDir());
    QCOMPARE(listFolder(QDir(folder).filePath("f.npy")), QStringList{"keep.txt"});
    QCOMPARE(readBytes(QDir(folder).filePath("f.npy/keep.txt")), std::string("keep"));
    QCOMPARE(listFolder(folder), QStringList{"f.npy"});
}

void TestCli::replacesExistingOutputs() {
    const QString folder = freshFolder("replace");
    // Longer than the new files, so leftover bytes from the old content would show.
    writeBytes(QDir(folder).filePath("f.npy"), std::string(100000, 'x'));
    writeBytes(QDir(folder).filePath("o.png"), std::string(100000, 'y'));
    const CliRun run = runCli(
        {"sample", "--model", "gmm:8gaussians", "--steps", "3", "--save-final", "f.npy", "--out", "o.png"}, folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    const auto final = flowscope::core::readNpy(QDir(folder).filePath("f.npy").toStdString());
    QCOMPARE(final.shape, (std::vector<int64_t>{1, 2}));
    const std::string png = readBytes(QDir(folder).filePath("o.png"));
    QVERIFY(png.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
    QVERIFY(png.find(std::string(16, 'y')) == std::string::npos);
    QVERIFY(!cv::imread(QDir(folder).filePath("o.png").toStdString(), cv::IMREAD_COLOR).empty());
    // No temporary ".name.XXXXXX" files are left behind.
    QCOMPARE(listFolder(folder), (QStringList{"f.npy", "o.png"}));
}

void TestCli::outputsAreAllWrittenOrNone() {
    const QString folder = freshFolder("all-or-none");
    // A folder that takes no new files is refused before the run, not after it.
    CliRun run = runCli({"sample", "--model", "gmm:8gaussians", "--steps", "2", "--out", "/proc/version"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("/proc"), describe(run));
    run = runCli({"sweep", "--model", "gmm:8gaussians", "--steps", "1", "--csv", "/proc/x.csv"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("/proc"), describe(run));

    // A link to another output (which does not exist yet) is the same file.
    QVERIFY(QFile::link("a.png", QDir(folder).filePath("alias.png")));
    run = runCli({"sample", "--model", "gmm:8gaussians", "--steps", "2", "--out", "a.png", "--filmstrip", "alias.png"},
                 folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("same file"), describe(run));
    QVERIFY(!QFileInfo::exists(QDir(folder).filePath("a.png")));

    // A device that fails its write: no other output is left behind.
    if (QFileInfo::exists("/dev/full")) {
        run = runCli({"sample", "--model", "gmm:8gaussians", "--steps", "2", "--out", "g.png", "--save-final", "f.npy",
                      "--filmstrip", "/dev/full"},
                     folder);
        QVERIFY2(run.finished && run.exitCode == 1 && run.err.contains("/dev/full"), describe(run));
        QCOMPARE(listFolder(folder), QStringList{"alias.png"});
    }
}

void TestCli::notesAndJsonSayWhatTheUserNeeds() {
    const QString folder = freshFolder("notes");
    // Per-sample numbers only when asked for: a batch of 256 printed 512 of them.
    CliRun run = runCli({"sample", "--model", "gmm:8gaussians", "--steps", "2", "--batch", "3", "--json"}, folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    QVERIFY(!parseObject(run.out).contains("path_length_ratios"));
    run = runCli({"sample", "--model", "gmm:8gaussians", "--steps", "2", "--batch", "3", "--json", "--per-sample"},
                 folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    QCOMPARE(parseObject(run.out).value("path_length_ratios").toArray().size(), 3);
    QCOMPARE(parseObject(run.out).value("straightnesses").toArray().size(), 3);

    // The filmstrip says which samples it shows.
    run = runCli({"sample", "--model", "fashion-mnist:100", "--steps", "2", "--batch", "10", "--filmstrip", "f.png",
                  "--json"},
                 folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    QVERIFY2(toStrings(parseObject(run.out).value("notes")).join('|').contains("first 8 of the 10 samples"),
             describe(run));

    // An epsilon network on its own path is not "clamped" (that note is for re-timing onto another).
    auto notesOn = [&](const QString& path) {
        const CliRun ddpm = runCli({"sample", "--model", "shipped:fashion-ddpm", "--path", path, "--steps", "1", "--json"},
                                   folder);
        return toStrings(parseObject(ddpm.out).value("notes")).join('|');
    };
    QVERIFY(!notesOn("vp").contains("clamped"));
    QVERIFY(notesOn("linear").contains("clamped"));

    // libpng's warnings about chunks FlowScope ignores do not reach stderr raw: a text chunk with a
    // bad CRC inserted after the header of a valid PNG.
    std::string png = readBytes(QStringLiteral(FLOWSCOPE_SOURCE_DIR "/tests/fuzz/corpus/fuzz_image/small.png"));
    png.insert(33, std::string("\0\0\0\x0dtEXtComment\0hello\0\0\0\0", 25));
    QVERIFY(QDir(folder).mkdir("warned"));
    writeBytes(QDir(folder).filePath("warned/a.png"), png);
    run = runCli({"sample", "--model", "folder:warned", "--steps", "1"}, folder);
    QVERIFY2(run.finished && run.exitCode == 0 && !run.err.contains("libpng"), describe(run));

    // `info` shows the schedules as they are typed, with their parameters.
    run = runCli({"info"}, folder);
    QVERIFY2(run.out.contains("shift:S flux[:L]"), describe(run));
}

void TestCli::interruptStopsAFolderLoad() {
    // Many large images take seconds to decode; Ctrl+C during the load must stop it promptly
    // (it used to be noticed only at the first step, after the whole folder was read).
    const QString folder = freshFolder("interrupt");
    const QString images = QDir(folder).filePath("images");
    QVERIFY(QDir().mkpath(images));
    cv::Mat noise(640, 640, CV_8UC3);
    cv::randu(noise, 0, 256);
    std::vector<uchar> jpeg;
    QVERIFY(cv::imencode(".jpg", noise, jpeg));
    const std::string bytes(jpeg.begin(), jpeg.end());
    for (int i = 0; i < 600; ++i) writeBytes(QDir(images).filePath(QString("%1.jpg").arg(i, 4, 10, QChar('0'))), bytes);

    QProcess process;
    process.setWorkingDirectory(folder);
    process.start(QStringLiteral(FLOWSCOPE_CLI_PATH),
                  {"sample", "--model", "folder:images", "--steps", "2", "--out", "o.png"});
    QVERIFY(process.waitForStarted(kTimeoutMs));
    // Interrupt once the CLI catches SIGINT (before that, as for any program, Ctrl+C kills it; a
    // sanitizer build takes seconds to get there), then let it get well into the folder.
    const auto catchesInterrupt = [&] {
        QFile status(QString("/proc/%1/status").arg(process.processId()));
        if (!status.open(QIODevice::ReadOnly)) return false;
        for (const QByteArray& line : status.readAll().split('\n')) {
            if (line.startsWith("SigCgt:")) return ((line.mid(7).trimmed().toULongLong(nullptr, 16) >> (SIGINT - 1)) & 1) != 0;
        }
        return false;
    };
    QTRY_VERIFY_WITH_TIMEOUT(catchesInterrupt(), kTimeoutMs);
    QTest::qWait(500);
    QVERIFY2(process.state() == QProcess::Running, "the folder loaded before the interrupt; use more images");
    QElapsedTimer sinceInterrupt;
    sinceInterrupt.start();
    ::kill(static_cast<pid_t>(process.processId()), SIGINT);
    QVERIFY(process.waitForFinished(kTimeoutMs));
    const qint64 ms = sinceInterrupt.elapsed();
    QCOMPARE(process.exitCode(), 130);
    // Reading the whole folder takes several times this on any machine that runs the suite.
    QVERIFY2(ms < 2500, qPrintable(QString("the load went on for %1 ms after Ctrl+C").arg(ms)));
    QVERIFY(!QFileInfo::exists(QDir(folder).filePath("o.png")));
}

void TestCli::guidedSampleAndSweep() {
    const QString folder = freshFolder("guided");
    const CliRun run = runCli({"sample", "--model", "gmm:8gaussians", "--class", "north", "--cfg", "4", "--batch", "64",
                               "--steps", "8", "--out", "north.png", "--json"},
                              folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    const QJsonObject json = parseObject(run.out);
    QCOMPARE(json["condition"].toString(), QString("north"));
    QCOMPARE(json["guidance"].toObject()["method"].toString(), QString("cfg"));
    QCOMPARE(json["guidance"].toObject()["scale"].toDouble(), 4.0);
    // One batched call per evaluation.
    QCOMPARE(json["forward_passes"].toInt(), json["nfe"].toInt());
    QFile png(QDir(folder).filePath("north.png"));
    QVERIFY(png.open(QIODevice::ReadOnly));
    const QByteArray bytes = png.readAll();
    std::map<std::string, std::string> text;
    for (const auto& [key, value] : flowscope::media::readPngText(std::string(bytes.constData(), size_t(bytes.size())))) {
        text[key] = value;
    }
    QVERIFY2(text["parameters"].find("CFG scale: 4") != std::string::npos, text["parameters"].c_str());
    QVERIFY2(text["parameters"].find("Class: north") != std::string::npos, text["parameters"].c_str());
    QVERIFY2(text["flowscope"].find("\"condition\":\"north\"") != std::string::npos, text["flowscope"].c_str());

    // --cfgs: the cells once per scale, the cfg column last.
    const CliRun sweep = runCli({"sweep", "--model", "gmm:rings", "--class", "outer", "--cfgs", "1,3", "--steps", "2,4",
                                 "--csv", "g.csv"},
                                folder);
    QVERIFY2(sweep.finished && sweep.exitCode == 0, describe(sweep));
    QFile csv(QDir(folder).filePath("g.csv"));
    QVERIFY(csv.open(QIODevice::ReadOnly | QIODevice::Text));
    const QStringList lines = QString::fromUtf8(csv.readAll()).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(lines.first(), QStringLiteral("path,solver,schedule,steps,nfe,rmse,cfg"));
    QCOMPARE(lines.size(), 5);
    QVERIFY2(lines[1].endsWith(",1") && lines[4].endsWith(",3"), qPrintable(lines.join(" | ")));
    // Without --cfgs the table keeps its six columns.
    const CliRun plain = runCli({"sweep", "--model", "gmm:rings", "--class", "outer", "--steps", "2", "--csv", "p.csv"}, folder);
    QVERIFY2(plain.finished && plain.exitCode == 0, describe(plain));
    QFile plainCsv(QDir(folder).filePath("p.csv"));
    QVERIFY(plainCsv.open(QIODevice::ReadOnly | QIODevice::Text));
    QVERIFY(plainCsv.readLine().trimmed() == "path,solver,schedule,steps,nfe,rmse");
    const CliRun noClass = runCli({"sweep", "--model", "gmm:rings", "--cfgs", "1,3", "--csv", "n.csv"}, folder);
    QVERIFY2(noClass.finished && noClass.exitCode == 2 && noClass.err.contains("--class"), describe(noClass));

    // A bundle conditioned by tensors: --cond and --uncond for the run, guided without a class.
    // One Euler step from pure noise lands on m_u + w (m_c - m_u) for its Gaussians.
    const torch::Tensor conditional = torch::linspace(-0.5, 0.5, 36).reshape({1, 6, 6});
    const torch::Tensor unconditional = torch::full({1, 6, 6}, 0.25);
    flowscope::core::writeSafeTensors(QDir(folder).filePath("c.safetensors").toStdString(),
                                      {{"mean", conditional}, {"std", torch::full({1}, 0.4)}});
    flowscope::core::writeSafeTensors(QDir(folder).filePath("u.safetensors").toStdString(),
                                      {{"mean", unconditional}, {"std", torch::full({1}, 0.4)}});
    const QString bundle = "bundle:" FLOWSCOPE_SOURCE_DIR "/resources/fixtures/bundles/gauss-conditioned";
    const CliRun tensors = runCli({"sample", "--model", bundle, "--trust-model", "--cond", "c.safetensors", "--uncond",
                                   "u.safetensors", "--cfg", "3", "--steps", "1", "--batch", "2", "--save-final",
                                   "f.npy", "--out", "b.png", "--json"},
                                  folder);
    QVERIFY2(tensors.finished && tensors.exitCode == 0, describe(tensors));
    QCOMPARE(parseObject(tensors.out)["forward_passes"].toInt(), 1);
    const auto final = flowscope::core::readNpy(QDir(folder).filePath("f.npy").toStdString());
    const torch::Tensor expected = unconditional + 3.0 * (conditional - unconditional);
    for (size_t i = 0; i < final.data.size(); ++i) QVERIFY(std::abs(final.data[i] - expected.view(-1)[i % 36].item<float>()) < 1e-5);
    QFile bundlePng(QDir(folder).filePath("b.png"));
    QVERIFY(bundlePng.open(QIODevice::ReadOnly));
    const QByteArray pngBytes = bundlePng.readAll();
    const auto chunks = flowscope::media::readPngText(std::string(pngBytes.constData(), size_t(pngBytes.size())));
    QVERIFY(std::any_of(chunks.begin(), chunks.end(), [](const auto& chunk) {
        return chunk.first == "flowscope" && chunk.second.find("\"uncond\":\"u.safetensors\"") != std::string::npos;
    }));
    QVERIFY(std::any_of(chunks.begin(), chunks.end(), [](const auto& chunk) {
        return chunk.first == "parameters" && chunk.second.find("CFG scale: 3") != std::string::npos;
    }));
    const CliRun notABundle = runCli({"sample", "--model", "gmm:8gaussians", "--cond", "c.safetensors"}, folder);
    QVERIFY2(notABundle.finished && notABundle.exitCode == 2 && notABundle.err.contains("takes none"), describe(notABundle));
}

// Image to image from a picture file, inversion with its files and figures, a run from the
// recovered noise, and a round-trip sweep whose error falls with the steps.
void TestCli::imageToImageAndInversion() {
    const QString folder = freshFolder("starts");
    cv::Mat picture(28, 28, CV_8UC1);
    for (int y = 0; y < 28; ++y) {
        for (int x = 0; x < 28; ++x) picture.at<uint8_t>(y, x) = static_cast<uint8_t>((x * 9 + y * 3) % 256);
    }
    QVERIFY(cv::imwrite(QDir(folder).filePath("in.png").toStdString(), picture));
    const CliRun kept = runCli({"sample", "--model", "fashion-mnist:300", "--init-image", "in.png", "--strength", "0",
                                "--save-final", "kept.npy", "--json"},
                               folder);
    QVERIFY2(kept.finished && kept.exitCode == 0, describe(kept));
    QCOMPARE(parseObject(kept.out)["nfe"].toInt(), 0);
    const auto keptArray = flowscope::core::readNpy(QDir(folder).filePath("kept.npy").toStdString());
    QCOMPARE(keptArray.shape, (std::vector<int64_t>{1, 1, 28, 28}));
    for (int i = 0; i < 28 * 28; ++i) {
        QCOMPARE(keptArray.data[size_t(i)], float(picture.at<uint8_t>(i / 28, i % 28)) / 127.5f - 1.0f);
    }
    const CliRun half = runCli({"sample", "--model", "fashion-mnist:300", "--init-image", "in.png", "--strength", "0.5",
                                "--steps", "8", "--out", "half.png", "--json"},
                               folder);
    QVERIFY2(half.finished && half.exitCode == 0, describe(half));
    const QJsonObject halfJson = parseObject(half.out);
    QCOMPARE(halfJson["steps_run"].toInt(), 4);
    QCOMPARE(halfJson["t_start"].toDouble(), 0.5);
    QCOMPARE(halfJson["start"].toObject()["kind"].toString(), QString("image"));
    const auto halfText = flowscope::media::readPngText(readBytes(QDir(folder).filePath("half.png")));
    QVERIFY(std::any_of(halfText.begin(), halfText.end(), [](const auto& chunk) {
        return chunk.first == "parameters" && chunk.second.find("Denoising strength: 0.5") != std::string::npos;
    }));

    const CliRun made = runCli({"sample", "--model", "gmm:8gaussians", "--batch", "4", "--seed", "2", "--solver", "rk4",
                                "--steps", "32", "--save-final", "points.npy"},
                               folder);
    QVERIFY2(made.finished && made.exitCode == 0, describe(made));
    const CliRun inverted = runCli({"invert", "--model", "gmm:8gaussians", "--init", "points.npy", "--solver", "heun",
                                    "--steps", "16", "--save-noise", "noise.npy", "--roundtrip", "back.png", "--json"},
                                   folder);
    QVERIFY2(inverted.finished && inverted.exitCode == 0, describe(inverted));
    const QJsonObject figures = parseObject(inverted.out);
    for (const char* key : {"nfe", "roundtrip_rmse", "noise_mean", "noise_std", "noise_ks_p"}) {
        QVERIFY2(figures.contains(key), key);
    }
    QCOMPARE(figures["nfe"].toInt(), 31);
    QVERIFY(figures["roundtrip_rmse"].toDouble() > 0.0 && figures["roundtrip_rmse"].toDouble() < 0.05);
    QVERIFY(QFileInfo(QDir(folder).filePath("back.png")).size() > 0);
    const auto noise = flowscope::core::readNpy(QDir(folder).filePath("noise.npy").toStdString());
    QCOMPARE(noise.shape, (std::vector<int64_t>{4, 2}));
    const CliRun again = runCli({"sample", "--model", "gmm:8gaussians", "--batch", "4", "--solver", "heun", "--steps", "16",
                                 "--init-noise", "noise.npy", "--save-final", "again.npy"},
                                folder);
    QVERIFY2(again.finished && again.exitCode == 0, describe(again));
    const auto points = flowscope::core::readNpy(QDir(folder).filePath("points.npy").toStdString());
    const auto back = flowscope::core::readNpy(QDir(folder).filePath("again.npy").toStdString());
    double worst = 0.0;
    for (size_t i = 0; i < points.data.size(); ++i) worst = std::max(worst, double(std::abs(points.data[i] - back.data[i])));
    QVERIFY2(worst < 0.1, qPrintable(QString::number(worst)));

    const CliRun sweep = runCli({"sweep", "--model", "gmm:8gaussians", "--roundtrip", "--init", "points.npy", "--solvers",
                                 "euler,heun", "--steps", "4,16", "--csv", "round.csv"},
                                folder);
    QVERIFY2(sweep.finished && sweep.exitCode == 0, describe(sweep));
    QFile csv(QDir(folder).filePath("round.csv"));
    QVERIFY(csv.open(QIODevice::ReadOnly | QIODevice::Text));
    const QStringList lines = QString::fromUtf8(csv.readAll()).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(lines.first(), QStringLiteral("path,solver,schedule,steps,nfe,rmse"));
    QCOMPARE(lines.size(), 5);
    for (const int row : {1, 3}) QVERIFY2(lines[row].split(',')[5].toDouble() > lines[row + 1].split(',')[5].toDouble(), qPrintable(lines.join(" | ")));
}

void TestCli::startRefusals_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("reason");
    QTest::newRow("t-start past the end") << QStringList{"sample", "--model", "gmm:8gaussians", "--t-start", "1.2"} << "--t-start";
    QTest::newRow("t-start below 0") << QStringList{"sample", "--model", "gmm:8gaussians", "--t-start", "-0.1"} << "--t-start";
    QTest::newRow("t-start at t-end") << QStringList{"sample", "--model", "gmm:8gaussians", "--t-end", "0.5", "--t-start", "0.5"} << "--t-start";
    QTest::newRow("strength without image") << QStringList{"sample", "--model", "gmm:8gaussians", "--strength", "0.5"} << "--init-image";
    QTest::newRow("image of another size") << QStringList{"sample", "--model", "fashion-mnist:300", "--init-image", "big.png"} << "32x32";
    QTest::newRow("noise of another shape") << QStringList{"sample", "--model", "fashion-mnist:300", "--init-noise", "wrong.npy"} << "[1, 28, 28]";
    QTest::newRow("stochastic inversion") << QStringList{"invert", "--model", "gmm:8gaussians", "--init", "wrong.npy", "--solver", "ddpm"} << "deterministic";
    QTest::newRow("inversion without data") << QStringList{"invert", "--model", "gmm:8gaussians"} << "--image";
    QTest::newRow("round trip without data") << QStringList{"sweep", "--model", "gmm:8gaussians", "--roundtrip", "--csv", "r.csv"} << "--image";
}

// Bad starts exit 2 and say why, before any file is written.
void TestCli::startRefusals() {
    QFETCH(QStringList, args);
    QFETCH(QString, reason);
    const QString folder = freshFolder("refusals");
    QVERIFY(cv::imwrite(QDir(folder).filePath("big.png").toStdString(), cv::Mat(32, 32, CV_8UC1, cv::Scalar(7))));
    const std::vector<float> values(6, 0.5f);
    flowscope::core::writeNpy(QDir(folder).filePath("wrong.npy").toStdString(), {3, 2}, values.data());
    const CliRun run = runCli(args, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains(reason.toUtf8()), describe(run));
}

void TestCli::sweepConverges() {
    const QString folder = freshFolder("sweep");
    // --batch 64: with the default single sample the per-sample error at 1-4 steps on the VP path
    // is not monotone (uniform steps are far from the asymptotic regime there), so the ordering
    // below is only meaningful for an average over many samples. Seeded, hence deterministic.
    const CliRun run = runCli({"sweep", "--model", "gmm:8gaussians", "--paths", "linear,vp", "--solvers", "euler,heun",
                               "--steps", "1,2,4", "--batch", "64", "--csv", "s.csv"},
                              folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    QFile csv(QDir(folder).filePath("s.csv"));
    QVERIFY(csv.open(QIODevice::ReadOnly | QIODevice::Text));
    const QStringList lines = QString::fromUtf8(csv.readAll()).split('\n', Qt::SkipEmptyParts);
    QVERIFY(!lines.isEmpty());
    QCOMPARE(lines.first(), QStringLiteral("path,solver,schedule,steps,nfe,rmse"));
    QCOMPARE(lines.size(), 13);

    // rmse[path][solver][steps]
    std::map<QString, std::map<QString, std::map<int, double>>> rmse;
    for (int i = 1; i < lines.size(); ++i) {
        const QStringList fields = lines[i].split(',');
        QCOMPARE(fields.size(), 6);
        QCOMPARE(fields[2], QStringLiteral("uniform"));
        bool stepsOk = false, nfeOk = false, rmseOk = false;
        const int steps = fields[3].toInt(&stepsOk);
        const int nfe = fields[4].toInt(&nfeOk);
        const double error = fields[5].toDouble(&rmseOk);
        QVERIFY2(stepsOk && nfeOk && rmseOk, qPrintable(lines[i]));
        QCOMPARE(nfe, fields[1] == "heun" ? 2 * steps - 1 : steps);
        QVERIFY2(std::isfinite(error) && error > 0.0, qPrintable(lines[i]));
        QVERIFY2(!rmse[fields[0]][fields[1]].count(steps), qPrintable(lines[i]));
        rmse[fields[0]][fields[1]][steps] = error;
    }
    for (const QString path : {"linear", "vp"}) {
        for (const QString solver : {"euler", "heun"}) {
            auto& row = rmse[path][solver];
            QCOMPARE(row.size(), size_t(3));
            const QByteArray where = (path + " " + solver).toUtf8();
            QVERIFY2(row[2] < row[1], where);
            QVERIFY2(row[4] < row[2], where);
        }
        QVERIFY2(rmse[path]["heun"][4] < rmse[path]["euler"][4], qPrintable(path));
    }

    // The reference's tolerance: a looser one still ranks the cells, one of 0 is refused in
    // words before anything runs, and no table is written.
    const CliRun loose = runCli({"sweep", "--model", "gmm:8gaussians", "--paths", "linear", "--solvers", "euler",
                                 "--steps", "1,4", "--batch", "64", "--reference-tol", "1e-5", "--csv", "loose.csv"},
                                folder);
    QVERIFY2(loose.finished && loose.exitCode == 0, describe(loose));
    QFile looseCsv(QDir(folder).filePath("loose.csv"));
    QVERIFY(looseCsv.open(QIODevice::ReadOnly | QIODevice::Text));
    const QStringList looseLines = QString::fromUtf8(looseCsv.readAll()).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(looseLines.size(), 3);
    QVERIFY2(looseLines[2].split(',')[5].toDouble() < looseLines[1].split(',')[5].toDouble(), qPrintable(looseLines.join(' ')));
    const CliRun refused = runCli({"sweep", "--model", "gmm:8gaussians", "--reference-tol", "0", "--csv", "zero.csv"}, folder);
    QVERIFY2(refused.finished && refused.exitCode == 2 && refused.err.contains("--reference-tol") &&
                 refused.err.contains("above 0"),
             describe(refused));
    QVERIFY(!QFile::exists(QDir(folder).filePath("zero.csv")));
}

void TestCli::tEnd() {
    const QString folder = freshFolder("t-end");
    const CliRun run = runCli({"sample", "--model", "gmm:8gaussians", "--steps", "4", "--t-end", "0.5",
                               "--save-trajectory", "t.npy", "--json"},
                              folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    const QJsonObject result = parseObject(run.out);
    QVERIFY2(!result.isEmpty(), run.out);
    QCOMPARE(result.value("t_end").toDouble(), 0.5);
    QCOMPARE(result.value("t_start").toDouble(), 0.0);
    const auto trajectory = flowscope::core::readNpy(QDir(folder).filePath("t.npy").toStdString());
    QCOMPARE(trajectory.shape, (std::vector<int64_t>{5, 1, 2}));
}

void TestCli::safetensorsOutputs() {
    const QString folder = freshFolder("safetensors");
    const CliRun run = runCli({"sample", "--model", "gmm:8gaussians", "--steps", "4", "--batch", "3", "--seed", "5",
                               "--save-trajectory", "t.safetensors", "--save-final", "f.safetensors"},
                              folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    const auto trajectory = flowscope::core::SafeTensorsFile::read(QDir(folder).filePath("t.safetensors").toStdString());
    const torch::Tensor states = trajectory.tensor("trajectory");
    QCOMPARE(states.sizes().vec(), (std::vector<int64_t>{5, 3, 2}));
    QVERIFY(QString::fromStdString(trajectory.metadata().at("flowscope")).contains("\"model\":\"gmm:8gaussians\""));
    const QJsonDocument times = QJsonDocument::fromJson(QByteArray::fromStdString(trajectory.metadata().at("times")));
    QCOMPARE(times.array().size(), 5);
    QCOMPARE(times.array().last().toDouble(), 1.0);
    const auto final = flowscope::core::SafeTensorsFile::read(QDir(folder).filePath("f.safetensors").toStdString());
    QVERIFY(torch::equal(final.tensor("final"), states[4]));
}

void TestCli::bundleNeedsTrust() {
    const QString folder = freshFolder("trust");
    QProcessEnvironment environment = QProcessEnvironment::systemEnvironment();
    const QString list = QDir(folder).filePath("config/trusted-models");
    environment.insert("FLOWSCOPE_TRUST_LIST", list);
    const QString bundle = QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/fixtures/bundles/gauss-velocity-linear");
    const QStringList sample{"sample", "--model", "bundle:" + bundle, "--steps", "4", "--out", "grid.png"};

    CliRun run = runCli(sample, folder, environment);
    QVERIFY2(run.finished && run.exitCode == 2, describe(run));
    QVERIFY2(run.err.contains("TorchScript program") && run.err.contains("--trust-model"), describe(run));
    QVERIFY(!QFile::exists(QDir(folder).filePath("grid.png")));

    run = runCli(sample + QStringList{"--trust-model"}, folder, environment);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    QVERIFY(QFile::exists(QDir(folder).filePath("grid.png")));
    QVERIFY(!QFile::exists(list));  // --trust-model trusts this run only

    run = runCli({"trust", bundle}, folder, environment);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    const std::string hash = flowscope::core::sha256OfFile((bundle + "/model.pt").toStdString());
    QVERIFY2(run.out.contains(QByteArray::fromStdString(hash)), describe(run));
    QVERIFY(QString::fromStdString(readBytes(list)).startsWith(QString::fromStdString(hash) + "  "));
    run = runCli(sample, folder, environment);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));

    run = runCli({"trust", QDir(folder).filePath("nowhere")}, folder, environment);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("is not a folder"), describe(run));
}

void TestCli::latentBundleWritesDecodedImages() {
    const QString folder = freshFolder("latent");
    const QString bundle = QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/fixtures/bundles/latent");
    CliRun run = runCli({"sample", "--model", "bundle:" + bundle, "--trust-model", "--steps", "4", "--batch", "2",
                         "--save-final", "latent.npy", "--save-decoded", "images.npy", "--out", "grid.png",
                         "--filmstrip", "strip.png", "--json"},
                        folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    const QJsonObject json = parseObject(run.out);
    QCOMPARE(json["sample_shape"].toArray(), QJsonArray({4, 3, 3}));
    QCOMPARE(json["image_shape"].toArray(), QJsonArray({2, 3, 6, 6}));
    QCOMPARE(flowscope::core::readNpy(QDir(folder).filePath("latent.npy").toStdString()).shape,
             (std::vector<int64_t>{2, 4, 3, 3}));
    QCOMPARE(flowscope::core::readNpy(QDir(folder).filePath("images.npy").toStdString()).shape,
             (std::vector<int64_t>{2, 3, 6, 6}));
    const cv::Mat grid = cv::imread(QDir(folder).filePath("grid.png").toStdString(), cv::IMREAD_UNCHANGED);
    QVERIFY(!grid.empty());
    QCOMPARE(grid.channels(), 3);  // the decoded RGB images, not the 4-channel latent

    run = runCli({"sample", "--model", "gmm:8gaussians", "--save-decoded", "x.npy"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("--save-decoded needs a latent model"), describe(run));
}

void TestCli::trainWritesAResumableBundle() {
    const QString folder = freshFolder("train");
    const QStringList train{"train", "--dataset", "points:moons", "--objective", "rectified", "--out", "flow",
                            "--width", "32", "--depth", "1", "--batch", "64", "--checkpoint-every", "25", "--json"};
    CliRun run = runCli(train + QStringList{"--iters", "50"}, folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    QJsonObject json = parseObject(run.out);
    QCOMPARE(json["iterations"].toInt(), 50);
    QCOMPARE(json["resumed_from"].toInt(), 0);
    for (const char* file : {"flow/flowscope.json", "flow/weights.safetensors", "flow/checkpoint.safetensors",
                             "flow/loss.csv"}) {
        QVERIFY2(QFile::exists(QDir(folder).filePath(file)), file);
    }
    // The same command with a larger --iters continues from the checkpoint.
    run = runCli(train + QStringList{"--iters", "80"}, folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    json = parseObject(run.out);
    QCOMPARE(json["iterations"].toInt(), 80);
    QCOMPARE(json["resumed_from"].toInt(), 50);
    const QStringList lines = QString::fromStdString(readBytes(QDir(folder).filePath("flow/loss.csv"))).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(lines.size(), 1 + 80);
    // The bundle samples like any model, without --trust-model: it holds no code.
    run = runCli({"sample", "--model", "bundle:flow", "--steps", "4", "--batch", "8", "--json"}, folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    // Other settings on the same folder are refused rather than mixed in.
    run = runCli({"train", "--dataset", "points:moons", "--objective", "rectified", "--out", "flow", "--lr", "0.1",
                  "--iters", "90", "--width", "32", "--depth", "1", "--batch", "64"},
                 folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("other settings"), describe(run));
    run = runCli({"train", "--dataset", "points:moons", "--objective", "score", "--out", "x"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("rectified, diffusion, v"), describe(run));
    run = runCli({"train", "--dataset", "points:moons", "--out", "/proc/flowscope"}, folder);
    // Refused before the job starts, where every output's folder is checked for new files.
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("--out: cannot write '/proc/flowscope'"),
             describe(run));
    run = runCli({"train", "--dataset", "points:moons", "--out", "no-such-folder/flow"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("--out") && run.err.contains("does not exist"),
             describe(run));
    // A refused request leaves no empty output folder behind.
    run = runCli({"train", "--dataset", "folder:" + QDir(folder).filePath("no-such-images"), "--out", "refused"}, folder);
    QVERIFY2(run.finished && run.exitCode != 0, describe(run));
    QVERIFY2(!QFileInfo::exists(QDir(folder).filePath("refused")), describe(run));
    // A bundle made elsewhere (no checkpoint of a training there) is never replaced.
    const QString theirs = QDir(folder).filePath("theirs");
    QVERIFY(QDir().mkpath(theirs));
    const QString fixture = QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/fixtures/bundles/gauss-velocity-linear");
    for (const QString& file : {QStringLiteral("flowscope.json"), QStringLiteral("model.pt")}) {
        QVERIFY(QFile::copy(fixture + "/" + file, theirs + "/" + file));
    }
    const std::string manifest = readBytes(theirs + "/flowscope.json");
    run = runCli({"train", "--dataset", "points:moons", "--iters", "5", "--out", "theirs"}, folder);
    QVERIFY2(run.finished && run.exitCode != 0 && run.err.contains("no checkpoint.safetensors to resume from"),
             describe(run));
    QCOMPARE(readBytes(theirs + "/flowscope.json"), manifest);
    QCOMPARE(QDir(theirs).entryList(QDir::Files).size(), 2);
}

void TestCli::trainingHelpListsEveryOption() {
    CliRun run = runCli({"train", "--help"}, m_dir.path());
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    for (const char* option : {"--dataset", "--objective", "--iters", "--out", "--batch", "--lr", "--weight-decay",
                               "--ema", "--seed", "--width", "--depth", "--time-sampling", "--resolution",
                               "--checkpoint-every", "--name", "--json"}) {
        QVERIFY2(run.out.contains(QByteArray(option) + " ") || run.out.contains(QByteArray(option) + "]"), option);
    }
    run = runCli({"reflow", "--help"}, m_dir.path());
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    for (const char* option : {"--model", "--pairs", "--steps", "--iters", "--out", "--batch", "--lr", "--weight-decay",
                               "--ema", "--seed", "--time-sampling", "--checkpoint-every", "--name", "--json"}) {
        QVERIFY2(run.out.contains(option), option);
    }
}

void TestCli::couplingTrainingPrintsTinyLossesInFull() {
    // A flow trained for one iteration barely moves the noise, so its couplings are easy to fit:
    // the losses fall to about 1e-5, which must not print as a perfect 0.0000.
    const QString folder = freshFolder("tiny-loss");
    CliRun run = runCli({"train", "--dataset", "points:moons", "--iters", "1", "--width", "32", "--depth", "1", "--out",
                         "source"},
                        folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    for (const QString mode : {"reflow", "distill"}) {
        run = runCli({mode, "--model", "source", "--pairs", "256", "--steps", "4", "--iters", "300", "--lr", "3e-3",
                      "--out", mode},
                     folder);
        QVERIFY2(run.finished && run.exitCode == 0, describe(run));
        const QRegularExpressionMatch printed = QRegularExpression("loss (\\S+)\n").match(QString::fromUtf8(run.out));
        QVERIFY2(printed.hasMatch(), describe(run));
        const double loss = printed.captured(1).toDouble();
        // The printed loss is an average of the logged ones, so it lies between their extremes.
        double least = INFINITY, most = 0.0;
        const QStringList lines = QString::fromStdString(readBytes(QDir(folder).filePath(mode + "/loss.csv"))).split('\n', Qt::SkipEmptyParts);
        for (const QString& line : lines.mid(1)) {
            const double logged = line.section(',', 1).toDouble();
            least = std::min(least, logged);
            most = std::max(most, logged);
        }
        QVERIFY2(loss >= least * (1 - 1e-3) && loss <= most * (1 + 1e-3),
                 qPrintable(QString("printed %1, logged %2 to %3").arg(loss).arg(least).arg(most)));
    }
}

void TestCli::trainRefusesACheckpointThatIsNoFile() {
    // A FIFO in place of the checkpoint would block the open for good (and SIGTERM with it).
    const QString folder = freshFolder("checkpoint-not-file");
    const QStringList train{"train", "--dataset", "points:moons", "--width", "16", "--depth", "1", "--out", "flow"};
    CliRun run = runCli(train + QStringList{"--iters", "5"}, folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    const QString checkpoint = QDir(folder).filePath("flow/checkpoint.safetensors");
    QVERIFY(QFile::remove(checkpoint));
    QCOMPARE(::mkfifo(checkpoint.toLocal8Bit().constData(), 0600), 0);
    QElapsedTimer timer;
    timer.start();
    run = runCli(train + QStringList{"--iters", "10"}, folder);
    QVERIFY2(run.finished && run.exitCode == 1 && run.err.contains("the checkpoint 'flow/checkpoint.safetensors' is") &&
                 run.err.contains("start the training over"),
             describe(run));
    QVERIFY2(timer.elapsed() < 30000, "the refusal took more than 30 s");
    QVERIFY(QFile::remove(checkpoint));
    QVERIFY(QDir().mkdir(checkpoint));
    run = runCli(train + QStringList{"--iters", "10"}, folder);
    QVERIFY2(run.finished && run.exitCode == 1 && run.err.contains("the checkpoint 'flow/checkpoint.safetensors' is a folder"),
             describe(run));
}

void TestCli::evaluateScoresMemorizedImagesNearTheFloor() {
    // The exact empirical model of 2,000 training images: with many steps its samples are those
    // images themselves (near the floor of real images against the test set); one Euler step
    // gives the blurred mean of the data, far from it.
    const QString folder = freshFolder("evaluate");
    const CliRun run = runCli({"evaluate", "--model", "fashion-mnist:2000", "--steps", "1,32", "--samples", "1000",
                               "--batch", "250", "--csv", "quality.csv", "--json"},
                              folder);
    QVERIFY2(run.finished && run.exitCode == 0, describe(run));
    const QJsonObject json = parseObject(run.out);
    const QJsonArray rows = json["rows"].toArray();
    QCOMPARE(rows.size(), 2);
    const double oneStep = rows[0].toObject()["frechet"].toDouble();
    const double manySteps = rows[1].toObject()["frechet"].toDouble();
    const double floor = json["frechet_floor"].toDouble();
    QVERIFY2(oneStep > 10 * manySteps && manySteps < 3 * floor + 1.0, describe(run));
    QCOMPARE(rows[1].toObject()["nfe"].toDouble(), 32.0);
    QVERIFY(json["classifier_test_accuracy"].toDouble() > 0.85);
    const QStringList lines = QString::fromStdString(readBytes(QDir(folder).filePath("quality.csv"))).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(lines.size(), 3);
    QVERIFY(lines[0].startsWith("solver,steps,nfe,frechet,straightness"));
}

void TestCli::evaluateRefusesWhatItCannotMeasure() {
    const QString folder = freshFolder("evaluate-errors");
    CliRun run = runCli({"evaluate", "--model", "points:moons", "--samples", "200", "--steps", "1"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("[1, 28, 28]"), describe(run));
    // Too few samples for a covariance of the 128 features: refused with the minimum.
    run = runCli({"evaluate", "--model", "fashion-mnist:100", "--samples", "2", "--steps", "1"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("129"), describe(run));
    run = runCli({"evaluate", "--model", "fashion-mnist:100", "--classifier", "missing.safetensors"}, folder);
    QVERIFY2(run.finished && run.exitCode == 1 && run.err.contains("flowscope-cli classifier"), describe(run));
    run = runCli({"evaluate", "--steps", "1"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("--model"), describe(run));
    run = runCli({"classifier", "--out", "missing/c.safetensors"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("does not exist"), describe(run));
    // Classes the classifier cannot name, a class of no model, scales without a class.
    run = runCli({"evaluate", "--model", "gmm:8gaussians", "--class", "north", "--samples", "200", "--steps", "1"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("not Fashion-MNIST's"), describe(run));
    run = runCli({"evaluate", "--model", "fashion-mnist:100", "--class", "Hat", "--samples", "200", "--steps", "1"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("Ankle boot"), describe(run));
    run = runCli({"evaluate", "--model", "fashion-mnist:100", "--cfg", "1,3", "--samples", "200", "--steps", "1"}, folder);
    QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains("--class"), describe(run));
    QCOMPARE(listFolder(folder), QStringList());
}

QTEST_GUILESS_MAIN(TestCli)
#include "tst_cli.moc"

namespace {

const std::string kFlux = FLOWSCOPE_SOURCE_DIR "/resources/fixtures/flux/";

// A reference tensor of make_flux.py's, as float32.
const std::string kSd3 = FLOWSCOPE_SOURCE_DIR "/resources/fixtures/sd3/";

torch::Tensor sd3Reference(const std::string& name) {
    static const flowscope::core::SafeTensorsFile file = flowscope::core::SafeTensorsFile::read(kSd3 + "reference.safetensors");
    return file.tensor(name).to(torch::kFloat32).contiguous();
}

torch::Tensor fluxReference(const std::string& name) {
    static const flowscope::core::SafeTensorsFile file = flowscope::core::SafeTensorsFile::read(kFlux + "reference.safetensors");
    return file.tensor(name).to(torch::kFloat32).contiguous();
}

void writeTensorNpy(const QString& path, const torch::Tensor& tensor) {
    const torch::Tensor values = tensor.to(torch::kFloat32).contiguous();
    flowscope::core::writeNpy(path.toStdString(), values.sizes().vec(), values.data_ptr<float>());
}

torch::Tensor readTensorNpy(const QString& path) {
    const auto array = flowscope::core::readNpy(path.toStdString());
    return torch::tensor(array.data).reshape(array.shape);
}

// The largest difference relative to the reference's largest magnitude (float32 against the
// script's float64: see tst_flux for the bound).
double relativeTo(const torch::Tensor& got, const torch::Tensor& expected) {
    return (got - expected).abs().max().item<double>() / expected.abs().max().item<double>();
}

}  // namespace

// Each sub-step of a FLUX.1 checkpoint through the CLI's contract names, against the independent
// implementation in resources/fixtures/make_flux.py.
void TestCli::checkpointSubStepsMatchTheReference() {
    const QString folder = freshFolder("flux");
    const QString model = QString::fromStdString("checkpoint:" + kFlux + "schnell");
    const CliRun info = runCli({"info", "--model", model, "--json"}, folder);
    QVERIFY2(info.finished && info.exitCode == 0, describe(info));
    const QJsonObject infoJson = parseObject(info.out);
    QCOMPARE(infoJson["family"].toString(), QString("FLUX.1 [schnell]"));
    for (const char* part : {"transformer", "autoencoder", "clip_l", "t5"}) {
        QVERIFY2(infoJson["parts"].toObject()[part].toObject()["found"].toBool(), part);
    }
    QCOMPARE(infoJson["transformer"].toObject()["double_blocks"].toInt(), 1);
    QCOMPARE(infoJson["default_steps"].toInt(), 4);
    // The memory the parts need, as the engine would load them on this machine (float32: tiny).
    const QJsonObject memory = infoJson["memory"].toObject();
    QVERIFY(memory["fits"].toBool());
    QCOMPARE(memory["transformer_dtype"].toString(), QString("float32"));
    QCOMPARE(memory["transformer_bytes"].toDouble(), 4.0 * infoJson["parts"].toObject()["transformer"].toObject()["parameters"].toDouble());

    const CliRun tokens = runCli({"tokenize", "--tokenizers", QString::fromStdString(kFlux + "schnell"), "--prompt",
                                  "a photo of a cat", "--json"},
                                 folder);
    QVERIFY2(tokens.finished && tokens.exitCode == 0, describe(tokens));
    QFile expectedTokens(QString::fromStdString(kFlux + "tokens.json"));
    QVERIFY(expectedTokens.open(QIODevice::ReadOnly));
    const QJsonObject first = QJsonDocument::fromJson(expectedTokens.readAll()).array().first().toObject();
    QCOMPARE(first["prompt"].toString(), QString("a photo of a cat"));
    const QJsonObject tokensJson = parseObject(tokens.out);
    QCOMPARE(tokensJson["clip_l"].toObject()["ids"].toArray(), first["clip_l"].toObject()["ids"].toArray());
    QCOMPARE(tokensJson["t5"].toObject()["ids"].toArray(), first["t5"].toObject()["ids"].toArray());

    const CliRun encoded = runCli({"encode-prompt", "--model", model, "--prompt", "a photo of a cat", "--out", "cond.safetensors"},
                                  folder);
    QVERIFY2(encoded.finished && encoded.exitCode == 0, describe(encoded));
    const auto cond = flowscope::core::SafeTensorsFile::read(QDir(folder).filePath("cond.safetensors").toStdString());
    QVERIFY(relativeTo(cond.tensor("txt"), fluxReference("prompt_txt")) < 1e-4);
    QVERIFY(relativeTo(cond.tensor("vec"), fluxReference("prompt_vec")) < 1e-4);
    QCOMPARE(cond.tensor("clip_l_ids").sizes().vec(), (std::vector<int64_t>{1, 77}));
    QCOMPARE(cond.tensor("t5_ids").sizes().vec(), (std::vector<int64_t>{1, 256}));

    // forward: the reference's first sample at its sigma, with the reference's conditioning.
    flowscope::core::writeSafeTensors(QDir(folder).filePath("ref-cond.safetensors").toStdString(),
                                      {{"txt", fluxReference("txt")}, {"vec", fluxReference("vec")}});
    writeTensorNpy(QDir(folder).filePath("x.npy"), fluxReference("x").narrow(0, 0, 1));
    const double sigma = fluxReference("sigma")[0].item<double>();
    const CliRun forward = runCli({"forward", "--model", model, "--x", "x.npy", "--sigma", QString::number(sigma, 'g', 17),
                                   "--cond", "ref-cond.safetensors", "--out", "out.npy"},
                                  folder);
    QVERIFY2(forward.finished && forward.exitCode == 0, describe(forward));
    QVERIFY(relativeTo(readTensorNpy(QDir(folder).filePath("out.npy")), fluxReference("schnell_out").narrow(0, 0, 1)) < 1e-4);

    writeTensorNpy(QDir(folder).filePath("z.npy"), fluxReference("ae_latents"));
    const CliRun decoded = runCli({"decode", "--model", model, "--latents", "z.npy", "--save-decoded", "img.npy", "--out", "img.png"},
                                  folder);
    QVERIFY2(decoded.finished && decoded.exitCode == 0, describe(decoded));
    QVERIFY(relativeTo(readTensorNpy(QDir(folder).filePath("img.npy")), fluxReference("ae_decoded")) < 1e-4);
    QVERIFY(QFile::exists(QDir(folder).filePath("img.png")));

    // sample: the family's schedule and steps, the prompt first in the PNG's parameters.
    const CliRun sampled = runCli({"sample", "--model", model, "--prompt", "a photo of a cat", "--width", "48", "--height", "32",
                                   "--out", "grid.png", "--json"},
                                  folder);
    QVERIFY2(sampled.finished && sampled.exitCode == 0, describe(sampled));
    QCOMPARE(parseObject(sampled.out)["nfe"].toInt(), 4);
    const auto chunks = flowscope::media::readPngText(readBytes(QDir(folder).filePath("grid.png")));
    const auto parameters = std::find_if(chunks.begin(), chunks.end(), [](const auto& chunk) { return chunk.first == "parameters"; });
    QVERIFY(parameters != chunks.end());
    QVERIFY2(parameters->second.rfind("a photo of a cat\nSteps: 4", 0) == 0, parameters->second.c_str());
    QVERIFY(parameters->second.find("Size: 48x32") != std::string::npos);
    // The decoded 48 x 32 image, enlarged for viewing as every small sample is.
    const cv::Mat grid = cv::imread(QDir(folder).filePath("grid.png").toStdString());
    QVERIFY(!grid.empty() && grid.cols > grid.rows);
}

void TestCli::checkpointRefusals() {
    const QString folder = freshFolder("flux-refusals");
    const QString model = QString::fromStdString("checkpoint:" + kFlux + "schnell");
    const auto refused = [&](const QStringList& arguments, const QString& says) {
        const CliRun run = runCli(arguments, folder);
        QVERIFY2(run.finished && run.exitCode == 2 && run.err.contains(says.toUtf8()), describe(run));
    };
    refused({"sample", "--model", "gmm:8gaussians", "--prompt", "a cat"}, "checkpoint:PATH");
    refused({"sample", "--model", model, "--prompt", "a cat", "--width", "40", "--height", "32"}, "multiple of 16");
    refused({"info", "--model", "checkpoint:" + folder + "/missing"}, "neither a model folder");
    refused({"forward", "--model", model, "--x", "x.npy", "--sigma", "0", "--cond", "c.safetensors", "--out", "o.npy"}, "");
    refused({"encode-prompt", "--model", QString::fromStdString("checkpoint:" + kFlux + "dev-bf16.safetensors"), "--prompt", "x",
             "--out", "c.safetensors"},
            "--clip-l");
    QVERIFY(!QFile::exists(QDir(folder).filePath("c.safetensors")));
}

// SD3.5 Medium's folder: info, tokenize (CLIP-G pads with "!"), encode-prompt's context and pooled
// vector, forward at 1000 sigma and a sample guided away from a negative prompt.
void TestCli::sd3SubStepsAndAGuidedSample() {
    const QString folder = freshFolder("sd3");
    const QString model = QString::fromStdString("checkpoint:" + kSd3 + "sd3.5_medium");
    const CliRun info = runCli({"info", "--model", model, "--json"}, folder);
    QVERIFY2(info.finished && info.exitCode == 0, describe(info));
    const QJsonObject infoJson = parseObject(info.out);
    QCOMPARE(infoJson["family"].toString(), QString("Stable Diffusion 3.5 Medium"));
    for (const char* part : {"transformer", "autoencoder", "clip_l", "clip_g", "t5"}) {
        QVERIFY2(infoJson["parts"].toObject()[part].toObject()["found"].toBool(), part);
    }
    QCOMPARE(infoJson["transformer"].toObject()["joint_blocks"].toInt(), 2);
    QCOMPARE(infoJson["default_cfg"].toDouble(), 5.0);
    QCOMPARE(infoJson["default_schedule"].toString(), QString("shift:3"));

    const CliRun tokens = runCli({"tokenize", "--tokenizers", QString::fromStdString(kSd3 + "sd3.5_medium"), "--prompt",
                                  "a photo of a cat", "--json"},
                                 folder);
    QVERIFY2(tokens.finished && tokens.exitCode == 0, describe(tokens));
    QFile expectedTokens(QString::fromStdString(kSd3 + "tokens.json"));
    QVERIFY(expectedTokens.open(QIODevice::ReadOnly));
    const QJsonArray entries = QJsonDocument::fromJson(expectedTokens.readAll()).array();
    const auto entry = std::find_if(entries.begin(), entries.end(),
                                    [](const QJsonValue& e) { return e.toObject()["prompt"].toString() == "a photo of a cat"; });
    QVERIFY(entry != entries.end());
    const QJsonObject tokensJson = parseObject(tokens.out);
    for (const char* name : {"clip_l", "clip_g", "t5"}) {
        QCOMPARE(tokensJson[name].toObject()["ids"].toArray(), entry->toObject()[name].toObject()["ids"].toArray());
    }

    const CliRun encoded = runCli({"encode-prompt", "--model", model, "--prompt", "a photo of a cat", "--out", "cond.safetensors",
                                   "--json"},
                                  folder);
    QVERIFY2(encoded.finished && encoded.exitCode == 0, describe(encoded));
    QCOMPARE(parseObject(encoded.out)["context_shape"].toArray().size(), 3);
    const auto cond = flowscope::core::SafeTensorsFile::read(QDir(folder).filePath("cond.safetensors").toStdString());
    QVERIFY(relativeTo(cond.tensor("context"), sd3Reference("prompt_context")) < 1e-4);
    QVERIFY(relativeTo(cond.tensor("pooled"), sd3Reference("prompt_pooled")) < 1e-4);
    for (const char* ids : {"clip_l_ids", "clip_g_ids", "t5_ids"}) QVERIFY2(cond.contains(ids), ids);

    flowscope::core::writeSafeTensors(QDir(folder).filePath("ref-cond.safetensors").toStdString(),
                                      {{"context", sd3Reference("context")}, {"pooled", sd3Reference("pooled")}});
    writeTensorNpy(QDir(folder).filePath("x.npy"), sd3Reference("x").narrow(0, 0, 1));
    const double sigma = sd3Reference("sigma")[0].item<double>();
    const CliRun forward = runCli({"forward", "--model", model, "--x", "x.npy", "--sigma", QString::number(sigma, 'g', 17),
                                   "--cond", "ref-cond.safetensors", "--out", "out.npy"},
                                  folder);
    QVERIFY2(forward.finished && forward.exitCode == 0, describe(forward));
    QVERIFY(relativeTo(readTensorNpy(QDir(folder).filePath("out.npy")), sd3Reference("sd35_medium_out").narrow(0, 0, 1)) < 1e-4);
    // A FLUX.1 conditioning file does not fit: the message names the tensor.
    const CliRun wrong = runCli({"forward", "--model", model, "--x", "x.npy", "--sigma", "0.5", "--cond",
                                 QString::fromStdString(kFlux + "reference.safetensors"), "--out", "o.npy"},
                                folder);
    QVERIFY2(wrong.finished && wrong.exitCode == 2 && wrong.err.contains("'context'"), describe(wrong));

    // sample: the card's schedule and guidance (--cfg 5), the negative prompt on its own line.
    const CliRun sampled = runCli({"sample", "--model", model, "--prompt", "a photo of a cat", "--negative-prompt", "blurry",
                                   "--width", "64", "--height", "64", "--steps", "2", "--out", "grid.png", "--json"},
                                  folder);
    QVERIFY2(sampled.finished && sampled.exitCode == 0, describe(sampled));
    QCOMPARE(parseObject(sampled.out)["nfe"].toInt(), 2);
    const auto chunks = flowscope::media::readPngText(readBytes(QDir(folder).filePath("grid.png")));
    const auto parameters = std::find_if(chunks.begin(), chunks.end(), [](const auto& chunk) { return chunk.first == "parameters"; });
    QVERIFY(parameters != chunks.end());
    QVERIFY2(parameters->second.rfind("a photo of a cat\nNegative prompt: blurry\nSteps: 2", 0) == 0, parameters->second.c_str());
    QVERIFY2(parameters->second.find("Schedule type: shift:3, CFG scale: 5") != std::string::npos, parameters->second.c_str());
    // The same network re-timed onto the curved vp path runs too.
    const CliRun curved = runCli({"sample", "--model", model, "--prompt", "a photo of a cat", "--width", "64", "--height", "64",
                                  "--steps", "2", "--path", "vp", "--cfg", "3", "--json"},
                                 folder);
    QVERIFY2(curved.finished && curved.exitCode == 0, describe(curved));
}
