// Bring-your-own models: the bundle manifest, SHA-256 and the trusted list, and TorchScript
// networks of every parameterization, native path and time convention checked against the
// closed-form answer for Gaussian data (fixtures made by resources/fixtures/make_bundles.py).
#include <cmath>
#include <filesystem>

#include <QtTest/QtTest>

#include <torch/script.h>
#include <torch/torch.h>

#include "core/api/Engine.h"
#include "core/api/Errors.h"
#include "core/io/SafeTensors.h"
#include "core/io/Sha256.h"
#include "core/models/Bundle.h"
#include "core/models/FlowNet.h"
#include "core/models/TrustList.h"
#include "core/sampling/ProbabilityPath.h"
#include "tests/TestSupport.h"

using namespace flowscope::core;
using flowscope::test::maxAbsDiff;
using flowscope::test::readBytes;
using flowscope::test::writeBytes;
namespace fs = std::filesystem;

namespace {

const QString kFixtures = QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/fixtures/bundles/");
constexpr double kStd = 0.4;  // make_bundles.py: STD

std::string fixture(const QString& name) { return (kFixtures + name).toStdString(); }

// make_bundles.py's mean: 0.5 sin(0.7 k + 0.3) over the flattened sample, stored as float32.
torch::Tensor gaussianMean(std::vector<int64_t> shape) {
    int64_t count = 1;
    for (auto d : shape) count *= d;
    const auto k = torch::arange(count, torch::kFloat64);
    return (0.5 * torch::sin(0.7 * k + 0.3)).to(torch::kFloat32).to(torch::kFloat64).reshape(shape);
}

torch::Tensor fromHost(const HostArray& array) {
    return torch::from_blob(const_cast<float*>(array.values.data()), array.shape, torch::kFloat32)
        .clone()
        .to(torch::kFloat64);
}

// The exact probability-flow ODE for data N(m, s^2 I): the whitened noise
// z = (x - alpha m) / sqrt(alpha^2 s^2 + sigma^2) is constant along the path, so from x at the
// start point the run lands on alpha_1 m + sqrt(alpha_1^2 s^2 + sigma_1^2) z (m + s z at t = 1).
torch::Tensor exactEnd(const torch::Tensor& start, const torch::Tensor& mean, double std, const PathPoint& from,
                       const PathPoint& to) {
    const torch::Tensor z =
        (start - from.alpha * mean) / std::sqrt(from.alpha * from.alpha * std * std + from.sigma * from.sigma);
    return to.alpha * mean + std::sqrt(to.alpha * to.alpha * std * std + to.sigma * to.sigma) * z;
}

SampleRequest bundleRequest(const QString& name) {
    SampleRequest request;
    request.model = "bundle:" + fixture(name);
    request.batch = 3;
    request.seed = 11;
    request.device = "cpu";
    request.trustModel = true;
    return request;
}

// A copy of a fixture bundle in a temporary folder, for tests that edit it, and a request for it.
QString copyBundle(const QTemporaryDir& dir, const QString& name, SampleRequest* request) {
    const QString target = dir.filePath(name);
    fs::copy(fixture(name), target.toStdString(), fs::copy_options::recursive);
    *request = bundleRequest(name);
    request->model = "bundle:" + target.toStdString();
    return target;
}

std::string manifestWith(const std::string& field, const std::string& json) {
    // Written out in full so each case controls exactly one field.
    std::map<std::string, std::string> fields{
        {"name", "\"test\""},          {"format", "\"torchscript\""}, {"file", "\"model.pt\""},
        {"prediction", "\"velocity\""}, {"path", "\"linear\""},         {"time_input", "\"t\""},
        {"sample_shape", "[1, 6, 6]"}, {"value_range", "[-1, 1]"}};
    if (json.empty()) {
        fields.erase(field);
    } else {
        fields[field] = json;
    }
    std::string text = "{";
    for (const auto& [key, value] : fields) text += (text.size() > 1 ? ", \"" : "\"") + key + "\": " + value;
    return text + "}";
}

}  // namespace

class TestBundle : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase();
    void init();
    void sha256MatchesPublishedVectors();
    void sha256OfFixturesMatchesPython();
    void trustListReadsAndWritesSha256sumFormat();
    void manifestRejectsEachBadField_data();
    void manifestRejectsEachBadField();
    void manifestReadsOptionalFields();
    void missingFolderOrManifestSaySo();
    void everyParameterizationLandsOnTheClosedForm_data();
    void everyParameterizationLandsOnTheClosedForm();
    void conditioningIsPassedAfterTime();
    void latentBundlePreviewsAndDecodes();
    void encoderStartsALatentRunFromAnImage();
    void untrustedProgramIsRefused();
    void trustedListAllowsLoading();
    void inspectHashesWithoutLoading();
    void damagedOrForeignFilesAreRefused();
    void wrongShapeNamesBothShapes();
    void nanStopsTheRunNamingTheStep();
    void throwingForwardReachesTheUserAndNextRunWorks();
    void float64OutputIsConverted();
    void changedBundleIsReloaded();
    void conditioningMustMatchForwardArguments();
    void conditioningFilesPerRunAndGuidedByThem();
    void parameterCountOfMatchesTheBuiltNetwork();
    void architectureThatIsNotTheWeightsIsRefusedBeforeBuilding();
    void classesReachATorchScriptNetwork();

private:
    QTemporaryDir m_config;
};

void TestBundle::initTestCase() {
    QVERIFY(m_config.isValid());
    c10::InferenceMode inference;
}

