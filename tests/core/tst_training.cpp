// Training flows with the engine's own networks: the loss falls, checkpoints round-trip bit for
// bit, a resumed run continues exactly where it stopped, the result is a bundle the engine samples
// without any trust prompt, and bad inputs get clear errors.
#include <chrono>
#include <cmath>
#include <future>
#include <map>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <QtTest/QtTest>

#include <ATen/CPUGeneratorImpl.h>

#include <torch/torch.h>

#include "core/api/Engine.h"
#include "core/api/Errors.h"
#include "core/api/TrainingJob.h"
#include "core/io/SafeTensors.h"
#include "core/models/Bundle.h"
#include "core/models/BundleModel.h"
#include "core/models/Datasets.h"
#include "core/models/EmpiricalDenoiser.h"
#include "core/models/FlowNet.h"
#include "core/models/ShippedModels.h"
#include "core/models/TrustList.h"
#include "core/sampling/ProbabilityPath.h"
#include "core/train/Quality.h"
#include "core/train/Trainer.h"
#include "tests/TestSupport.h"

using namespace flowscope::core;
using flowscope::test::readBytes;
using flowscope::test::writeBytes;

namespace {

TrainSettings moonSettings(int iterations) {
    TrainSettings settings;
    settings.dataset = "points:moons";
    settings.iterations = iterations;
    settings.batch = 128;
    settings.width = 64;
    settings.depth = 2;
    settings.learningRate = 3e-3;
    settings.emaDecay = 0.9;
    settings.seed = 5;
    return settings;
}

Trainer makeTrainer(const TrainSettings& settings) {
    std::vector<int64_t> shape;
    DataSampler data = datasetSampler(settings.dataset, settings.resolution, &shape);
    return Trainer(settings, shape, data);
}

double mean(const std::vector<double>& values, size_t from, size_t to) {
    double sum = 0.0;
    for (size_t i = from; i < to; ++i) sum += values[i];
    return sum / static_cast<double>(to - from);
}

// The lowest loss any network can reach on a batch: the exact posterior of the 2,000-point moons
// cloud (the empirical denoiser) turned into the objective's target.
double optimalLoss(const Trainer& trainer, const torch::Tensor& data, const torch::Tensor& noise, const torch::Tensor& t) {
    EmpiricalDenoiser exact("moons", makePointCloud("moons"));
    exact.prepare(torch::kCPU, torch::kFloat32);
    const auto [x, target] = trainer.inputAndTarget(data, noise, t);
    const std::string& objective = trainer.settings().objective;
    const auto path = makePath(objective == "rectified" ? "linear" : objective == "diffusion" ? "vp" : "cosine");
    double sum = 0.0;
    for (int64_t b = 0; b < data.size(0); ++b) {
        const PathPoint p = path->at(t[b].item<double>());
        const torch::Tensor xb = x.narrow(0, b, 1);
        const torch::Tensor data0 = exact.denoise(xb, p.alpha, p.sigma);
        const torch::Tensor eps = (xb - p.alpha * data0) / p.sigma;
        const torch::Tensor best = objective == "rectified" ? data0 - eps
                                   : objective == "diffusion" ? eps
                                                              : p.alpha * eps - p.sigma * data0;
        sum += (best - target.narrow(0, b, 1)).pow(2).sum().item<double>();
    }
    return sum / static_cast<double>(target.numel());
}

// A 1-rectified flow on the moons, trained long enough to sample them well.
Trainer trainedMoons(int iterations) {
    TrainSettings settings = moonSettings(iterations);
    settings.width = 128;
    settings.batch = 256;
    settings.emaDecay = 0.99;
    Trainer trainer = makeTrainer(settings);
    trainer.run();
    return trainer;
}

bool sameParameters(FlowNet& a, FlowNet& b) {
    const auto left = a.parameters();
    const auto right = b.parameters();
    for (size_t i = 0; i < left.size(); ++i) {
        if (!torch::equal(left[i], right[i])) return false;
    }
    return left.size() == right.size();
}

std::vector<torch::Tensor> copies(FlowNet& network) {
    std::vector<torch::Tensor> copied;
    for (const auto& parameter : network.parameters()) copied.push_back(parameter.detach().clone());
    return copied;
}

// Whether each parameter of `network` equals weightA a_i + weightB b_i (float32 rounding aside).
bool isBlend(FlowNet& network, double weightA, const std::vector<torch::Tensor>& a, double weightB,
             const std::vector<torch::Tensor>& b) {
    const auto parameters = network.parameters();
    for (size_t i = 0; i < parameters.size(); ++i) {
        const torch::Tensor expected = a[i].to(torch::kFloat64) * weightA + b[i].to(torch::kFloat64) * weightB;
        if (!torch::allclose(parameters[i].to(torch::kFloat64), expected, 1e-5, 1e-6)) return false;
    }
    return true;
}

double distance(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
    double sum = 0.0;
    for (size_t i = 0; i < a.size(); ++i) sum += (a[i] - b[i]).to(torch::kFloat64).pow(2).sum().item<double>();
    return std::sqrt(sum);
}

// A copy of a checkpoint with one metadata field replaced.
void rewriteMetadata(const std::string& from, const std::string& to, const std::string& field, const std::string& value) {
    const SafeTensorsFile file = SafeTensorsFile::read(from);
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& entry : file.entries()) tensors.emplace_back(entry.name, file.tensor(entry.name));
    std::map<std::string, std::string> metadata = file.metadata();
    metadata[field] = value;
    writeSafeTensors(to, tensors, metadata);
}

