// Faults the engine and its file writers must survive: a model that throws or answers NaN at a
// random step, cancellation at a random step a thousand times in a row, a writer killed with
// SIGKILL in the middle of a file, a destination that is full or not writable.
#include <atomic>
#include <csignal>
#include <random>

#include <QtTest/QtTest>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/torch.h>

#include "core/api/Engine.h"
#include "core/api/Errors.h"
#include "core/io/AtomicFile.h"
#include "core/io/NpyFile.h"
#include "core/io/RegularFile.h"
#include "core/io/SafeTensorsFile.h"
#include "core/models/GaussianMixture.h"
#include "core/models/TrustList.h"
#include "core/sampling/NoiseSource.h"
#include "core/sampling/ProbabilityPath.h"
#include "core/sampling/Sampler.h"
#include "core/sampling/Schedule.h"
#include "tests/TestSupport.h"

using namespace flowscope::core;
using flowscope::test::readBytes;
using flowscope::test::writeBytes;

namespace {

// Throws, or answers NaN, at one chosen evaluation.
class FaultyModel final : public Model {
public:
    FaultyModel() : m_inner(GaussianMixture::named("8gaussians")) {}
    std::string name() const override { return "faulty"; }
    std::vector<int64_t> sampleShape() const override { return m_inner->sampleShape(); }
    void prepare(torch::Device device, torch::ScalarType dtype) override { m_inner->prepare(device, dtype); }
    torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) override {
        const int call = calls++;
        if (call == throwAt) throw std::runtime_error("injected failure at evaluation " + std::to_string(call));
        torch::Tensor out = m_inner->denoise(x, alpha, sigma);
        if (call == nanAt) out = out.clone().fill_(std::numeric_limits<double>::infinity());
        return out;
    }
    int calls = 0;
    int throwAt = -1;
    int nanAt = -1;

private:
    std::unique_ptr<GaussianMixture> m_inner;
};

// Runs `child` in a forked process and returns its exit status (or -signal).
template <typename Child>
int inChild(Child child) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        int code = 3;
        try {
            code = child();
        } catch (...) {
            code = 4;
        }
        ::_exit(code);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

}  // namespace

class TestFaults : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void modelFaultsAtRandomSteps();
    void cancellationAtRandomStepsAThousandTimes();
    void sigkillDuringAWriteLeavesOldOrNewFile();
    void fullDestinationReportsAndKeepsTheOldFile();
    void unwritableDestinationReports();
    void symbolicLinkIsWrittenThrough();
    void transactionWritesAllFilesOrNone();
    void onlyRegularFilesAreRead();
};

void TestFaults::modelFaultsAtRandomSteps() {
    c10::InferenceMode inference;
    std::mt19937 random(1234);
    const auto path = makePath("linear");
    const auto x0 = torch::randn({4, 2}, torch::kFloat64);
    for (const char* solverName : {"euler", "heun", "rk4", "dpm++2m", "dopri5", "euler-a"}) {
        const auto solver = makeSolver(solverName);
        const auto grid = makeTimeGrid(parseSchedule("uniform"), *path, 12, 0, 1.0);
        // Stochastic solvers draw from the per-sample generators: a fresh source for every run.
        auto run = [&](Model& model) {
            NoiseSource noise({2}, 5, 4);
            return runSampler(model, *path, *solver, grid, x0, &noise, {});
        };
        FaultyModel clean;
        const SamplingOutcome reference = run(clean);
        for (int trial = 0; trial < 20; ++trial) {
            FaultyModel model;
            const bool throwing = trial % 2 == 0;
            const int at = std::uniform_int_distribution<int>(0, reference.nfe - 1)(random);
            (throwing ? model.throwAt : model.nanAt) = at;
            try {
                run(model);
                QFAIL(qPrintable(QString("%1: a fault at evaluation %2 went unnoticed").arg(solverName).arg(at)));
            } catch (const std::exception& error) {
                const QString message = error.what();
                if (throwing) {
                    QCOMPARE(message, QString("injected failure at evaluation %1").arg(at));
                } else {
                    QVERIFY2(message.contains("NaN or Inf at step"), qPrintable(message));
                }
            }
            // The same model, asked again, runs to the same answer as a fresh one.
            model.throwAt = model.nanAt = -1;
            const SamplingOutcome again = run(model);
            QVERIFY(torch::equal(again.final, reference.final));
        }
    }
}

