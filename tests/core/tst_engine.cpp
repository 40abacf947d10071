// The engine facade: requests in, frames and results out, and every failure a message a user can
// act on (never an exception).
#include <atomic>

#include <QElapsedTimer>
#include <QtTest/QtTest>

#include <torch/torch.h>

#include "core/api/Engine.h"
#include "core/models/Datasets.h"

using namespace flowscope::core;

namespace {

SampleRequest gmmRequest() {
    SampleRequest request;
    request.model = "gmm:8gaussians";
    request.steps = 6;
    request.batch = 3;
    request.device = "cpu";
    return request;
}

}  // namespace

class TestEngine : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void describeModelReadsOnlySpecsAndManifests();
    void sampleProducesFramesAndResult();
    void sameSeedSameResultAndSampleKAlone();
    void fashionMnistMemorizesTrainingImages();
    void unknownNamesListValidOnes_data();
    void unknownNamesListValidOnes();
    void rangesAreChecked_data();
    void rangesAreChecked();
    void tolerancesBelowTheDtypeAreRefused();
    void runsTooLargeForMemoryAreRefusedUpFront();
    void cudaAndBfloat16AreRefusedOnTheCpu();
    void missingDatasetNamesThePackage();
    void cancelledRunReportsCancelled();
    void sweepRowsErrorFallsWithSteps();
    void sweepLanesMatchCellByCell();
    void info();
};

void TestEngine::sampleProducesFramesAndResult() {
    Engine engine;
    auto request = gmmRequest();
    request.recordTrajectory = true;
    int frames = 0;
    const auto result = engine.sample(request, [&](const StepFrame& frame) {
        QCOMPARE(frame.index, frames);
        QCOMPARE(frame.state.shape, (std::vector<int64_t>{3, 2}));
        ++frames;
    });
    QVERIFY2(result.ok(), result.error.c_str());
    QCOMPARE(frames, 7);
    QCOMPARE(result.nfe, 6);
    QCOMPARE(result.final.shape, (std::vector<int64_t>{3, 2}));
    QCOMPARE(result.trajectory.shape, (std::vector<int64_t>{7, 3, 2}));
    QCOMPARE(result.times.size(), size_t(7));
    QCOMPARE(result.pathLengthRatios.size(), size_t(3));
    QVERIFY(result.pathLengthRatio >= 1.0);
    QVERIFY(result.seconds > 0.0);
}

void TestEngine::sameSeedSameResultAndSampleKAlone() {
    Engine engine;
    auto request = gmmRequest();
    request.seed = 10;
    request.batch = 4;
    const auto batch = engine.sample(request);
    QCOMPARE(engine.sample(request).final.values, batch.final.values);
    request.seed = 12;
    request.batch = 1;
    const auto single = engine.sample(request);
    // Sample 2 of the seed-10 batch is the seed-12 sample alone.
    QCOMPARE(single.final.values[0], batch.final.values[4]);
    QCOMPARE(single.final.values[1], batch.final.values[5]);
}

void TestEngine::fashionMnistMemorizesTrainingImages() {
    Engine engine;
    SampleRequest request;
    request.model = "fashion-mnist:300";
    request.steps = 40;
    request.batch = 2;
    request.device = "cpu";
    request.solver = "heun";
    const auto result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    QCOMPARE(result.final.shape, (std::vector<int64_t>{2, 1, 28, 28}));
    // The ideal denoiser's flow ends on a training image (it memorizes its data).
    const auto data = loadFashionMnist(true, 300).reshape({300, -1});
    for (int b = 0; b < 2; ++b) {
        const auto sample = torch::from_blob(const_cast<float*>(result.final.values.data()) + b * 784, {1, 784}).clone();
        const double nearest = (data - sample).pow(2).mean(1).sqrt().min().item<double>();
        QVERIFY2(nearest < 0.02, qPrintable(QString("RMS distance to the nearest training image %1").arg(nearest)));
    }
}

void TestEngine::unknownNamesListValidOnes_data() {
    QTest::addColumn<QString>("field");
    QTest::addColumn<QString>("listed");
    QTest::newRow("model") << "model" << "gmm:8gaussians";
    QTest::newRow("path") << "path" << "cosine";
    QTest::newRow("solver") << "solver" << "dpm++2m";
    QTest::newRow("schedule") << "schedule" << "karras";
    QTest::newRow("device") << "device" << "cuda";
}