QStringList lossLogLines(const QString& folder) {
    return QString::fromStdString(readBytes(folder + "/loss.csv")).split('\n', Qt::SkipEmptyParts);
}

TrainRequest moonJob(const QString& folder, int iterations) {
    TrainRequest request;
    request.dataset = "points:moons";
    request.outDirectory = folder.toStdString();
    request.width = 32;
    request.depth = 1;
    request.batch = 64;
    request.iterations = iterations;
    request.checkpointEvery = 10;
    return request;
}

}  // namespace

class TestTraining : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase();
    void lossFallsForEveryObjective_data();
    void lossFallsForEveryObjective();
    void unetLearnsImages();
    void checkpointRoundTripsBitExactly();
    void resumedRunContinuesTheSameTrajectory();
    void trainedBundleSamplesWithoutTrust();
    void reflowStraightensPaths();
    void shippedModelsShowTheReflowClaim();
    void badInputsAreExplained();
    void averageWarmsUpFromTheWeights();
    void shortRunAverageLeavesTheInitialWeights();
    void damagedCheckpointMetadataIsNamed_data();
    void damagedCheckpointMetadataIsNamed();
    void checkpointThatIsNoFileIsRefusedPromptly();
    void rerunContinuesOneLossLog();
    void conditionalNetworkLearnsItsClasses();
    void shippedConditionalReflowBakesInGuidance();
    void shippedFashionFlowSamplesTheAskedClass();

private:
    QTemporaryDir m_dir;
};

void TestTraining::initTestCase() { QVERIFY(m_dir.isValid()); }

void TestTraining::lossFallsForEveryObjective_data() {
    QTest::addColumn<QString>("objective");
    QTest::addColumn<QString>("timeSampling");
    QTest::newRow("rectified") << "rectified" << "uniform";
    QTest::newRow("rectified logit-normal") << "rectified" << "logit-normal";
    QTest::newRow("diffusion") << "diffusion" << "uniform";
    QTest::newRow("v") << "v" << "uniform";
}

void TestTraining::lossFallsForEveryObjective() {
    QFETCH(QString, objective);
    QFETCH(QString, timeSampling);
    TrainSettings settings = moonSettings(400);
    settings.objective = objective.toStdString();
    settings.timeSampling = timeSampling.toStdString();
    Trainer trainer = makeTrainer(settings);
    // A fixed evaluation batch, and the least loss possible on it (these objectives have an
    // irreducible part, so the loss itself cannot fall to zero).
    at::Generator generator = at::detail::createCPUGenerator(77);
    const torch::Tensor cloud = makePointCloud("moons");
    const torch::Tensor data = cloud.index_select(0, torch::randint(cloud.size(0), {512}, generator, torch::kLong));
    const torch::Tensor noise = torch::randn(data.sizes(), generator, torch::kFloat32);
    const torch::Tensor t = torch::rand({512}, generator, torch::kFloat64).clamp(1e-5, 1.0 - 1e-5);
    const double floor = optimalLoss(trainer, data, noise, t);
    const double before = trainer.loss(data, noise, t, false) - floor;
    std::vector<double> losses;
    trainer.run([&](const TrainStep& step) { losses.push_back(step.loss); });
    QCOMPARE(losses.size(), size_t{400});
    const double after = trainer.loss(data, noise, t, true) - floor;
    qInfo("%s: least possible loss %.4f; excess over it %.4f untrained, %.4f after 400 iterations", qPrintable(objective),
          floor, before, after);
    QVERIFY(before > 0.0 && after > -1e-3);
    QVERIFY2(after < 0.5 * before, qPrintable(QString("excess loss %1 -> %2").arg(before).arg(after)));
}