void TestFaults::cancellationAtRandomStepsAThousandTimes() {
    Engine engine;
    SampleRequest request;
    request.model = "gmm:8gaussians";
    request.steps = 16;
    request.batch = 8;
    request.device = "cpu";
    request.solver = "heun";
    const SampleResult reference = engine.sample(request);
    QVERIFY(reference.ok());
    std::mt19937 random(99);
    std::atomic<bool> cancel{false};
    int cancelled = 0;
    for (int run = 0; run < 1000; ++run) {
        cancel = false;
        const int at = std::uniform_int_distribution<int>(0, request.steps + 2)(random);
        const SampleResult result = engine.sample(
            request, [&](const StepFrame& frame) { if (frame.index >= at) cancel = true; }, &cancel);
        // Frame i comes at the start of step i, after its evaluation. From the last step's frame
        // on, only the closed-form step into zero noise is left, so nothing is stopped.
        const bool expectCancel = at < request.steps - 1;
        QVERIFY2((result.failure == Failure::Cancelled) == expectCancel,
                 qPrintable(QString("frame %1: %2").arg(at).arg(QString::fromStdString(result.error))));
        if (expectCancel) {
            ++cancelled;
            QCOMPARE(result.error, std::string("cancelled"));
        } else {
            QVERIFY2(result.ok(), result.error.c_str());
        }
    }
    QVERIFY(cancelled > 600);
    // Nothing of the interrupted runs lingers: the next run is the same as the first.
    cancel = false;
    const SampleResult after = engine.sample(request, {}, &cancel);
    QVERIFY(after.ok());
    QCOMPARE(after.final.values, reference.final.values);
}

void TestFaults::sigkillDuringAWriteLeavesOldOrNewFile() {
    QTemporaryDir dir;
    const std::string path = dir.filePath("result.npy").toStdString();
    // 4 MB: long enough to be interrupted in the middle, short enough to finish often.
    std::vector<float> values(1 << 20);
    for (size_t i = 0; i < values.size(); ++i) values[i] = float(i % 1000);
    const std::string old = "the old file\n";
    writeBytes(QString::fromStdString(path), old);
    std::mt19937 random(7);
    int sawOld = 0;
    int sawNew = 0;
    int interrupted = 0;  // kills that left a temporary file: they hit the middle of a write
    for (int trial = 0; trial < 24; ++trial) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            try {
                for (;;) writeNpy(path, {int64_t(values.size())}, values.data());
            } catch (...) {
                ::_exit(1);
            }
        }
        // Half the kills come almost at once (often before the first write completes).
        const int most = trial % 2 == 0 ? 3000 : 250000;
        ::usleep(std::uniform_int_distribution<int>(0, most)(random));
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
        for (const QString& name : QDir(dir.path()).entryList(QDir::Files | QDir::Hidden)) {
            if (name.startsWith(".result.npy.")) {
                ++interrupted;
                QFile::remove(dir.filePath(name));
            }
        }
        const std::string bytes = readBytes(QString::fromStdString(path));
        if (bytes == old) {
            ++sawOld;
            continue;
        }
        const NpyArray array = readNpy(path);  // throws on a partial file
        QCOMPARE(array.shape, (std::vector<int64_t>{int64_t(values.size())}));
        QVERIFY(std::equal(values.begin(), values.end(), array.data.begin()));
        ++sawNew;
    }
    QVERIFY2(sawOld + sawNew == 24, "every kill left the old or a complete new file");
    QVERIFY2(interrupted > 0, "no kill interrupted a write; the test proved nothing");
    qInfo("after SIGKILL: old file %d times, complete new file %d times, %d kills in mid-write", sawOld, sawNew,
          interrupted);
}