void TestEngine::unknownNamesListValidOnes() {
    QFETCH(QString, field);
    QFETCH(QString, listed);
    Engine engine;
    auto request = gmmRequest();
    if (field == "model") request.model = "nonsense";
    if (field == "path") request.path = "nonsense";
    if (field == "solver") request.solver = "nonsense";
    if (field == "schedule") request.schedule = "nonsense";
    if (field == "device") request.device = "nonsense";
    const auto result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    const QString message = QString::fromStdString(result.error);
    QVERIFY2(message.contains("nonsense") && message.contains(listed), qPrintable(message));
}

void TestEngine::rangesAreChecked_data() {
    QTest::addColumn<int>("steps");
    QTest::addColumn<int>("batch");
    QTest::addColumn<double>("tEnd");
    QTest::newRow("steps 0") << 0 << 1 << 1.0;
    QTest::newRow("steps 10001") << 10001 << 1 << 1.0;
    QTest::newRow("batch 0") << 4 << 0 << 1.0;
    QTest::newRow("batch 4097") << 4 << 4097 << 1.0;
    QTest::newRow("t-end 0") << 4 << 1 << 0.0;
    QTest::newRow("t-end 1.5") << 4 << 1 << 1.5;
    // Below 0.001 the state barely leaves its noise (in float32 not at all): refused, not NaN.
    QTest::newRow("t-end 1e-300") << 4 << 1 << 1e-300;
}

void TestEngine::rangesAreChecked() {
    QFETCH(int, steps);
    QFETCH(int, batch);
    QFETCH(double, tEnd);
    Engine engine;
    auto request = gmmRequest();
    request.steps = steps;
    request.batch = batch;
    request.tEnd = tEnd;
    const auto result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY(!result.error.empty());
}

void TestEngine::tolerancesBelowTheDtypeAreRefused() {
    // dopri5 cannot meet a tolerance finer than its dtype resolves: it would shrink its steps
    // without end, or its error estimate would overflow and the run blame the model.
    Engine engine;
    auto request = gmmRequest();
    request.solver = "dopri5";
    request.rtol = 1e-12;  // float32 resolves about 1.2e-7
    auto result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(result.error.find("--rtol") != std::string::npos && result.error.find("--dtype float64") != std::string::npos,
             result.error.c_str());
    request.dtype = "float64";
    result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    // atol is absolute: rtol already sets the precision floor, so a tiny one is fine.
    request.dtype = "float32";
    request.rtol = 1e-4;
    request.atol = 1e-9;
    result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    // A fixed-step solver has no tolerance to check.
    request.solver = "euler";
    QVERIFY(engine.sample(request).ok());
    SweepRequest sweep;
    sweep.model = "gmm:8gaussians";
    sweep.paths = {"linear"};
    sweep.solvers = {"euler"};
    sweep.steps = {2};
    sweep.device = "cpu";
    sweep.referenceTolerance = 1e-300;
    const auto refused = engine.sweep(sweep);
    QCOMPARE(refused.failure, Failure::InvalidRequest);
    QVERIFY2(refused.error.find("--reference-tol") != std::string::npos, refused.error.c_str());
}

void TestEngine::runsTooLargeForMemoryAreRefusedUpFront() {
    // Sizes no machine of today holds in half its memory: refused in words before any of it is
    // allocated, rather than running the machine out of memory.
    Engine engine;
    SampleRequest request;
    request.model = "fashion-mnist";
    request.resolution = 1024;  // 60,000 images of 1024 x 1024, two float32 copies while resizing: 503 GB
    request.device = "cpu";
    QElapsedTimer timer;
    timer.start();
    auto result = engine.sample(request);
    if (result.error.find("dataset-fashion-mnist") != std::string::npos) {
        QSKIP("the Fashion-MNIST dataset is not installed");
    }
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(result.error.find("503 GB") != std::string::npos && result.error.find("--resolution") != std::string::npos,
             result.error.c_str());
    // One image of that size is fine, but 4,096 of them kept at each of 10,001 steps is not.
    request.model = "fashion-mnist:1";
    request.batch = 4096;
    request.steps = 10000;
    request.recordTrajectory = true;
    result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(result.error.find("keeping all 10001 states of 4096 samples") != std::string::npos, result.error.c_str());
    QVERIFY2(timer.elapsed() < 60000, "refused before the work");
}

