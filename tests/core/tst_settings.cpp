// The settings codec on its own (core/api/SettingsCodec.h): every field round-trips, the text is
// the one the CLI has always written, older text still reads, and every malformed or out-of-range
// value is refused with a message that names it, leaving the request as it was.
#include <QtTest/QtTest>

#include "core/api/Engine.h"
#include "core/api/SettingsCodec.h"

using namespace flowscope::core;

namespace {

// A request whose every stored field differs from its default.
SampleRequest unusualRequest() {
    SampleRequest request;
    request.model = "gmm:rings";
    request.path = "vp";
    request.solver = "dopri5";
    request.schedule = "shift:2.5";
    request.steps = 37;
    request.seed = kMaxSeed;
    request.batch = 3;
    request.resolution = 14;
    request.device = "cpu";
    request.dtype = "float64";
    request.tEnd = 0.75;
    request.rtol = 1e-3;
    request.atol = 2.5e-7;
    return request;
}

bool sameSettings(const SampleRequest& a, const SampleRequest& b) {
    return a.model == b.model && a.path == b.path && a.solver == b.solver && a.schedule == b.schedule &&
           a.steps == b.steps && a.seed == b.seed && a.batch == b.batch && a.resolution == b.resolution &&
           a.device == b.device && a.dtype == b.dtype && a.tEnd == b.tEnd && a.rtol == b.rtol && a.atol == b.atol;
}

// Valid settings JSON with one member's text replaced (removed, for an empty value).
std::string withMember(const std::string& key, const std::string& value) {
    const std::pair<std::string, std::string> members[] = {
        {"model", "\"gmm:8gaussians\""}, {"path", "\"linear\""}, {"solver", "\"euler\""}, {"schedule", "\"uniform\""},
        {"steps", "8"}, {"seed", "0"}, {"batch", "1"}, {"resolution", "0"}, {"device", "\"auto\""},
        {"dtype", "\"float32\""}, {"t_end", "1"}, {"rtol", "1e-05"}, {"atol", "1e-05"}};
    std::string json = "{";
    for (const auto& [name, text] : members) {
        const std::string& member = name == key ? value : text;
        if (member.empty()) continue;
        if (json.size() > 1) json += ",";
        json += "\"" + name + "\":" + member;
    }
    return json + "}";
}

}  // namespace

class TestSettings : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void everyFieldRoundTrips();
    void textIsTheContractTheCliWrites();
    void seedsUpToTheLargestRoundTrip();
    void earlierTextStillReads();
    void malformedTextIsRefusedWithAMessage_data();
    void malformedTextIsRefusedWithAMessage();
    void parametersLineNamesTheRun();
    void chunksComeParametersFirst();
    void conditionAndGuidanceRoundTrip();
    void malformedGuidanceIsRefused_data();
    void malformedGuidanceIsRefused();
    void startRoundTripsWithoutItsArrays();
    void promptRoundTripsAndLeadsTheParameters();
};