void TestFaults::fullDestinationReportsAndKeepsTheOldFile() {
    QTemporaryDir dir;
    const QString path = dir.filePath("grid.npy");
    writeBytes(path, "old");
    // RLIMIT_FSIZE makes writes past 64 KB fail with EFBIG, as a full disk fails with ENOSPC.
    const int status = inChild([&] {
        ::signal(SIGXFSZ, SIG_IGN);
        const rlimit limit{64 << 10, 64 << 10};
        ::setrlimit(RLIMIT_FSIZE, &limit);
        const std::vector<float> values(1 << 20, 1.0f);
        try {
            writeNpy(path.toStdString(), {int64_t(values.size())}, values.data());
            return 10;
        } catch (const std::runtime_error& error) {
            return QString(error.what()).contains("File too large") ? 0 : 11;
        }
    });
    QCOMPARE(status, 0);
    QCOMPARE(readBytes(path), std::string("old"));
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden), QStringList{"grid.npy"});
}

void TestFaults::unwritableDestinationReports() {
    QTemporaryDir dir;
    QFile::setPermissions(dir.path(), QFileDevice::ReadOwner | QFileDevice::WriteOwner | QFileDevice::ExeOwner |
                                          QFileDevice::ReadOther | QFileDevice::ExeOther);
    const QString folder = dir.filePath("readonly");
    QVERIFY(QDir().mkpath(folder));
    QVERIFY(QFile::setPermissions(folder, QFileDevice::ReadOwner | QFileDevice::ExeOwner | QFileDevice::ReadOther |
                                              QFileDevice::ExeOther));
    // Root ignores permissions, so the writer runs as an ordinary user where it can.
    const int status = inChild([&] {
        if (::geteuid() == 0 && ::setuid(65534) != 0) return 20;
        try {
            writeFileAtomically((folder + "/out.csv").toStdString(), "a,b\n");
            return 10;
        } catch (const std::runtime_error& error) {
            return QString(error.what()).contains("Permission denied") ? 0 : 11;
        }
    });
    QCOMPARE(status, 0);
    QVERIFY(QDir(folder).entryList(QDir::Files | QDir::Hidden).isEmpty());
    QFile::setPermissions(folder, QFileDevice::ReadOwner | QFileDevice::WriteOwner | QFileDevice::ExeOwner);
}

void TestFaults::symbolicLinkIsWrittenThrough() {
    // As an editor saves: the file the link names gets the new contents, and the link stays a
    // link (a rename over it would have replaced it by a plain file and left the target old).
    QTemporaryDir dir;
    const QString target = dir.filePath("kept/grid.csv");
    QVERIFY(QDir().mkpath(dir.filePath("kept")));
    QFile old(target);
    QVERIFY(old.open(QIODevice::WriteOnly));
    old.write("old");
    old.close();
    const QString link = dir.filePath("link.csv");
    QVERIFY(QFile::link(target, link));
    writeFileAtomically(link.toStdString(), "new");
    QVERIFY(QFileInfo(link).isSymLink());
    QCOMPARE(readBytes(target), std::string("new"));
    // A dangling link makes the file it names.
    const QString dangling = dir.filePath("dangling.csv");
    QVERIFY(QFile::link(dir.filePath("kept/made.csv"), dangling));
    writeFileAtomically(dangling.toStdString(), "made");
    QVERIFY(QFileInfo(dangling).isSymLink());
    QCOMPARE(readBytes(dir.filePath("kept/made.csv")), std::string("made"));
    // No temporary file is left beside either.
    QCOMPARE(QDir(dir.filePath("kept")).entryList(QDir::Files | QDir::Hidden), (QStringList{"grid.csv", "made.csv"}));
    // A link to a device (as /dev/stdout is) writes into the device, not beside it.
    const QString device = dir.filePath("device");
    QVERIFY(QFile::link("/dev/null", device));
    writeFileAtomically(device.toStdString(), "into the device");
    QVERIFY(QFileInfo(device).isSymLink());
    struct stat null {};
    QVERIFY(::stat("/dev/null", &null) == 0 && S_ISCHR(null.st_mode));
}