void TestEngine::cudaAndBfloat16AreRefusedOnTheCpu() {
    Engine engine;
    if (Engine::info().cudaAvailable) QSKIP("this machine has CUDA");
    auto request = gmmRequest();
    request.device = "cuda";
    auto result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY(QString::fromStdString(result.error).contains("--device cpu"));
    request.device = "cpu";
    request.dtype = "bfloat16";
    result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY(QString::fromStdString(result.error).contains("CUDA"));
}

void TestEngine::missingDatasetNamesThePackage() {
    QTemporaryDir empty;
    qputenv("FLOWSCOPE_FASHION_MNIST_DIR", empty.path().toLocal8Bit());
    Engine engine;
    SampleRequest request;
    request.model = "fashion-mnist";
    const auto result = engine.sample(request);
    qunsetenv("FLOWSCOPE_FASHION_MNIST_DIR");
    QCOMPARE(result.failure, Failure::Runtime);
    QVERIFY(QString::fromStdString(result.error).contains("dataset-fashion-mnist"));
}

void TestEngine::cancelledRunReportsCancelled() {
    Engine engine;
    auto request = gmmRequest();
    request.steps = 1000;
    std::atomic<bool> cancel{false};
    int frames = 0;
    const auto result = engine.sample(
        request,
        [&](const StepFrame&) {
            if (++frames == 5) cancel = true;
        },
        &cancel);
    QCOMPARE(result.failure, Failure::Cancelled);
    QCOMPARE(frames, 5);
}

void TestEngine::sweepRowsErrorFallsWithSteps() {
    Engine engine;
    SweepRequest request;
    request.model = "gmm:8gaussians";
    request.paths = {"linear", "vp"};
    request.solvers = {"euler", "heun"};
    request.steps = {2, 4, 8, 16};
    request.batch = 4;
    request.device = "cpu";
    int streamed = 0;
    const auto result = engine.sweep(request, [&](const SweepRow&) { ++streamed; });
    QVERIFY2(result.ok(), result.error.c_str());
    QCOMPARE(int(result.rows.size()), 16);
    QCOMPARE(streamed, 16);
    for (size_t i = 0; i < result.rows.size(); i += 4) {
        for (size_t j = i + 1; j < i + 4; ++j) {
            QVERIFY2(result.rows[j].rmse < result.rows[j - 1].rmse,
                     qPrintable(QString("%1 %2 %3").arg(result.rows[j].path.c_str(), result.rows[j].solver.c_str()).arg(result.rows[j].steps)));
        }
    }
    QCOMPARE(result.rows[4 + 3].nfe, 31);  // heun, 16 steps: 2N - 1
    request.solvers = {"nonsense"};
    QCOMPARE(engine.sweep(request).failure, Failure::InvalidRequest);
}