// A checkpoint's prompt, size, distilled guidance and named parts come back whole; the
// AUTOMATIC1111 parameters begin with the prompt on a line of its own and give the image's size.
void TestSettings::promptRoundTripsAndLeadsTheParameters() {
    SampleRequest request;
    request.model = "checkpoint:/models/FLUX.1-dev";
    request.text.prompt = "a \"quoted\" fox,\nin snow";
    request.text.width = 1024;
    request.text.height = 768;
    request.text.fluxGuidance = 4.5;
    request.text.t5 = "/models/t5xxl_fp16.safetensors";
    SampleRequest read;
    std::string error;
    QVERIFY2(settingsFromJson(settingsToJson(request), &read, &error), error.c_str());
    QVERIFY(read.text == request.text);
    const std::string line = parametersLine(request, 28, {16, 96, 128});
    QVERIFY2(line.rfind("a \"quoted\" fox,\nin snow\nSteps: 8", 0) == 0, line.c_str());
    QVERIFY(line.find("Size: 1024x768") != std::string::npos);
    QVERIFY(line.find("Distilled CFG Scale: 4.5") != std::string::npos);
    // A width that is no multiple of 16 is refused by name.
    std::string json = settingsToJson(request);
    json.replace(json.find("\"width\":1024"), 12, "\"width\":1000");
    QVERIFY(!settingsFromJson(json, &read, &error));
    QVERIFY2(error.find("multiples of 16") != std::string::npos, error.c_str());
    // Other models' settings carry no text object.
    QVERIFY(settingsToJson(SampleRequest{}).find("\"text\"") == std::string::npos);
    // SD3: the negative prompt on the line after the prompt, the guidance scale after the
    // schedule, as AUTOMATIC1111 writes them; CLIP-G named beside the file comes back.
    SampleRequest sd3;
    sd3.model = "checkpoint:/models/sd3.5_large.safetensors";
    sd3.text.prompt = "a fox";
    sd3.text.negativePrompt = "blurry, \"low\" quality";
    sd3.text.clipG = "/models/clip_g.safetensors";
    sd3.guidance.method = GuidanceMethod::Cfg;
    sd3.guidance.scale = 4.5;
    QVERIFY2(settingsFromJson(settingsToJson(sd3), &read, &error), error.c_str());
    QVERIFY(read.text == sd3.text);
    const std::string guided = parametersLine(sd3, 28, {16, 128, 128});
    QVERIFY2(guided.rfind("a fox\nNegative prompt: blurry, \"low\" quality\nSteps: 8", 0) == 0, guided.c_str());
    QVERIFY2(guided.find("CFG scale: 4.5") != std::string::npos, guided.c_str());
    // A bundle's conditioning files for the run come back too.
    SampleRequest bundle;
    bundle.model = "bundle:/models/text-flow";
    bundle.text.conditioning = "/prompts/fox.safetensors";
    bundle.text.unconditioning = "/prompts/empty.safetensors";
    QVERIFY2(settingsFromJson(settingsToJson(bundle), &read, &error), error.c_str());
    QVERIFY(read.text == bundle.text);
}

void TestSettings::everyFieldRoundTrips() {
    const SampleRequest original = unusualRequest();
    SampleRequest read;
    std::string error;
    QVERIFY2(settingsFromJson(settingsToJson(original), &read, &error), error.c_str());
    QVERIFY(sameSettings(read, original));
    // Fields the codec does not store keep the values the caller had.
    SampleRequest carried;
    carried.recordTrajectory = true;
    carried.previewSize = 96;
    QVERIFY2(settingsFromJson(settingsToJson(original), &carried, &error), error.c_str());
    QVERIFY(carried.recordTrajectory);
    QCOMPARE(carried.previewSize, 96);
    QVERIFY(sameSettings(carried, original));
}

void TestSettings::textIsTheContractTheCliWrites() {
    SampleRequest request;
    request.model = "fashion-mnist:1000";
    request.seed = 4000000000;
    QCOMPARE(settingsToJson(request),
             std::string(R"({"model":"fashion-mnist:1000","path":"linear","solver":"euler","schedule":"uniform",)"
                         R"("steps":8,"seed":4000000000,"batch":1,"resolution":0,"device":"auto","dtype":"float32",)"
                         R"("t_end":1,"rtol":1.0000000000000001e-05,"atol":1.0000000000000001e-05})"));
}

void TestSettings::seedsUpToTheLargestRoundTrip() {
    for (const uint64_t seed : {uint64_t{0}, uint64_t{2147483648}, uint64_t{4000000000}, kMaxSeed}) {
        SampleRequest request;
        request.seed = seed;
        SampleRequest read;
        std::string error;
        QVERIFY2(settingsFromJson(settingsToJson(request), &read, &error), error.c_str());
        QCOMPARE(read.seed, seed);
    }
}