void TestTraining::unetLearnsImages() {
    // A small UNet on 12x12 Fashion-MNIST images: the loss falls within a few dozen steps.
    TrainSettings settings;
    settings.dataset = "fashion-mnist:512";
    settings.resolution = 12;
    settings.iterations = 60;
    settings.batch = 32;
    settings.width = 8;
    settings.depth = 1;
    settings.learningRate = 2e-3;
    Trainer trainer = makeTrainer(settings);
    QCOMPARE(trainer.network().architecture().kind, std::string("unet"));
    std::vector<double> losses;
    trainer.run([&](const TrainStep& step) { losses.push_back(step.loss); });
    const double first = mean(losses, 0, 10);
    const double last = mean(losses, 50, 60);
    QVERIFY2(last < 0.8 * first, qPrintable(QString("loss %1 -> %2").arg(first).arg(last)));
}

void TestTraining::checkpointRoundTripsBitExactly() {
    Trainer trainer = makeTrainer(moonSettings(30));
    trainer.run();
    const std::string first = m_dir.filePath("first.safetensors").toStdString();
    const std::string second = m_dir.filePath("second.safetensors").toStdString();
    trainer.saveCheckpoint(first);
    Trainer restored = makeTrainer(moonSettings(30));
    restored.loadCheckpoint(first);
    QCOMPARE(restored.iteration(), 30);
    QVERIFY(sameParameters(restored.network(), trainer.network()));
    QVERIFY(sameParameters(restored.average(), trainer.average()));
    restored.saveCheckpoint(second);
    QVERIFY(readBytes(QString::fromStdString(first)) == readBytes(QString::fromStdString(second)));
}

void TestTraining::resumedRunContinuesTheSameTrajectory() {
    Trainer straight = makeTrainer(moonSettings(40));
    straight.run();

    Trainer interrupted = makeTrainer(moonSettings(40));
    std::atomic<bool> cancel{false};
    try {
        interrupted.run([&](const TrainStep& step) { cancel = step.iteration == 17; }, &cancel);
        QFAIL("the run was not cancelled");
    } catch (const CancelledError&) {
    }
    QCOMPARE(interrupted.iteration(), 17);
    const std::string checkpoint = m_dir.filePath("resume.safetensors").toStdString();
    interrupted.saveCheckpoint(checkpoint);

    Trainer resumed = makeTrainer(moonSettings(40));
    resumed.loadCheckpoint(checkpoint);
    resumed.run();
    QCOMPARE(resumed.iteration(), 40);
    // The same data, noise and times were drawn after the resume: identical weights, bit for bit.
    QVERIFY(sameParameters(resumed.network(), straight.network()));
    QVERIFY(sameParameters(resumed.average(), straight.average()));
}

void TestTraining::trainedBundleSamplesWithoutTrust() {
    Trainer trainer = trainedMoons(2000);
    const QString folder = m_dir.filePath("moons-bundle");
    trainer.exportBundle(folder.toStdString(), "moons rectified flow");
    const BundleManifest manifest = readBundleManifest(folder.toStdString());
    QCOMPARE(manifest.format, std::string("flowscope-net"));
    QCOMPARE(manifest.prediction, std::string("velocity"));
    QVERIFY(manifest.programFiles().empty());  // data only: no trust needed

    qputenv("FLOWSCOPE_TRUST_LIST", m_dir.filePath("no-list").toUtf8());
    Engine engine;
    SampleRequest request;
    request.model = "bundle:" + folder.toStdString();
    request.batch = 512;
    request.steps = 32;
    request.solver = "rk4";
    request.device = "cpu";
    const SampleResult result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    // The samples land on the moons: most lie within 0.1 of a training point, unlike the noise.
    const torch::Tensor cloud = makePointCloud("moons");
    auto onMoons = [&](const HostArray& points) {
        const torch::Tensor x = torch::from_blob(const_cast<float*>(points.values.data()), {512, 2}, torch::kFloat32);
        return (std::get<0>(torch::cdist(x, cloud).min(1)) < 0.1).to(torch::kFloat64).mean().item<double>();
    };
    const double start = onMoons(result.initial);
    const double end = onMoons(result.final);
    qInfo("within 0.1 of the moons: noise %.2f, samples %.2f", start, end);
    QVERIFY2(end > 0.75 && end > start + 0.3, qPrintable(QString("%1 -> %2").arg(start).arg(end)));
    // Re-timed along the vp path it still samples (the engine converts the velocity network).
    request.path = "vp";
    QVERIFY(engine.sample(request).ok());
}