void TestEngine::sweepLanesMatchCellByCell() {
    // A sweep run as lanes of one batch reports what running every cell alone reports: the mixture
    // (closed form), a TorchScript network and the exact denoiser of a small dataset, in float32.
    // dopri5's cells choose their own steps per lane; two engines, so that the second solves its
    // references together as lanes too instead of reusing the first one's.
    for (const std::string& model : {std::string("gmm:8gaussians"),
                                    std::string("bundle:" FLOWSCOPE_SOURCE_DIR "/resources/fixtures/bundles/gauss-velocity-linear"),
                                    std::string("fashion-mnist:300")}) {
        SweepRequest request;
        request.model = model;
        request.trustModel = true;
        request.paths = {"linear", "vp"};
        request.solvers = {"euler", "dpm++2m", "euler-a", "rk4", "dopri5"};
        request.schedules = {"uniform", "karras"};
        request.steps = {1, 2, 4};
        request.batch = 2;
        request.device = "cpu";
        request.referenceTolerance = 1e-4;
        request.batchCells = false;
        const auto alone = Engine().sweep(request);
        QVERIFY2(alone.ok(), alone.error.c_str());
        request.batchCells = true;
        std::vector<std::string> order;
        const auto together = Engine().sweep(request, [&](const SweepRow& row) { order.push_back(row.solver); });
        QVERIFY2(together.ok(), together.error.c_str());
        QCOMPARE(together.rows.size(), size_t(2 * 2 * 5 * 3));
        QCOMPARE(together.rows.size(), alone.rows.size());
        for (size_t i = 0; i < alone.rows.size(); ++i) {
            const auto& a = alone.rows[i];
            const auto& b = together.rows[i];
            const QString what = QString("%1 %2 %3 %4 %5").arg(model.c_str(), a.path.c_str(), a.solver.c_str(),
                                                               a.schedule.c_str()).arg(a.steps);
            QCOMPARE(b.path, a.path);
            QCOMPARE(b.solver, a.solver);
            QCOMPARE(b.steps, a.steps);
            // dopri5 in float32: its error estimate (a difference of two solutions) lies within a
            // few percent of rounding, so a lane may accept or reject an attempt its run alone
            // did not, and take other steps from there (tst_sampler checks the same NFE in
            // float64); both meet the tolerance.
            const double slack = a.solver == "dopri5" ? std::max(12.0, 0.25 * a.nfe) : 0.0;
            QVERIFY2(std::abs(b.nfe - a.nfe) <= slack, qPrintable(what + QString(" nfe %1 vs %2").arg(b.nfe).arg(a.nfe)));
            QCOMPARE(order[i], a.solver);  // streamed in the same order
            QVERIFY2(std::abs(b.rmse - a.rmse) <= 1e-4 * (1.0 + a.rmse), qPrintable(what + QString(" rmse %1 vs %2").arg(b.rmse).arg(a.rmse)));
            QVERIFY2(std::abs(b.straightness - a.straightness) <= 1e-3 * (1.0 + a.straightness), qPrintable(what));
        }
    }
}

void TestEngine::info() {
    const auto info = Engine::info();
    QVERIFY(!info.version.empty());
    QVERIFY(info.threads >= 1);
    QCOMPARE(info.paths.size(), size_t(4));
    QCOMPARE(info.solvers.size(), size_t(9));
    QVERIFY(info.fashionMnistInstalled);
}

void TestEngine::describeModelReadsOnlySpecsAndManifests() {
    const ModelDescription mixture = Engine::describeModel("gmm:8gaussians");
    QVERIFY(mixture.ok && mixture.points && mixture.exact && !mixture.latent);
    QCOMPARE(mixture.sampleShape, (std::vector<int64_t>{2}));
    QCOMPARE(mixture.referenceData, std::string("gmm:8gaussians"));
    QCOMPARE(Engine::describeModel("fashion-mnist:100").sampleShape, (std::vector<int64_t>{1, 28, 28}));
    QCOMPARE(Engine::describeModel("fashion-mnist", 14).sampleShape, (std::vector<int64_t>{1, 14, 14}));
    QTemporaryDir images;
    QCOMPARE(Engine::describeModel("folder:" + images.path().toStdString()).sampleShape,
             (std::vector<int64_t>{3, 32, 32}));
    // Networks: the manifest's shape, path and parameterization; 2-D ones name their training data.
    const ModelDescription moons = Engine::describeModel("shipped:moons-rectified");
    QVERIFY2(moons.ok, moons.error.c_str());
    QVERIFY(moons.points && !moons.exact);
    QCOMPARE(moons.nativePath, std::string("linear"));
    QCOMPARE(moons.parameterization, std::string("velocity"));
    QCOMPARE(moons.referenceData, std::string("points:moons"));
    const ModelDescription ddpm = Engine::describeModel("shipped:fashion-ddpm");
    QVERIFY2(ddpm.ok, ddpm.error.c_str());
    QCOMPARE(ddpm.sampleShape, (std::vector<int64_t>{1, 28, 28}));
    QCOMPARE(ddpm.nativePath, std::string("vp"));
    QCOMPARE(ddpm.parameterization, std::string("epsilon"));
    // What is wrong with a spec, in words, and nothing else filled in.
    const ModelDescription unknown = Engine::describeModel("gmm:nope");
    QVERIFY(!unknown.ok && unknown.sampleShape.empty());
    QVERIFY2(unknown.error.find("8gaussians") != std::string::npos, unknown.error.c_str());
    QVERIFY(!Engine::describeModel("folder:" + images.filePath("missing").toStdString()).ok);
}

QTEST_GUILESS_MAIN(TestEngine)
#include "tst_engine.moc"