void TestSettings::earlierTextStillReads() {
    // The window once wrote the seed as a string and nothing past the device.
    const std::string earlier = R"({"model":"gmm:8gaussians","path":"linear","solver":"heun","schedule":"karras",)"
                                R"("steps":5,"seed":"1234","batch":16,"resolution":0,"device":"auto"})";
    SampleRequest read;
    read.dtype = "bfloat16";
    read.tEnd = 0.5;
    std::string error;
    QVERIFY2(settingsFromJson(earlier, &read, &error), error.c_str());
    QCOMPARE(read.seed, uint64_t{1234});
    QCOMPARE(read.solver, std::string("heun"));
    QCOMPARE(read.batch, 16);
    const SampleRequest defaults;
    QCOMPARE(read.dtype, defaults.dtype);
    QCOMPARE(read.tEnd, defaults.tEnd);
    QCOMPARE(read.rtol, defaults.rtol);
    QCOMPARE(read.atol, defaults.atol);
    // Resolution and device may be absent too.
    QVERIFY2(settingsFromJson(withMember("resolution", ""), &read, &error), error.c_str());
    QCOMPARE(read.resolution, 0);
    QVERIFY2(settingsFromJson(withMember("device", ""), &read, &error), error.c_str());
    QCOMPARE(read.device, std::string("auto"));
}

void TestSettings::malformedTextIsRefusedWithAMessage_data() {
    QTest::addColumn<QString>("text");
    QTest::addColumn<QString>("mentions");
    QTest::newRow("not JSON") << "{\"model\":" << "not JSON";
    QTest::newRow("an array") << "[1, 2]" << "not a JSON object";
    QTest::newRow("empty") << "" << "not JSON";
    QTest::newRow("no model") << QString::fromStdString(withMember("model", "")) << "model";
    QTest::newRow("empty model") << QString::fromStdString(withMember("model", "\"\"")) << "model";
    QTest::newRow("model a number") << QString::fromStdString(withMember("model", "3")) << "model";
    QTest::newRow("no steps") << QString::fromStdString(withMember("steps", "")) << "steps";
    QTest::newRow("no seed") << QString::fromStdString(withMember("seed", "")) << "seed";
    QTest::newRow("zero steps") << QString::fromStdString(withMember("steps", "0")) << "steps";
    QTest::newRow("too many steps") << QString::fromStdString(withMember("steps", std::to_string(kMaxSteps + 1)))
                                    << "steps";
    QTest::newRow("fractional steps") << QString::fromStdString(withMember("steps", "2.5")) << "steps";
    QTest::newRow("batch zero") << QString::fromStdString(withMember("batch", "0")) << "batch";
    QTest::newRow("batch too large") << QString::fromStdString(withMember("batch", std::to_string(kMaxBatch + 1)))
                                     << "batch";
    QTest::newRow("seed past 32 bits") << QString::fromStdString(withMember("seed", "4294967296")) << "seed";
    QTest::newRow("seed string past 32 bits") << QString::fromStdString(withMember("seed", "\"4294967296\"")) << "seed";
    QTest::newRow("negative seed") << QString::fromStdString(withMember("seed", "-1")) << "seed";
    QTest::newRow("fractional seed") << QString::fromStdString(withMember("seed", "1.5")) << "seed";
    QTest::newRow("seed words") << QString::fromStdString(withMember("seed", "\"abc\"")) << "seed";
    QTest::newRow("resolution too large")
        << QString::fromStdString(withMember("resolution", std::to_string(kMaxResolution + 1))) << "resolution";
    QTest::newRow("unknown path") << QString::fromStdString(withMember("path", "\"warp\"")) << "warp";
    QTest::newRow("unknown solver") << QString::fromStdString(withMember("solver", "\"bogus\"")) << "bogus";
    QTest::newRow("bad shift") << QString::fromStdString(withMember("schedule", "\"shift:x\"")) << "shift";
    QTest::newRow("unknown device") << QString::fromStdString(withMember("device", "\"tpu\"")) << "tpu";
    QTest::newRow("unknown dtype") << QString::fromStdString(withMember("dtype", "\"float16\"")) << "float16";
    QTest::newRow("t_end zero") << QString::fromStdString(withMember("t_end", "0")) << "t_end";
    QTest::newRow("t_end past 1") << QString::fromStdString(withMember("t_end", "1.5")) << "t_end";
    QTest::newRow("rtol zero") << QString::fromStdString(withMember("rtol", "0")) << "rtol";
    QTest::newRow("atol a string") << QString::fromStdString(withMember("atol", "\"small\"")) << "atol";
    QTest::newRow("deeply nested") << QString(200, '[') << "not JSON";
}