void TestTraining::reflowStraightensPaths() {
    // Liu et al.'s claim on a 2-D toy: reflow straightens the paths, so that one Euler step of the
    // 2-rectified flow lands on the data where the 1-rectified flow's does not.
    Trainer first = trainedMoons(1500);
    const QString firstFolder = m_dir.filePath("rf1");
    first.exportBundle(firstFolder.toStdString(), "1-rectified");
    const BundleManifest firstManifest = readBundleManifest(firstFolder.toStdString());

    const auto model = loadBundleModel(firstManifest, false, TrustList(m_dir.filePath("no-list").toStdString()));
    const auto [noise, samples, labels] = makeCouplings(model, 3000, 16, 9);
    TrainSettings reflowSettings = first.settings();
    reflowSettings.couplings = "reflow";
    reflowSettings.iterations = 800;
    Trainer second = makeTrainer(reflowSettings);
    second.initializeFrom(*loadFlowNet(firstManifest));
    second.useCouplings(noise, samples);
    second.run();
    const QString secondFolder = m_dir.filePath("rf2");
    second.exportBundle(secondFolder.toStdString(), "2-rectified");

    Engine engine;
    const torch::Tensor cloud = makePointCloud("moons");
    auto measure = [&](const QString& folder, int steps, double* straightness) {
        SampleRequest request;
        request.model = "bundle:" + folder.toStdString();
        request.batch = 512;
        request.steps = steps;
        request.seed = 100;
        request.device = "cpu";
        const SampleResult result = engine.sample(request);
        if (!result.ok()) qFatal("%s", result.error.c_str());
        if (straightness) *straightness = result.straightness;
        const torch::Tensor x = torch::from_blob(const_cast<float*>(result.final.values.data()), {512, 2}, torch::kFloat32);
        return (std::get<0>(torch::cdist(x, cloud).min(1)) < 0.1).to(torch::kFloat64).mean().item<double>();
    };
    double s1 = 0.0, s2 = 0.0;
    measure(firstFolder, 64, &s1);
    measure(secondFolder, 64, &s2);
    const double oneStep1 = measure(firstFolder, 1, nullptr);
    const double oneStep2 = measure(secondFolder, 1, nullptr);
    qInfo("straightness S: 1-RF %.4f, 2-RF %.4f; on the moons after one Euler step: 1-RF %.2f, 2-RF %.2f", s1, s2,
          oneStep1, oneStep2);
    QVERIFY2(s2 < 0.2 * s1, qPrintable(QString("S %1 -> %2").arg(s1).arg(s2)));
    QVERIFY2(oneStep2 > oneStep1 + 0.4, qPrintable(QString("one step %1 -> %2").arg(oneStep1).arg(oneStep2)));
}

void TestTraining::shippedModelsShowTheReflowClaim() {
    // The bundles in resources/models load without trust, and each 2-rectified flow is far
    // straighter than the 1-rectified flow it came from.
    qputenv("FLOWSCOPE_TRUST_LIST", m_dir.filePath("no-list").toUtf8());
    Engine engine;
    auto straightness = [&](const char* name) {
        SampleRequest request;
        request.model = std::string("bundle:" FLOWSCOPE_SOURCE_DIR "/resources/models/") + name;
        request.batch = 256;
        request.steps = 32;
        request.device = "cpu";
        const SampleResult result = engine.sample(request);
        if (!result.ok()) qFatal("%s: %s", name, result.error.c_str());
        return result.straightness;
    };
    for (const auto& [first, second] : {std::pair{"moons-rectified", "moons-reflow"},
                                        std::pair{"8gaussians-rectified", "8gaussians-reflow"}}) {
        const double s1 = straightness(first);
        const double s2 = straightness(second);
        QVERIFY2(s2 < 0.01 * s1, qPrintable(QString("%1 S %2, %3 S %4").arg(first).arg(s1).arg(second).arg(s2)));
    }
    straightness("moons-distilled");
    straightness("moons-ddpm");
}