void TestBundle::init() {
    // Each test starts from an empty trusted list.
    const QString list = m_config.filePath("trusted-models");
    QFile::remove(list);
    qputenv("FLOWSCOPE_TRUST_LIST", list.toUtf8());
}

void TestBundle::sha256MatchesPublishedVectors() {
    // FIPS 180-2 appendix B and the NIST one-million-'a' vector.
    QCOMPARE(sha256Hex(""), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    QCOMPARE(sha256Hex("abc"), std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    QCOMPARE(sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
             std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    const std::string million(1'000'000, 'a');
    QCOMPARE(sha256Hex(million), std::string("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    // Fed in uneven pieces (crossing block boundaries) it gives the same digest.
    Sha256 pieces;
    for (size_t at = 0, piece = 1; at < million.size(); at += piece, piece = piece * 3 % 97 + 1) {
        pieces.update(std::string_view(million).substr(at, piece));
    }
    QCOMPARE(pieces.hexDigest(), sha256Hex(million));
}

void TestBundle::sha256OfFixturesMatchesPython() {
    // The manifests' hashes were written by Python's hashlib: an independent implementation.
    for (const QString name : {"gauss-velocity-linear", "gauss-epsilon-vp", "latent"}) {
        const BundleManifest manifest = readBundleManifest(fixture(name));
        QCOMPARE(sha256OfFile(manifest.resolve(manifest.file)), manifest.sha256);
    }
}

void TestBundle::trustListReadsAndWritesSha256sumFormat() {
    const QString path = m_config.filePath("nested/folder/list");
    const TrustList list(path.toStdString());
    const std::string a(64, 'a');
    const std::string b = sha256Hex("b");
    QVERIFY(!list.contains(a));  // no file yet
    list.add(a, "first.pt");
    list.add(b, "second\nfile.pt");
    list.add(a, "again.pt");  // already there: not repeated
    QVERIFY(list.contains(a));
    QVERIFY(list.contains(b));
    QCOMPARE(readBytes(path), a + "  first.pt\n" + b + "  second file.pt\n");
    // Hand-edited lines that are not "<hash>  <file>" are ignored, and a prefix is not a match.
    writeBytes(path, "# my models\n" + std::string(63, 'c') + "  short.pt\n" + std::string(64, 'D') +
                         "  upper.pt\n" + a + "x  glued.pt\n");
    QVERIFY(!list.contains(std::string(63, 'c')));
    QVERIFY(!list.contains(std::string(64, 'D')));
    QVERIFY(!list.contains(a));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, list.add("not-a-hash", "x.pt"));
}

void TestBundle::manifestRejectsEachBadField_data() {
    QTest::addColumn<QString>("field");
    QTest::addColumn<QString>("json");
    QTest::addColumn<QString>("expected");
    for (const auto& field : bundleFields()) {
        QTest::addRow("missing %s", field.c_str()) << QString::fromStdString(field) << "" << "is missing";
    }
    QTest::newRow("format") << "format" << "\"onnx\"" << "allowed: torchscript";
    QTest::newRow("prediction") << "prediction" << "\"score\"" << "allowed: velocity, epsilon, data, v";
    QTest::newRow("path") << "path" << "\"edm\"" << "allowed: linear, vp, cosine, ve";
    QTest::newRow("time_input") << "time_input" << "\"steps\"" << "allowed: t, sigma, timestep1000";
    QTest::newRow("v on linear") << "prediction" << "\"v\"" << "vp or cosine";
    QTest::newRow("name type") << "name" << "3" << "non-empty string";
    QTest::newRow("file absolute") << "file" << "\"/etc/passwd\"" << "relative";
    QTest::newRow("file climbs") << "file" << "\"../other/model.pt\"" << "inside the bundle folder";
    QTest::newRow("shape rank") << "sample_shape" << "[28, 28]" << "[C, H, W]";
    QTest::newRow("shape zero") << "sample_shape" << "[1, 0, 28]" << "whole numbers";
    QTest::newRow("shape fraction") << "sample_shape" << "[1, 2.5, 28]" << "whole numbers";
    QTest::newRow("shape huge") << "sample_shape" << "[65536, 65536, 65536]" << "too large";
    QTest::newRow("range order") << "value_range" << "[1, -1]" << "low < high";
    QTest::newRow("range type") << "value_range" << "[\"a\", 1]" << "finite numbers";
    QTest::newRow("range length") << "value_range" << "[0]" << "[low, high]";
    QTest::newRow("sha256") << "sha256" << "\"ABC\"" << "64 lowercase hex digits";
    QTest::newRow("latent_rgb rows") << "latent_rgb" << "{\"factors\": [[1, 0, 0], [0, 1, 0]]}"
                                     << "one [r, g, b] row per latent channel (1)";
    QTest::newRow("latent_rgb row") << "latent_rgb" << "{\"factors\": [[1, 0]]}" << "rows must be [r, g, b]";
    QTest::newRow("conditioning") << "conditioning" << "\"\"" << "non-empty string";
}

void TestBundle::manifestRejectsEachBadField() {
    QFETCH(QString, field);
    QFETCH(QString, json);
    QFETCH(QString, expected);
    const std::string text = manifestWith(field.toStdString(), json.toStdString());
    try {
        parseBundleManifest(text, "some/bundle");
        QFAIL(qPrintable("accepted: " + QString::fromStdString(text)));
    } catch (const BundleError& error) {
        const QString message = QString::fromUtf8(error.what());
        QVERIFY2(message.contains("\"" + field + "\""), qPrintable(message));
        QVERIFY2(message.contains(expected), qPrintable(message));
        QVERIFY2(message.contains("some/bundle/flowscope.json"), qPrintable(message));
    }
}

void TestBundle::manifestReadsOptionalFields() {
    const BundleManifest latent = readBundleManifest(fixture("latent"));
    QCOMPARE(latent.sampleShape, (std::vector<int64_t>{4, 3, 3}));
    QCOMPARE(latent.decoder, std::string("decoder.pt"));
    QVERIFY(latent.latentRgb.has_value());
    QCOMPARE(latent.latentRgb->factors.size(), size_t{4});
    QCOMPARE(latent.latentRgb->factors[2][2], 0.9);
    QCOMPARE(latent.latentRgb->bias[1], -0.05);
    QVERIFY(latent.isLatent());
    QCOMPARE(latent.programFiles(), (std::vector<std::string>{"model.pt", "decoder.pt"}));

    const BundleManifest conditioned = readBundleManifest(fixture("gauss-conditioned"));
    QCOMPARE(conditioned.conditioning, std::string("conditioning.safetensors"));
    QVERIFY(!conditioned.isLatent());

    try {
        parseBundleManifest("{\"name\": \"x\",}", "b");
        QFAIL("accepted a trailing comma");
    } catch (const BundleError& error) {
        QVERIFY(QString(error.what()).contains("not valid JSON"));
    }
    QVERIFY_THROWS_EXCEPTION(BundleError, parseBundleManifest("[1, 2]", "b"));
}

void TestBundle::missingFolderOrManifestSaySo() {
    QTemporaryDir empty;
    Engine engine;
    SampleRequest request = bundleRequest("none");
    request.model = "bundle:" + empty.filePath("missing").toStdString();
    SampleResult result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(QString::fromStdString(result.error).contains("is not a folder"), result.error.c_str());
    request.model = "bundle:" + empty.path().toStdString();
    result = engine.sample(request);
    QVERIFY2(QString::fromStdString(result.error).contains("no flowscope.json"), result.error.c_str());
    request.model = "bundle:";
    result = engine.sample(request);
    QVERIFY2(QString::fromStdString(result.error).contains("give a folder after 'bundle:'"), result.error.c_str());
}

void TestBundle::everyParameterizationLandsOnTheClosedForm_data() {
    QTest::addColumn<QString>("bundle");
    QTest::addColumn<QString>("path");
    const QStringList bundles{"gauss-velocity-linear", "gauss-epsilon-vp",          "gauss-data-cosine",
                              "gauss-v-vp",            "gauss-velocity-linear-sigma", "gauss-epsilon-vp-timestep1000"};
    for (const auto& bundle : bundles) {
        for (const char* path : {"linear", "vp", "cosine"}) {
            QTest::addRow("%s along %s", qPrintable(bundle), path) << bundle << QString(path);
        }
    }
}

void TestBundle::everyParameterizationLandsOnTheClosedForm() {
    QFETCH(QString, bundle);
    QFETCH(QString, path);
    Engine engine;
    SampleRequest request = bundleRequest(bundle);
    request.path = path.toStdString();
    request.solver = "dopri5";
    request.rtol = 1e-8;
    request.atol = 1e-8;
    request.dtype = "float64";
    const SampleResult result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());

    const auto sampled = makePath(request.path);
    const torch::Tensor mean = gaussianMean({1, 6, 6});
    const torch::Tensor expected = exactEnd(fromHost(result.initial), mean, kStd, sampled->at(result.times.front()),
                                            sampled->at(result.times.back()));
    const double error = maxAbsDiff(fromHost(result.final), expected);
    // dopri5 integrates to t = 1 - 1e-3 and lands with a first-order step on x̂0 there (DESIGN.md).
    // For this data x̂0 = m + s z / sqrt(1 + r^2/s^2) with r = sigma/alpha, so that step leaves
    // |z| r^2 / (2 s); the rest (float32 network, solver tolerance, clamped start) stays below 1e-4.
    const auto beforeEnd = sampled->at(1.0 - 1e-3);
    const double ratio = beforeEnd.sigma / beforeEnd.alpha;
    const double zMax = (fromHost(result.initial) / sampled->at(result.times.front()).sigma).abs().max().item<double>();
    const double bound = zMax * ratio * ratio / (2.0 * kStd) + 1e-4;
    QVERIFY2(error < bound, qPrintable(QString("max error %1, bound %2").arg(error).arg(bound)));
    qInfo("max |x_end - exact| = %.2e (bound %.2e), NFE %d", error, bound, result.nfe);
    // Against m + s z itself, z the drawn noise (the start x = sigma(t0) z up to alpha(t0) m).
    const auto start = sampled->at(result.times.front());
    const torch::Tensor z = fromHost(result.initial) / start.sigma;
    QVERIFY(maxAbsDiff(fromHost(result.final), mean + kStd * z) < bound + 2.0 * start.alpha);

    // The run says the start was clamped where re-timing clamps it: where it is noisier than
    // anything the native path reaches (below its lambda(0)). An epsilon network is also held above
    // lambda = -log 80 on its own path, FlowScope's working range and no choice of the user's: no note.
    const BundleManifest manifest = readBundleManifest(fixture(bundle));
    const auto native = makePath(manifest.path);
    const bool clampedStart = sampled->lambda(result.times.front()) < native->lambda(0.0) - 1e-9;
    bool noted = false;
    for (const auto& note : result.notes) noted = noted || QString::fromStdString(note).contains("noisiest end");
    QCOMPARE(noted, clampedStart);
}

void TestBundle::conditioningIsPassedAfterTime() {
    // The conditioning file holds mean = -m and std = 0.25 for one sample; the network raises
    // unless `mean` arrives broadcast to the batch.
    Engine engine;
    SampleRequest request = bundleRequest("gauss-conditioned");
    request.solver = "dopri5";
    request.rtol = request.atol = 1e-8;
    request.dtype = "float64";
    const SampleResult result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    const auto path = makePath("linear");
    const torch::Tensor expected = exactEnd(fromHost(result.initial), -gaussianMean({1, 6, 6}), 0.25,
                                            path->at(result.times.front()), path->at(1.0));
    QVERIFY(maxAbsDiff(fromHost(result.final), expected) < 1e-3);
}

void TestBundle::latentBundlePreviewsAndDecodes() {
    Engine engine;
    SampleRequest request = bundleRequest("latent");
    request.steps = 6;
    request.solver = "heun";
    request.decodeEvery = 2;
    request.recordTrajectory = true;
    const BundleManifest manifest = readBundleManifest(fixture("latent"));
    std::vector<double> factors;
    for (const auto& row : manifest.latentRgb->factors) factors.insert(factors.end(), row.begin(), row.end());
    const torch::Tensor weight = torch::tensor(factors, torch::kFloat64).reshape({4, 3});
    const torch::Tensor bias =
        torch::tensor(std::vector<double>(manifest.latentRgb->bias.begin(), manifest.latentRgb->bias.end()),
                      torch::kFloat64)
            .reshape({1, 3, 1, 1});
    auto upsample = [](const torch::Tensor& image) { return image.repeat_interleave(2, 2).repeat_interleave(2, 3); };
    auto rgb = [&](const torch::Tensor& latent) { return upsample(torch::einsum("bchw,cr->brhw", {latent, weight}) + bias); };
    // decoder.pt: the same 1x1 mix through tanh, then 2x nearest.
    auto decoded = [&](const torch::Tensor& latent) { return upsample(torch::tanh(torch::einsum("bchw,cr->brhw", {latent, weight}) + bias)); };

    int frames = 0;
    int decodedFrames = 0;
    const SampleResult result = engine.sample(request, [&](const StepFrame& frame) {
        ++frames;
        QCOMPARE(frame.state.shape, (std::vector<int64_t>{3, 4, 3, 3}));
        QCOMPARE(frame.statePreview.shape, (std::vector<int64_t>{3, 3, 6, 6}));
        QCOMPARE(frame.predictionPreview.shape, (std::vector<int64_t>{3, 3, 6, 6}));
        QCOMPARE(frame.decoded, frame.final || frame.index % 2 == 0);
        decodedFrames += frame.decoded;
        const torch::Tensor prediction = fromHost(frame.prediction);
        const torch::Tensor expected = frame.decoded ? decoded(prediction) : rgb(prediction);
        QVERIFY(maxAbsDiff(fromHost(frame.predictionPreview), expected) < 1e-5);
        if (!frame.final) QVERIFY(maxAbsDiff(fromHost(frame.statePreview), rgb(fromHost(frame.state))) < 1e-5);
    });
    QVERIFY2(result.ok(), result.error.c_str());
    QCOMPARE(frames, 7);
    QCOMPARE(decodedFrames, 4);  // steps 0, 2, 4 and the final frame
    QCOMPARE(result.finalImage.shape, (std::vector<int64_t>{3, 3, 6, 6}));
    QVERIFY(maxAbsDiff(fromHost(result.finalImage), decoded(fromHost(result.final))) < 1e-5);
    QCOMPARE(result.trajectoryImages.shape, (std::vector<int64_t>{7, 3, 3, 6, 6}));
    QCOMPARE(result.predictionImages.shape, (std::vector<int64_t>{7, 3, 3, 6, 6}));
    const torch::Tensor trajectory = fromHost(result.trajectory);
    QVERIFY(maxAbsDiff(fromHost(result.trajectoryImages)[2], rgb(trajectory[2])) < 1e-5);
}

// A latent bundle with an "encoder" starts image to image from pictures: the run's first state
// is alpha E(image) + sigma eps with E the encoder (here: 2x2 average pooling, then a fixed 1x1
// mix of the three colours into four latent channels) and eps the seed's noise.
void TestBundle::encoderStartsALatentRunFromAnImage() {
    QTemporaryDir dir;
    SampleRequest request;
    const QString folder = copyBundle(dir, "latent", &request);
    {
        torch::jit::Module encoder("Encoder");
        encoder.register_buffer("mix", torch::tensor({0.5, -0.25, 0.125, 1.0, 0.25, 0.5, -0.5, 0.0, -0.125, 0.25, 0.75, -1.0})
                                           .reshape({3, 4}));
        encoder.define(R"(
def forward(self, images):
    pooled = torch.avg_pool2d(images, [2, 2])
    return torch.einsum("bchw,cl->blhw", [pooled, self.mix])
)");
        encoder.save((folder + "/encoder.pt").toStdString());
    }
    QFile manifest(folder + "/flowscope.json");
    QVERIFY(manifest.open(QIODevice::ReadOnly));
    QByteArray json = manifest.readAll();
    manifest.close();
    json.replace("\"decoder\": \"decoder.pt\"", "\"decoder\": \"decoder.pt\", \"encoder\": \"encoder.pt\"");
    QVERIFY(manifest.open(QIODevice::WriteOnly | QIODevice::Truncate));
    manifest.write(json);
    manifest.close();
    QVERIFY(Engine::describeModel(request.model).encodesImages);
    const BundleInfo info = Engine::inspectBundle(folder.toStdString());
    QCOMPARE(info.programs.size(), size_t(3));

    Engine engine;
    SampleRequest plain = request;
    const SampleResult noise = engine.sample(plain);
    QVERIFY2(noise.ok(), noise.error.c_str());
    torch::manual_seed(3);
    const torch::Tensor image = torch::rand({1, 3, 6, 6}) * 2.0 - 1.0;
    request.start.kind = RunStart::Kind::Image;
    request.start.time = 0.4;
    request.start.image.shape = {1, 3, 6, 6};
    request.start.image.values.assign(image.data_ptr<float>(), image.data_ptr<float>() + image.numel());
    const SampleResult run = engine.sample(request);
    QVERIFY2(run.ok(), run.error.c_str());
    const torch::Tensor mix = torch::tensor({0.5, -0.25, 0.125, 1.0, 0.25, 0.5, -0.5, 0.0, -0.125, 0.25, 0.75, -1.0}).reshape({3, 4});
    const torch::Tensor latent = torch::einsum("bchw,cl->blhw", {torch::avg_pool2d(image, 2), mix});
    // The linear path's t0 = 0: a plain run's first state is the seed's noise itself.
    const torch::Tensor expected = 0.4 * latent + 0.6 * fromHost(noise.initial);
    QVERIFY(maxAbsDiff(fromHost(run.initial), expected) < 1e-5);
    QCOMPARE(run.times.front(), 0.4);
    // Pictures of the wrong size reach the encoder, whose failure names it.
    request.start.image = {{1, 3, 5, 5}, std::vector<float>(75, 0.f)};
    const SampleResult wrong = engine.sample(request);
    QVERIFY(!wrong.ok());
    QVERIFY2(wrong.error.find("encoder") != std::string::npos, wrong.error.c_str());
}

void TestBundle::untrustedProgramIsRefused() {
    Engine engine;
    SampleRequest request = bundleRequest("gauss-velocity-linear");
    request.trustModel = false;
    const SampleResult result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    const QString message = QString::fromStdString(result.error);
    const BundleManifest manifest = readBundleManifest(fixture("gauss-velocity-linear"));
    QVERIFY2(message.contains("TorchScript program"), qPrintable(message));
    QVERIFY2(message.contains(QString::fromStdString(manifest.sha256)), qPrintable(message));
    QVERIFY2(message.contains("--trust-model"), qPrintable(message));
    QVERIFY2(message.contains(QString::fromStdString(TrustList::defaultPath())), qPrintable(message));
    // A sweep is refused the same way.
    SweepRequest sweep;
    sweep.model = request.model;
    sweep.steps = {2};
    sweep.device = "cpu";
    QVERIFY(QString::fromStdString(engine.sweep(sweep).error).contains("TorchScript program"));
}

void TestBundle::trustedListAllowsLoading() {
    Engine engine;
    SampleRequest request = bundleRequest("latent");
    request.trustModel = false;
    const BundleInfo info = Engine::inspectBundle(fixture("latent"));
    QVERIFY(info.ok);
    // Trusting the model alone is not enough: the decoder is a program too.
    std::string error;
    QVERIFY(Engine::trustProgram(info.programs.at(0), &error));
    SampleResult result = engine.sample(request);
    QVERIFY2(QString::fromStdString(result.error).contains("decoder.pt"), result.error.c_str());
    QVERIFY(Engine::trustProgram(info.programs.at(1), &error));
    result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
}

void TestBundle::inspectHashesWithoutLoading() {
    const BundleInfo info = Engine::inspectBundle(fixture("latent"));
    QVERIFY2(info.ok, info.error.c_str());
    QCOMPARE(info.name, std::string("latent gaussian"));
    QVERIFY(info.latent);
    QCOMPARE(info.programs.size(), size_t{2});
    QCOMPARE(info.programs[0].sha256, readBundleManifest(fixture("latent")).sha256);
    QCOMPARE(info.programs[1].sha256, sha256OfFile(fixture("latent/decoder.pt")));
    QVERIFY(info.needsTrust());
    for (const auto& program : info.programs) QVERIFY(Engine::trustProgram(program, nullptr));
    QVERIFY(!Engine::inspectBundle(fixture("latent")).needsTrust());

    const BundleInfo missing = Engine::inspectBundle(fixture("no-such-bundle"));
    QVERIFY(!missing.ok);
    QVERIFY(QString::fromStdString(missing.error).contains("is not a folder"));
}

void TestBundle::damagedOrForeignFilesAreRefused() {
    QTemporaryDir dir;
    SampleRequest request;
    const QString bundle = copyBundle(dir, "gauss-velocity-linear", &request);
    Engine engine;

    // One changed byte: the declared sha256 no longer matches.
    std::string bytes = readBytes(bundle + "/model.pt");
    bytes[bytes.size() / 2] ^= 0x01;
    writeBytes(bundle + "/model.pt", bytes);
    SampleResult result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(QString::fromStdString(result.error).contains("does not match the sha256"), result.error.c_str());

    // Without a declared hash, a file that is not TorchScript is named as such.
    const std::string manifest = readBytes(bundle + "/flowscope.json");
    const auto at = manifest.find("\"sha256\"");
    const auto end = manifest.find('\n', at);
    writeBytes(bundle + "/flowscope.json", manifest.substr(0, at) + "\"unused\": 0," + manifest.substr(end));
    writeBytes(bundle + "/model.pt", "these bytes are not a TorchScript archive");
    result = engine.sample(request);
    QVERIFY2(QString::fromStdString(result.error).contains("is not a TorchScript file"), result.error.c_str());

    // A missing model file names the field and the folder.
    QFile::remove(bundle + "/model.pt");
    result = engine.sample(request);
    QVERIFY2(QString::fromStdString(result.error).contains("\"file\""), result.error.c_str());
    QVERIFY2(QString::fromStdString(result.error).contains("not a file"), result.error.c_str());
}

void TestBundle::wrongShapeNamesBothShapes() {
    Engine engine;
    const SampleResult result = engine.sample(bundleRequest("faulty-wrong-shape"));
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(QString::fromStdString(result.error).contains("[3, 1, 6, 5]"), result.error.c_str());
    QVERIFY2(QString::fromStdString(result.error).contains("[3, 1, 6, 6]"), result.error.c_str());
}

void TestBundle::nanStopsTheRunNamingTheStep() {
    // faulty-nan answers NaN from t = 0.5: with 8 uniform Euler steps that is step 4.
    Engine engine;
    SampleRequest request = bundleRequest("faulty-nan");
    request.steps = 8;
    int frames = 0;
    const SampleResult result = engine.sample(request, [&](const StepFrame&) { ++frames; });
    QCOMPARE(result.failure, Failure::Runtime);
    QVERIFY2(QString::fromStdString(result.error).contains("NaN or Inf at step 4"), result.error.c_str());
    QCOMPARE(frames, 4);
}

void TestBundle::throwingForwardReachesTheUserAndNextRunWorks() {
    Engine engine;
    SampleRequest request = bundleRequest("faulty-throws");
    SampleResult result = engine.sample(request);
    QCOMPARE(result.failure, Failure::Runtime);
    QVERIFY2(QString::fromStdString(result.error).contains("this network refuses to run past t = 0.5"),
             result.error.c_str());
    QVERIFY2(!QString::fromStdString(result.error).contains("Traceback"), result.error.c_str());
    // The same engine (and the same cached network) runs again when the request avoids t >= 0.5.
    request.tEnd = 0.4;
    result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    QVERIFY(engine.sample(bundleRequest("gauss-velocity-linear")).ok());
}

void TestBundle::float64OutputIsConverted() {
    Engine engine;
    SampleRequest request = bundleRequest("faulty-float64");
    request.solver = "rk4";
    request.steps = 40;
    const SampleResult result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    const auto path = makePath("linear");
    const torch::Tensor expected =
        exactEnd(fromHost(result.initial), gaussianMean({1, 6, 6}), kStd, path->at(0.0), path->at(1.0));
    QVERIFY(maxAbsDiff(fromHost(result.final), expected) < 1e-2);
}

void TestBundle::changedBundleIsReloaded() {
    QTemporaryDir dir;
    SampleRequest request;
    const QString bundle = copyBundle(dir, "gauss-velocity-linear", &request);
    Engine engine;
    request.steps = 2;
    QVERIFY(engine.sample(request).ok());
    // The user re-exports: the folder now holds a network that answers NaN past t = 0.5.
    fs::copy(fixture("faulty-nan/model.pt"), (bundle + "/model.pt").toStdString(), fs::copy_options::overwrite_existing);
    fs::copy(fixture("faulty-nan/flowscope.json"), (bundle + "/flowscope.json").toStdString(),
             fs::copy_options::overwrite_existing);
    const SampleResult result = engine.sample(request);
    QVERIFY2(QString::fromStdString(result.error).contains("NaN"), result.error.c_str());
}

void TestBundle::conditioningMustMatchForwardArguments() {
    QTemporaryDir dir;
    SampleRequest request;
    const QString bundle = copyBundle(dir, "gauss-conditioned", &request);
    Engine engine;
    // Without its conditioning file the network lacks `mean` and `std`.
    const std::string manifest = readBytes(bundle + "/flowscope.json");
    std::string without = manifest;
    without.replace(without.find("\"conditioning\""), std::string("\"conditioning\"").size(), "\"unused_field\"");
    writeBytes(bundle + "/flowscope.json", without);
    SampleResult result = engine.sample(request);
    QVERIFY2(QString::fromStdString(result.error).contains("needs the argument 'mean'"), result.error.c_str());
    // A tensor the network has no argument for is named with the arguments it does take.
    writeBytes(bundle + "/flowscope.json", manifest);
    const torch::Tensor extra = torch::ones({2});
    flowscope::core::writeSafeTensors((bundle + "/conditioning.safetensors").toStdString(),
                                      {{"mean", torch::zeros({1, 6, 6})}, {"std", torch::ones({1})}, {"prompt", extra}});
    result = engine.sample(request);
    QVERIFY2(QString::fromStdString(result.error).contains("'prompt'"), result.error.c_str());
    QVERIFY2(QString::fromStdString(result.error).contains("x, time, mean, std"), result.error.c_str());
}

void TestBundle::conditioningFilesPerRunAndGuidedByThem() {
    // Per run, --cond replaces the manifest's tensors and --uncond gives the null rows theirs
    // (zeros without it): the network's forward takes `mean` and `std` of a Gaussian.
    QTemporaryDir dir;
    const torch::Tensor mean = gaussianMean({1, 6, 6}).to(torch::kFloat32);
    const torch::Tensor other = (0.3 * torch::cos(torch::arange(36, torch::kFloat32))).reshape({1, 6, 6});
    const std::string cond = dir.filePath("cond.safetensors").toStdString();
    const std::string uncond = dir.filePath("uncond.safetensors").toStdString();
    writeSafeTensors(cond, {{"mean", mean}, {"std", torch::full({1}, 0.4)}});
    writeSafeTensors(uncond, {{"mean", other}, {"std", torch::full({1}, 0.3)}});
    Engine engine;
    SampleRequest request = bundleRequest("gauss-conditioned");
    request.solver = "dopri5";
    request.rtol = request.atol = 1e-8;
    request.dtype = "float64";
    request.text.conditioning = cond;
    SampleResult result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    const auto path = makePath("linear");
    auto landsOn = [&](const SampleResult& run, const torch::Tensor& m, double std) {
        const torch::Tensor expected =
            exactEnd(fromHost(run.initial), m.to(torch::kFloat64), std, path->at(run.times.front()), path->at(1.0));
        return maxAbsDiff(fromHost(run.final), expected) < 1e-3;
    };
    QVERIFY(landsOn(result, mean, 0.4));
    // The next run without files is the manifest's again (mean -m, std 0.25).
    request.text.conditioning.clear();
    result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    QVERIFY(landsOn(result, -mean, 0.25));

    // One Euler step from t = 0 lands on the guided x̂0 of pure noise, which for Gaussians is
    // D = m_u + w (m_c - m_u) whatever the noise; both halves go in one batch of 2B rows.
    request.solver = "euler";
    request.steps = 1;
    request.text.conditioning = cond;
    request.text.unconditioning = uncond;
    request.guidance.method = GuidanceMethod::Cfg;
    request.guidance.scale = 3.0;
    result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    const torch::Tensor guided = (other + 3.0 * (mean - other)).to(torch::kFloat64).unsqueeze(0).expand({3, 1, 6, 6});
    QVERIFY2(maxAbsDiff(fromHost(result.final), guided) < 1e-5, std::to_string(maxAbsDiff(fromHost(result.final), guided)).c_str());
    // Without --uncond the unconditional tensors are zeros: D = w m_c.
    request.text.unconditioning.clear();
    result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    QVERIFY(maxAbsDiff(fromHost(result.final), (3.0 * mean).to(torch::kFloat64).unsqueeze(0).expand({3, 1, 6, 6})) < 1e-5);
    // w = 1 is the conditional model and w = 0 the unconditional one, at any step count.
    request.steps = 4;
    request.solver = "heun";
    request.text.unconditioning = uncond;
    request.guidance.scale = 1.0;
    const SampleResult one = engine.sample(request);
    request.guidance.scale = 0.0;
    const SampleResult zero = engine.sample(request);
    request.guidance = {};
    const SampleResult conditional = engine.sample(request);
    request.text.conditioning = uncond;
    request.text.unconditioning.clear();
    const SampleResult unconditional = engine.sample(request);
    for (const auto* run : {&one, &zero, &conditional, &unconditional}) QVERIFY2(run->ok(), run->error.c_str());
    QVERIFY(maxAbsDiff(fromHost(one.final), fromHost(conditional.final)) < 1e-12);
    QVERIFY(maxAbsDiff(fromHost(zero.final), fromHost(unconditional.final)) < 1e-12);

    // Files that do not fit are refused in words, and the run's tensors stay as they were.
    const auto refused = [&](const std::string& condFile, const std::string& uncondFile, const QString& expected) {
        SampleRequest bad = bundleRequest("gauss-conditioned");
        bad.text.conditioning = condFile;
        bad.text.unconditioning = uncondFile;
        const SampleResult failed = engine.sample(bad);
        if (failed.ok() || !QString::fromStdString(failed.error).contains(expected)) {
            qWarning("expected '%s', got '%s'", qPrintable(expected), failed.error.c_str());
            return false;
        }
        return true;
    };
    const std::string wrongShape = dir.filePath("wrong.safetensors").toStdString();
    writeSafeTensors(wrongShape, {{"mean", torch::zeros({1, 3, 3})}, {"std", torch::ones({1})}});
    const std::string unknown = dir.filePath("unknown.safetensors").toStdString();
    writeSafeTensors(unknown, {{"mean", mean}, {"std", torch::ones({1})}, {"prompt", torch::ones({2})}});
    const std::string partial = dir.filePath("partial.safetensors").toStdString();
    writeSafeTensors(partial, {{"mean", mean}});
    QVERIFY(refused(cond, wrongShape, "has shape [1, 3, 3], the conditional one [1, 6, 6]"));
    QVERIFY(refused(unknown, "", "x, time, mean, std"));
    QVERIFY(refused(partial, "", "needs the argument 'std'"));
    QVERIFY(refused(cond, partial, "has no tensor 'std'"));
    QVERIFY(refused(dir.filePath("missing.safetensors").toStdString(), "", "is not a file"));
    SampleRequest mixture;
    mixture.model = "gmm:8gaussians";
    mixture.text.conditioning = cond;
    const SampleResult notBundle = engine.sample(mixture);
    QVERIFY2(QString::fromStdString(notBundle.error).contains("takes none"), notBundle.error.c_str());
    // After the refusals the manifest's tensors are back.
    result = engine.sample(bundleRequest("gauss-conditioned"));
    QVERIFY2(result.ok(), result.error.c_str());
}

void TestBundle::parameterCountOfMatchesTheBuiltNetwork() {
    for (const auto& [kind, shape, width, depth] :
         std::vector<std::tuple<std::string, std::vector<int64_t>, int64_t, int64_t>>{
             {"mlp", {2}, 4, 0}, {"mlp", {2}, 64, 3}, {"mlp", {5}, 7, 2},
             {"unet", {1, 28, 28}, 16, 2}, {"unet", {3, 8, 8}, 12, 1}, {"unet", {4, 16, 16}, 8, 3}}) {
        Architecture architecture;
        architecture.kind = kind;
        architecture.sampleShape = shape;
        architecture.width = width;
        architecture.depth = depth;
        QCOMPARE(parameterCountOf(architecture), makeFlowNet(architecture, 0)->parameterCount());
    }
}

void TestBundle::architectureThatIsNotTheWeightsIsRefusedBeforeBuilding() {
    // A data-only bundle needs no trust, so its manifest is a stranger's word: a UNet of width
    // 1024 and depth 6 (65,536 channels at the bottom) beside 800 kB of weights would have been
    // built, needing hundreds of GB, before the weights were compared with it.
    QTemporaryDir dir;
    const QString shipped = QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/models/fashion-rectified/");
    QVERIFY(QFile::copy(shipped + "weights.safetensors", dir.filePath("weights.safetensors")));
    std::string manifest = readBytes(shipped + "flowscope.json");
    const std::string declared = R"("architecture": {"kind": "unet", "width": 16, "depth": 2})";
    QVERIFY(manifest.find(declared) != std::string::npos);
    manifest.replace(manifest.find(declared), declared.size(),
                     R"("architecture": {"kind": "unet", "width": 1024, "depth": 6})");
    writeBytes(dir.filePath("flowscope.json"), manifest);
    Engine engine;
    SampleRequest request;
    request.model = "bundle:" + dir.path().toStdString();
    request.steps = 1;
    const SampleResult result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(result.error.find("does not describe these weights") != std::string::npos, result.error.c_str());
    // Building it alone is refused in words too, from the count, before any allocation.
    Architecture huge;
    huge.kind = "unet";
    huge.sampleShape = {1, 28, 28};
    huge.width = 1024;
    huge.depth = 6;
    QVERIFY(parameterCountOf(huge) > int64_t(1) << 36);
    QVERIFY_THROWS_EXCEPTION(InvalidRequestError, makeFlowNet(huge, 0));
}

void TestBundle::classesReachATorchScriptNetwork() {
    // A TorchScript network of two classes: class c's data is N((c + 1) / 4, 0.4^2), the null
    // class (-1) N(0, 0.4^2), each as its exact velocity on the linear path. The class input
    // arrives third, after time.
    QTemporaryDir dir;
    const fs::path folder = fs::path(dir.path().toStdString()) / "classes";
    fs::create_directories(folder);
    torch::jit::Module module("Classed");
    module.define(R"(
def forward(self, x, time, label):
    t = time.reshape([-1, 1, 1, 1])
    m = (label.to(x.dtype) + 1.0).reshape([-1, 1, 1, 1]) * 0.25
    s2 = 0.16
    x0 = m + t * s2 * (x - t * m) / (t * t * s2 + (1.0 - t) * (1.0 - t))
    return (x0 - x) / (1.0 - t)
)");
    module.save((folder / "model.pt").string());
    writeBytes(QString::fromStdString((folder / "flowscope.json").string()),
               R"({"name": "classed", "format": "torchscript", "file": "model.pt", "prediction": "velocity",
                   "path": "linear", "time_input": "t", "sample_shape": [1, 2, 2], "value_range": [-1, 1],
                   "classes": ["low", "high"]})");
    QCOMPARE(Engine::describeModel("bundle:" + folder.string()).classes, (std::vector<std::string>{"low", "high"}));
    Engine engine;
    SampleRequest request;
    request.model = "bundle:" + folder.string();
    request.trustModel = true;
    request.solver = "heun";
    request.steps = 40;
    request.batch = 3;
    request.seed = 5;
    request.device = "cpu";
    const auto landsOn = [&](double mean) {
        const SampleResult result = engine.sample(request);
        if (!result.ok()) return QString::fromStdString(result.error);
        const torch::Tensor start = fromHost(result.initial), end = fromHost(result.final);
        const double error = (end - (mean + 0.4 * start)).abs().max().item<double>();
        return error < 2e-3 ? QString() : QString("off by %1").arg(error);
    };
    QCOMPARE(landsOn(0.0), QString());  // no class: the null class
    request.condition = "high";
    QCOMPARE(landsOn(0.5), QString());
    request.condition = "0";
    QCOMPARE(landsOn(0.25), QString());
    // A forward without the class argument is refused when the manifest lists classes.
    torch::jit::Module plain("Plain");
    plain.define("def forward(self, x, time):\n    return x * 0.0\n");
    plain.save((folder / "model.pt").string());
    request.condition.clear();
    const SampleResult refused = engine.sample(request);
    QVERIFY(!refused.ok());
    QVERIFY2(refused.error.find("(x, time, class)") != std::string::npos, refused.error.c_str());
}

QTEST_GUILESS_MAIN(TestBundle)
#include "tst_bundle.moc"