void TestSettings::malformedTextIsRefusedWithAMessage() {
    QFETCH(QString, text);
    QFETCH(QString, mentions);
    const SampleRequest before = unusualRequest();
    SampleRequest request = before;
    std::string error;
    QVERIFY(!settingsFromJson(text.toStdString(), &request, &error));
    QVERIFY2(QString::fromStdString(error).contains(mentions), error.c_str());
    QVERIFY(sameSettings(request, before));
}

void TestSettings::parametersLineNamesTheRun() {
    SampleRequest request;
    request.model = "fashion-mnist";
    request.solver = "heun";
    request.steps = 5;
    request.seed = 4000000000;
    request.batch = 6;
    const std::string line = parametersLine(request, 9, {1, 28, 28});
    QCOMPARE(line, "Steps: 5, Sampler: heun, Schedule type: uniform, Seed: 4000000000, Batch: 6, Model: fashion-mnist, "
                   "Path: linear, NFE: 9, Version: FlowScope " + Engine::version() + ", Size: 28x28");
    // Points have no size.
    QVERIFY(parametersLine(request, 9, {2}).find("Size") == std::string::npos);
}

void TestSettings::chunksComeParametersFirst() {
    const SampleRequest request = unusualRequest();
    const TextChunks chunks = settingsChunks(request, 12, {2});
    QCOMPARE(chunks.size(), size_t{2});
    QCOMPARE(chunks[0].first, std::string(kParametersChunk));
    QCOMPARE(chunks[0].second, parametersLine(request, 12, {2}));
    QCOMPARE(chunks[1].first, std::string(kSettingsChunk));
    QCOMPARE(chunks[1].second, settingsToJson(request));
}

void TestSettings::conditionAndGuidanceRoundTrip() {
    SampleRequest request = unusualRequest();
    // Unconditional runs keep the text earlier versions wrote: no condition, no guidance.
    QVERIFY(settingsToJson(request).find("guidance") == std::string::npos);
    request.condition = "Ankle boot";
    for (const GuidanceMethod method : {GuidanceMethod::Cfg, GuidanceMethod::Apg, GuidanceMethod::CfgZero}) {
        request.guidance = {};
        request.guidance.method = method;
        request.guidance.scale = 7.5;
        request.guidance.intervalLow = 0.25;
        request.guidance.intervalHigh = 0.875;
        if (method == GuidanceMethod::Cfg) request.guidance.rescale = 0.7;
        if (method == GuidanceMethod::Apg) {
            request.guidance.apgEta = 0.5;
            request.guidance.apgMomentum = 0.25;
            request.guidance.apgNorm = 15.0;
        }
        if (method == GuidanceMethod::CfgZero) request.guidance.cfgZeroSteps = 3;
        SampleRequest read;
        std::string error;
        QVERIFY2(settingsFromJson(settingsToJson(request), &read, &error), error.c_str());
        QCOMPARE(read.condition, request.condition);
        QVERIFY(read.guidance == request.guidance);
    }
    // APG without a threshold (infinity) leaves the field out and reads back as none.
    request.guidance = {};
    request.guidance.method = GuidanceMethod::Apg;
    request.guidance.scale = 3.0;
    SampleRequest read;
    std::string error;
    QVERIFY(settingsToJson(request).find("apg_norm") == std::string::npos);
    QVERIFY2(settingsFromJson(settingsToJson(request), &read, &error), error.c_str());
    QVERIFY(std::isinf(read.guidance.apgNorm));
    // The parameters line: the scale as AUTOMATIC1111 writes it, the method when not cfg, the class.
    const std::string line = parametersLine(request, 8, {2});
    QVERIFY2(line.find("Schedule type: shift:2.5, CFG scale: 3, Guidance: apg, Seed: ") != std::string::npos, line.c_str());
    QVERIFY2(line.find("Class: Ankle boot, Path: ") != std::string::npos, line.c_str());
}