void TestTraining::badInputsAreExplained() {
    TrainSettings settings = moonSettings(10);
    settings.objective = "score";
    QVERIFY_THROWS_EXCEPTION(UnknownNameError, makeTrainer(settings));
    settings = moonSettings(10);
    settings.dataset = "bundle:somewhere";
    QVERIFY_THROWS_EXCEPTION(InvalidRequestError, makeTrainer(settings));

    // A checkpoint of other settings, and a damaged one.
    Trainer trainer = makeTrainer(moonSettings(5));
    trainer.run();
    const QString checkpoint = m_dir.filePath("other.safetensors");
    trainer.saveCheckpoint(checkpoint.toStdString());
    TrainSettings other = moonSettings(5);
    other.learningRate = 1e-2;
    Trainer different = makeTrainer(other);
    try {
        different.loadCheckpoint(checkpoint.toStdString());
        QFAIL("loaded a checkpoint of other settings");
    } catch (const InvalidRequestError& error) {  // the request is at odds with the file: exit 2
        QVERIFY2(QString(error.what()).contains("other settings"), error.what());
    }
    std::string bytes = readBytes(checkpoint);
    bytes.resize(bytes.size() / 2);
    writeBytes(checkpoint, bytes);
    Trainer damaged = makeTrainer(moonSettings(5));
    try {
        damaged.loadCheckpoint(checkpoint.toStdString());
        QFAIL("loaded a truncated checkpoint");
    } catch (const std::runtime_error& error) {
        QVERIFY2(QString(error.what()).contains("other.safetensors"), error.what());
    }

    // Missing Fashion-MNIST names the package.
    qputenv("FLOWSCOPE_FASHION_MNIST_DIR", m_dir.filePath("nowhere").toUtf8());
    settings = moonSettings(5);
    settings.dataset = "fashion-mnist";
    try {
        makeTrainer(settings);
        QFAIL("trained without a dataset");
    } catch (const std::exception& error) {
        QVERIFY2(QString(error.what()).contains("dataset-fashion-mnist"), error.what());
    }
    qunsetenv("FLOWSCOPE_FASHION_MNIST_DIR");
}

void TestTraining::averageWarmsUpFromTheWeights() {
    // decay_n = min(ema, (1 + n) / (10 + n)) at update n from 0: the first update keeps a tenth of
    // the initial weights (decay 1/10), the second 2/11 of the average, and from n = 8 on an EMA
    // of 0.5 is reached (9/18) and held.
    TrainSettings settings = moonSettings(40);
    settings.emaDecay = 0.999;
    Trainer trainer = makeTrainer(settings);
    const auto initial = copies(trainer.network());
    trainer.step();
    QVERIFY(isBlend(trainer.average(), 0.1, initial, 0.9, copies(trainer.network())));
    const auto firstAverage = copies(trainer.average());
    trainer.step();
    QVERIFY(isBlend(trainer.average(), 2.0 / 11.0, firstAverage, 9.0 / 11.0, copies(trainer.network())));

    settings.emaDecay = 0.5;
    Trainer capped = makeTrainer(settings);
    for (int n = 0; n < 12; ++n) {
        const auto before = copies(capped.average());
        capped.step();
        const double decay = std::min(0.5, (1.0 + n) / (10.0 + n));
        QVERIFY2(isBlend(capped.average(), decay, before, 1.0 - decay, copies(capped.network())),
                 qPrintable(QString("update %1").arg(n)));
    }
}

void TestTraining::shortRunAverageLeavesTheInitialWeights() {
    // With EMA 0.999 and no warm-up, 300 iterations would leave 0.999^300 = 74% of the initial
    // weights in the average; warmed up their share is 9! 300! / 309! (about 1e-17), and the
    // average sits among the last iterations' weights.
    TrainSettings settings = moonSettings(300);
    settings.emaDecay = 0.999;
    Trainer trainer = makeTrainer(settings);
    const auto initial = copies(trainer.network());
    trainer.run();
    const auto trained = copies(trainer.network());
    const double fromFinal = distance(copies(trainer.average()), trained);
    const double travelled = distance(initial, trained);
    qInfo("the average is %.3f from the final weights, which are %.3f from the initial ones", fromFinal, travelled);
    QVERIFY2(fromFinal < 0.3 * travelled, qPrintable(QString("%1 of %2").arg(fromFinal).arg(travelled)));
}