void TestFaults::transactionWritesAllFilesOrNone() {
    QTemporaryDir dir;
    const std::string a = dir.filePath("a.png").toStdString();
    const std::string b = dir.filePath("b.npy").toStdString();
    writeBytes(dir.filePath("a.png"), "old a");
    {
        // Staged but never committed (a cancel between outputs): nothing changes.
        FileTransaction transaction;
        transaction.add(a, "new a");
        transaction.add(b, "new b");
    }
    QCOMPARE(readBytes(dir.filePath("a.png")), std::string("old a"));
    QVERIFY(!QFileInfo::exists(dir.filePath("b.npy")));
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden), QStringList{"a.png"});
    if (QFileInfo::exists("/dev/full")) {
        // A device whose write fails at commit: the files staged with it keep their old state.
        FileTransaction transaction;
        transaction.add(a, "new a");
        transaction.add("/dev/full", "device bytes");
        transaction.add(b, "new b");
        QVERIFY_THROWS_EXCEPTION(std::runtime_error, transaction.commit());
        QCOMPARE(readBytes(dir.filePath("a.png")), std::string("old a"));
        QVERIFY(!QFileInfo::exists(dir.filePath("b.npy")));
    }
    FileTransaction transaction;
    transaction.add(a, "new a");
    transaction.add(b, "new b");
    transaction.commit();
    QCOMPARE(readBytes(dir.filePath("a.png")), std::string("new a"));
    QCOMPARE(readBytes(dir.filePath("b.npy")), std::string("new b"));
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden), (QStringList{"a.png", "b.npy"}));
    // A folder that takes no new files is found out before any work.
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, checkCanWrite("/proc/flowscope-test.csv"));
    checkCanWrite(a);
    checkCanWrite("/dev/null");
}

void TestFaults::onlyRegularFilesAreRead() {
    QTemporaryDir dir;
    const QString fifo = dir.filePath("fifo");
    QCOMPARE(::mkfifo(fifo.toLocal8Bit().constData(), 0600), 0);
    auto refusal = [](const std::string& path, uint64_t limit) -> std::string {
        try {
            readRegularFile(path, limit, "the test file");
        } catch (const FileReadError& error) {
            return error.what();
        }
        return {};
    };
    // A FIFO without a writer would block for ever; a device never ends; a folder is no data.
    QVERIFY(refusal(fifo.toStdString(), 1 << 20).find("pipe") != std::string::npos);
    QVERIFY(refusal("/dev/zero", 1 << 20).find("device") != std::string::npos);
    QVERIFY(refusal(dir.path().toStdString(), 1 << 20).find("folder") != std::string::npos);
    QVERIFY(refusal(dir.filePath("missing").toStdString(), 1 << 20).find("missing") != std::string::npos);
    writeBytes(dir.filePath("big"), std::string(2000, 'x'));
    QVERIFY(refusal(dir.filePath("big").toStdString(), 1000).find("more than") != std::string::npos);
    QCOMPARE(readRegularFile(dir.filePath("big").toStdString(), 2000, "the test file"), std::string(2000, 'x'));
    const std::atomic<bool> cancelled{true};
    QVERIFY_THROWS_EXCEPTION(CancelledError,
                             readRegularFile(dir.filePath("big").toStdString(), 2000, "the test file", &cancelled));
    // Through the readers that use it: the trusted list and safetensors.
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, SafeTensorsFile::read(fifo.toStdString()));
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, TrustList("/dev/zero").contains(std::string(64, 'a')));
}

QTEST_GUILESS_MAIN(TestFaults)
#include "tst_faults.moc"