void TestSettings::malformedGuidanceIsRefused_data() {
    QTest::addColumn<QString>("guidance");
    QTest::addColumn<QString>("mentions");
    QTest::newRow("not an object") << "3" << "'guidance' must be an object";
    QTest::newRow("unknown method") << R"({"method":"pag"})" << "cfg-zero";
    QTest::newRow("negative scale") << R"({"method":"cfg","scale":-1})" << "at least 0";
    QTest::newRow("scale a string") << R"({"method":"cfg","scale":"7"})" << "'scale' must be a number";
    QTest::newRow("reversed interval") << R"({"method":"cfg","scale":2,"interval":[0.9,0.1]})" << "LO <= HI";
    QTest::newRow("interval of one end") << R"({"method":"cfg","interval":[0.5]})" << "[LO, HI]";
    QTest::newRow("rescale past 1") << R"({"method":"cfg","rescale":2})" << "--cfg-rescale";
    QTest::newRow("momentum 1") << R"({"method":"apg","apg_momentum":1})" << "--apg-momentum";
    QTest::newRow("fractional zero steps") << R"({"method":"cfg-zero","cfg_zero_steps":1.5})" << "cfg_zero_steps";
}

void TestSettings::malformedGuidanceIsRefused() {
    QFETCH(QString, guidance);
    QFETCH(QString, mentions);
    std::string text = withMember("model", "\"gmm:8gaussians\"");
    text.insert(text.size() - 1, ",\"condition\":\"north\",\"guidance\":" + guidance.toStdString());
    const SampleRequest before = unusualRequest();
    SampleRequest request = before;
    std::string error;
    QVERIFY(!settingsFromJson(text, &request, &error));
    QVERIFY2(QString::fromStdString(error).contains(mentions), error.c_str());
    QVERIFY(sameSettings(request, before));
}

// A run that starts from an image or a state keeps where (kind, t_start, grid) in its settings;
// the arrays are files of their own. Runs from the seed's noise write no "start" at all.
void TestSettings::startRoundTripsWithoutItsArrays() {
    SampleRequest plain;
    QVERIFY(settingsToJson(plain).find("\"start\"") == std::string::npos);
    SampleRequest request;
    request.start.kind = RunStart::Kind::Image;
    request.start.time = 0.25;
    request.start.newGrid = true;
    request.start.image = {{1, 1, 28, 28}, std::vector<float>(28 * 28, 0.f)};
    const std::string json = settingsToJson(request);
    QVERIFY2(json.find("\"start\":{\"kind\":\"image\",\"t_start\":0.25,\"grid\":\"new\"}") != std::string::npos, json.c_str());
    SampleRequest read;
    std::string error;
    QVERIFY2(settingsFromJson(json, &read, &error), error.c_str());
    QVERIFY(read.start.kind == RunStart::Kind::Image);
    QCOMPARE(read.start.time, 0.25);
    QVERIFY(read.start.newGrid);
    QVERIFY(read.start.image.values.empty());
    QVERIFY2(parametersLine(request, 6, {1, 28, 28}).find("Denoising strength: 0.75") != std::string::npos,
             parametersLine(request, 6, {1, 28, 28}).c_str());
    std::string bad = json;
    bad.replace(bad.find("\"image\""), 7, "\"photo\"");
    QVERIFY(!settingsFromJson(bad, &read, &error));
    QVERIFY2(error.find("noise, image or state") != std::string::npos, error.c_str());
}

QTEST_APPLESS_MAIN(TestSettings)
#include "tst_settings.moc"