void TestTraining::damagedCheckpointMetadataIsNamed_data() {
    QTest::addColumn<QString>("field");
    QTest::addColumn<QString>("value");
    QTest::newRow("iteration not a number") << "iteration" << "abc";
    QTest::newRow("iteration too large") << "iteration" << "99999999999999999999";
    QTest::newRow("iteration negative") << "iteration" << "-5";
    QTest::newRow("iteration with a tail") << "iteration" << "12x";
    QTest::newRow("settings not JSON") << "settings" << "{not json";
    QTest::newRow("settings not settings") << "settings" << "[1, 2]";
}

void TestTraining::damagedCheckpointMetadataIsNamed() {
    QFETCH(QString, field);
    QFETCH(QString, value);
    Trainer trainer = makeTrainer(moonSettings(5));
    trainer.run();
    const std::string good = m_dir.filePath("good.safetensors").toStdString();
    const std::string damaged = m_dir.filePath("damaged.safetensors").toStdString();
    trainer.saveCheckpoint(good);
    rewriteMetadata(good, damaged, field.toStdString(), value.toStdString());
    Trainer resumed = makeTrainer(moonSettings(5));
    try {
        resumed.loadCheckpoint(damaged);
        QFAIL("loaded a checkpoint with a damaged field");
    } catch (const InvalidRequestError& error) {
        QFAIL(qPrintable(QString("a damaged file reported as the request's fault: ") + error.what()));
    } catch (const std::runtime_error& error) {
        const QString message = error.what();
        QVERIFY2(message.contains(QString::fromStdString(damaged)) && message.contains("\"" + field + "\"") &&
                     message.contains("start the training over"),
                 error.what());
    }
    QCOMPARE(resumed.iteration(), 0);
}

void TestTraining::checkpointThatIsNoFileIsRefusedPromptly() {
    const QString folder = m_dir.filePath("not-files");
    QVERIFY(QDir().mkpath(folder + "/checkpoint-folder"));
    const std::string fifo = (folder + "/checkpoint-fifo").toStdString();
    QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
    for (const std::string& path : {(folder + "/checkpoint-folder").toStdString(), fifo}) {
        auto load = std::async(std::launch::async, [path] {
            Trainer trainer = makeTrainer(moonSettings(5));
            try {
                trainer.loadCheckpoint(path);
            } catch (const std::runtime_error& error) {
                return std::string(error.what());
            }
            return std::string("loaded");
        });
        if (load.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
            // Blocked opening the FIFO: a writer lets the open return, so the test can end.
            const int writer = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
            if (writer >= 0) ::close(writer);
            load.wait();
            QFAIL(qPrintable(QString::fromStdString("blocked opening '" + path + "'")));
        }
        const std::string message = load.get();
        QVERIFY2(message.find("the checkpoint '" + path + "'") != std::string::npos &&
                     message.find("start the training over") != std::string::npos,
                 message.c_str());
    }
}

void TestTraining::rerunContinuesOneLossLog() {
    // Before the run that checkpointed at 20 (and crashed after logging two more iterations), one
    // had failed at iteration 2 and an old version had started the log over with a second header;
    // the rerun keeps one header and the checkpointed run's 20 lines as they were.
    const QString folder = m_dir.filePath("loss-log");
    TrainOutcome outcome = TrainingJob::run(moonJob(folder, 20));
    QVERIFY2(outcome.ok(), outcome.error.c_str());
    const QStringList first = lossLogLines(folder);
    QCOMPARE(first.size(), 1 + 20);
    writeBytes(folder + "/loss.csv",
               "iteration,loss\n1,0.5\n2,0.25\n" + readBytes(folder + "/loss.csv") + "21,0.5\n22,0.25\n");
    outcome = TrainingJob::run(moonJob(folder, 30));
    QVERIFY2(outcome.ok(), outcome.error.c_str());
    QCOMPARE(outcome.resumedFrom, 20);
    QStringList lines = lossLogLines(folder);
    QCOMPARE(lines.size(), 1 + 30);
    QCOMPARE(lines.mid(0, 21), first);
    for (int i = 1; i <= 30; ++i) QVERIFY2(lines[i].startsWith(QString::number(i) + ","), qPrintable(lines[i]));

    // A run that failed before its first checkpoint left a log and nothing to resume: the rerun
    // starts the log over.
    const QString failed = m_dir.filePath("loss-log-failed");
    QVERIFY(QDir().mkpath(failed));
    writeBytes(failed + "/loss.csv", "iteration,loss\n1,0.5\n2,nan\n");
    outcome = TrainingJob::run(moonJob(failed, 5));
    QVERIFY2(outcome.ok(), outcome.error.c_str());
    lines = lossLogLines(failed);
    QCOMPARE(lines.size(), 1 + 5);
    QCOMPARE(lines.count("iteration,loss"), 1);
    QVERIFY2(lines[2].startsWith("2,") && !lines[2].contains("nan"), qPrintable(lines[2]));
}

// The share of 2-D samples [B, 2] whose nearest 8gaussians component is `component`.
double shareNear(const HostArray& samples, int component) {
    int hits = 0;
    const size_t count = samples.values.size() / 2;
    for (size_t b = 0; b < count; ++b) {
        int nearest = 0;
        double best = 1e300;
        for (int k = 0; k < 8; ++k) {
            const double dx = samples.values[2 * b] - 2.0 * std::cos(k * M_PI / 4.0);
            const double dy = samples.values[2 * b + 1] - 2.0 * std::sin(k * M_PI / 4.0);
            if (dx * dx + dy * dy < best) {
                best = dx * dx + dy * dy;
                nearest = k;
            }
        }
        hits += nearest == component;
    }
    return double(hits) / double(count);
}

void TestTraining::conditionalNetworkLearnsItsClasses() {
    // A conditional rectified flow on 8gaussians (one class per component): sampling a class lands
    // on its component far more often than chance (1/8), and the reflow of it keeps the classes.
    const QString folder = m_dir.filePath("conditional");
    TrainRequest request;
    request.dataset = "gmm:8gaussians";
    request.outDirectory = folder.toStdString();
    request.conditional = true;
    request.width = 128;
    request.batch = 256;
    request.iterations = 1500;
    request.learningRate = 3e-3;
    request.emaDecay = 0.99;
    request.checkpointEvery = 100000;
    const TrainOutcome trained = TrainingJob::run(request);
    QVERIFY2(trained.ok(), trained.error.c_str());
    QCOMPARE(trained.classes.size(), size_t{8});
    const std::string spec = "bundle:" + folder.toStdString();
    QCOMPARE(Engine::describeModel(spec).classes, trained.classes);
    Engine engine;
    SampleRequest sample;
    sample.model = spec;
    sample.solver = "heun";
    sample.steps = 24;
    sample.batch = 256;
    sample.condition = "north";  // component 2
    const SampleResult conditional = engine.sample(sample);
    QVERIFY2(conditional.ok(), conditional.error.c_str());
    const double share = shareNear(conditional.final, 2);
    QVERIFY2(share > 0.7, qPrintable(QString::number(share)));
    // The null class is the whole mixture: no component takes most of it.
    sample.condition.clear();
    const double unconditional = shareNear(engine.sample(sample).final, 2);
    QVERIFY2(unconditional < 0.3, qPrintable(QString::number(unconditional)));
    // Guidance sharpens the class further.
    sample.condition = "west";  // component 4
    const double plain = shareNear(engine.sample(sample).final, 4);
    sample.guidance.method = GuidanceMethod::Cfg;
    sample.guidance.scale = 3.0;
    const SampleResult guided = engine.sample(sample);
    QCOMPARE(guided.forwardPasses, guided.nfe);
    QVERIFY2(shareNear(guided.final, 4) >= plain, qPrintable(QString("%1 vs %2").arg(shareNear(guided.final, 4)).arg(plain)));

    // Reflow keeps the condition, with guidance baked into its couplings.
    TrainRequest reflow;
    reflow.mode = "reflow";
    reflow.source = folder.toStdString();
    reflow.outDirectory = m_dir.filePath("conditional-reflow").toStdString();
    reflow.pairs = 2000;
    reflow.couplingSteps = 16;
    reflow.couplingCfg = 2.0;
    reflow.iterations = 400;
    reflow.checkpointEvery = 100000;
    const TrainOutcome reflowed = TrainingJob::run(reflow);
    QVERIFY2(reflowed.ok(), reflowed.error.c_str());
    QCOMPARE(reflowed.classes, trained.classes);
    sample.model = "bundle:" + reflow.outDirectory;
    sample.guidance = {};
    sample.condition = "south";  // component 6
    const double reflowShare = shareNear(engine.sample(sample).final, 6);
    QVERIFY2(reflowShare > 0.7, qPrintable(QString::number(reflowShare)));

    // Unlabelled data has no classes to learn.
    TrainRequest moons = moonJob(m_dir.filePath("conditional-moons"), 5);
    moons.conditional = true;
    const TrainOutcome refused = TrainingJob::run(moons);
    QCOMPARE(refused.failure, Failure::InvalidRequest);
    QVERIFY2(refused.error.find("no labels") != std::string::npos, refused.error.c_str());
}

void TestTraining::shippedConditionalReflowBakesInGuidance() {
    // resources/models/8gaussians-conditional-reflow was made from 8gaussians-conditional's ODE
    // guided with w = 2: one Euler step of it, unguided, lands where 32 guided steps of its source
    // do, on paths a hundred times straighter.
    qputenv("FLOWSCOPE_TRUST_LIST", m_dir.filePath("no-list").toUtf8());
    Engine engine;
    SampleRequest request;
    request.model = "bundle:" FLOWSCOPE_SOURCE_DIR "/resources/models/8gaussians-conditional";
    request.batch = 1000;
    request.steps = 32;
    request.device = "cpu";
    request.condition = "north";
    request.guidance.method = GuidanceMethod::Cfg;
    request.guidance.scale = 2.0;
    const SampleResult guided = engine.sample(request);
    QVERIFY2(guided.ok(), guided.error.c_str());
    request.model = "bundle:" FLOWSCOPE_SOURCE_DIR "/resources/models/8gaussians-conditional-reflow";
    request.guidance = {};
    request.steps = 1;
    const SampleResult baked = engine.sample(request);
    QVERIFY2(baked.ok(), baked.error.c_str());
    const auto meanY = [](const SampleResult& result) {
        double sum = 0.0;
        for (size_t i = 1; i < result.final.values.size(); i += 2) sum += result.final.values[i];
        return sum / double(result.final.values.size() / 2);
    };
    QVERIFY2(std::abs(meanY(baked) - meanY(guided)) < 0.05, qPrintable(QString("%1 vs %2").arg(meanY(baked)).arg(meanY(guided))));
    QCOMPARE(shareNear(baked.final, 2), 1.0);
    request.steps = 32;
    const SampleResult straight = engine.sample(request);
    QVERIFY2(straight.straightness < 0.01 * guided.straightness,
             qPrintable(QString("S %1 vs %2").arg(straight.straightness).arg(guided.straightness)));
}

void TestTraining::shippedFashionFlowSamplesTheAskedClass() {
    // resources/models/fashion-conditional: for every class, the shipped classifier names the asked
    // class for most of 20 samples (chance: a tenth), and guidance raises that share.
    qputenv("FLOWSCOPE_TRUST_LIST", m_dir.filePath("no-list").toUtf8());
    const std::string classifierPath = shippedClassifierPath();
    QVERIFY(!classifierPath.empty());
    const auto classifier = loadFeatureClassifier(classifierPath);
    Engine engine;
    SampleRequest request;
    request.model = "bundle:" FLOWSCOPE_SOURCE_DIR "/resources/models/fashion-conditional";
    request.batch = 20;
    request.steps = 8;
    request.device = "cpu";
    const auto share = [&](double scale) {
        int hits = 0;
        for (int c = 0; c < 10; ++c) {
            request.condition = std::to_string(c);
            request.guidance = {};
            if (scale != 1.0) {
                request.guidance.method = GuidanceMethod::Cfg;
                request.guidance.scale = scale;
            }
            const SampleResult result = engine.sample(request);
            if (!result.ok()) qFatal("%s", result.error.c_str());
            const torch::Tensor images = torch::tensor(result.final.values).reshape({20, 1, 28, 28}).clamp(-1.0, 1.0);
            torch::NoGradGuard noGrad;
            hits += (classifier->forward(images).argmax(1) == c).sum().item<int>();
        }
        return hits / 200.0;
    };
    const double plain = share(1.0);
    QVERIFY2(plain > 0.7, qPrintable(QString::number(plain)));
    const double guided = share(3.0);
    QVERIFY2(guided >= plain, qPrintable(QString("%1 vs %2").arg(guided).arg(plain)));
}

QTEST_GUILESS_MAIN(TestTraining)
#include "tst_training.moc"
