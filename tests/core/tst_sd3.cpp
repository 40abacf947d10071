// Stable Diffusion 3 / 3.5 from checkpoint files: the C++ MMDiT, CLIP-G, CLIP-L with its
// projection, T5 and the joined conditioning against the independent float64 implementation in
// resources/fixtures/make_sd3.py (small random checkpoints with the published key names), the
// families told apart by their keys, refusals that name what is wrong, and classifier-free
// guidance with a negative prompt through the engine.
#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <torch/torch.h>

#include "tests/TestSupport.h"
#include "tests/core/CheckpointFixtures.h"
#include "core/api/Checkpoints.h"
#include "core/api/Engine.h"
#include "core/io/SafeTensors.h"
#include "core/models/Checkpoint.h"
#include "core/models/mmdit/Sd3Model.h"
#include "core/models/text/TextEncoders.h"

using namespace flowscope;
using namespace flowscope::core;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return std::string(FLOWSCOPE_SOURCE_DIR) + "/resources/fixtures/sd3/" + name; }

const SafeTensorsFile& reference() {
    static const SafeTensorsFile file = SafeTensorsFile::read(fixture("reference.safetensors"));
    return file;
}

torch::Tensor ref(const std::string& name) { return reference().tensor(name).to(torch::kFloat64); }
torch::Tensor ref32(const std::string& name) { return reference().tensor(name).to(torch::kFloat32); }

// Relative to the reference's largest magnitude: float32 against float64 through a few dozen
// products over widths of at most 384 stays below 1e-5; a wrong equation shows as an error of
// order 1.
#define QVERIFY_CLOSE(got, expected)                                                              \
    do {                                                                                          \
        const double error_ = test::relativeError((got), (expected));                                   \
        QVERIFY2(error_ < 1e-4, qPrintable(QString("%1: %2").arg(#expected).arg(error_)));        \
    } while (false)

std::unique_ptr<sd3::Sd3Model> open(const std::string& path, const TextSettings& text = {}) {
    auto model = std::make_unique<sd3::Sd3Model>(findCheckpoint(path, text));
    model->prepare(torch::kCPU, torch::kFloat32);
    return model;
}

// The 3.0 Medium file alone, with the 3.5 folder's CLIPs and tokenizers and no T5.
TextSettings clipsBeside() {
    TextSettings text;
    text.clipL = fixture("sd3.5_medium/text_encoders/clip_l.safetensors");
    text.clipG = fixture("sd3.5_medium/text_encoders/clip_g.safetensors");
    text.tokenizers = fixture("sd3.5_medium");
    return text;
}

SampleRequest smallRequest() {
    SampleRequest request;
    request.model = "checkpoint:" + fixture("sd3.5_medium");
    request.text.prompt = "a photo of a cat";
    request.text.width = 64;
    request.text.height = 64;
    return request;
}

}  // namespace

class TestSd3 : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { QVERIFY2(fs::exists(fixture("reference.safetensors")), "run resources/fixtures/make_sd3.py"); }

    // 3.0 (no QK norm), 3.5 Medium (QK norm, MMDiT-X in block 0) and 3.5 Large, square and a
    // non-square grid whose position crop is off-centre.
    void mmditMatchesTheReference() {
        c10::InferenceMode inference;
        const std::pair<std::string, std::string> cases[] = {{"sd3_medium.safetensors", "sd3_medium_out"},
                                                             {"sd3.5_medium", "sd35_medium_out"},
                                                             {"sd3.5_large.safetensors", "sd35_large_out"}};
        for (const auto& [path, output] : cases) {
            const auto model = open(fixture(path));
            const torch::Tensor out = model->forwardRaw(ref32("x"), ref32("sigma"), ref32("context"), ref32("pooled"), nullptr);
            QCOMPARE(out.sizes().vec(), ref(output).sizes().vec());
            QVERIFY_CLOSE(out, ref(output));
        }
        const auto medium = open(fixture("sd3.5_medium"));
        const torch::Tensor wide =
            medium->forwardRaw(ref32("x_wide"), ref32("sigma_wide"), ref32("context"), ref32("pooled"), nullptr);
        QVERIFY_CLOSE(wide, ref("sd35_medium_wide_out"));
    }

    void familiesAndSizesComeFromTheKeys() {
        QCOMPARE(findCheckpoint(fixture("sd3_medium.safetensors"), {}).family, CheckpointLayout::Family::Sd3Medium);
        QCOMPARE(findCheckpoint(fixture("sd3.5_medium"), {}).family, CheckpointLayout::Family::Sd35Medium);
        QCOMPARE(findCheckpoint(fixture("sd3.5_large.safetensors"), {}).family, CheckpointLayout::Family::Sd35Large);
        // Large Turbo has Large's shapes: its file's name tells them apart.
        QTemporaryDir dir;
        const std::string turbo = dir.filePath("sd3.5_large_turbo.safetensors").toStdString();
        fs::copy_file(fixture("sd3.5_large.safetensors"), turbo);
        QCOMPARE(findCheckpoint(turbo, {}).family, CheckpointLayout::Family::Sd35LargeTurbo);
        QCOMPARE(inspectCheckpoint(turbo).defaultSteps, 4);
        QCOMPARE(inspectCheckpoint(turbo).defaultCfg, 1.0);

        const CheckpointInfo medium = inspectCheckpoint(fixture("sd3.5_medium"));
        QCOMPARE(medium.family, std::string("Stable Diffusion 3.5 Medium"));
        QCOMPARE(medium.hidden, int64_t(128));
        QCOMPARE(medium.heads, int64_t(2));
        QCOMPARE(medium.jointBlocks, 2);
        QCOMPARE(medium.patch, int64_t(2));
        QCOMPARE(medium.positionGrid, int64_t(8));
        QCOMPARE(medium.maxSide, int64_t(128));
        QVERIFY(medium.qkNorm);
        QCOMPARE(medium.selfAttentionBlocks, std::vector<int>{0});
        QCOMPARE(medium.contextWidth, int64_t(192));
        QCOMPARE(medium.pooledWidth, int64_t(192));
        QCOMPARE(medium.defaultSchedule, std::string("shift:3"));
        QCOMPARE(medium.defaultSteps, 40);
        QCOMPARE(medium.defaultCfg, 5.0);
        for (const auto& part : medium.parts) QVERIFY2(part.found, part.name.c_str());
        QCOMPARE(medium.parts.size(), size_t(5));
        const CheckpointInfo large = inspectCheckpoint(fixture("sd3.5_large.safetensors"));
        QCOMPARE(large.defaultCfg, 4.5);
        QCOMPARE(large.defaultSteps, 28);
        QVERIFY(large.selfAttentionBlocks.empty());
        const CheckpointInfo three = inspectCheckpoint(fixture("sd3_medium.safetensors"));
        QVERIFY(!three.qkNorm);
        QCOMPARE(three.heads, int64_t(1));
    }

    // CLIP-G (exact GELU, 2 heads) and CLIP-L with their projections; T5.
    void textEncodersMatchTheReference() {
        c10::InferenceMode inference;
        const CheckpointLayout layout = findCheckpoint(fixture("sd3.5_medium"), {});
        const int64_t end = ref("clip_l_ids")[0].max().item<int64_t>();  // the end token has CLIP's largest id
        const ClipTextModel clipG(Weights(layout.clipG.files, layout.clipG.prefix, torch::kFloat32, torch::kCPU),
                                  ClipTextModel::Activation::Gelu);
        const auto g = clipG.forward(reference().tensor("clip_g_ids"), end, true);
        QVERIFY_CLOSE(g.penultimate, ref("clip_g_penultimate"));
        QVERIFY_CLOSE(g.hidden, ref("clip_g_hidden"));
        QVERIFY_CLOSE(g.pooled, ref("clip_g_pooled"));
        const ClipTextModel clipL(Weights(layout.clipL.files, layout.clipL.prefix, torch::kFloat32, torch::kCPU),
                                  ClipTextModel::Activation::QuickGelu);
        const auto l = clipL.forward(reference().tensor("clip_l_ids"), end, true);
        QVERIFY_CLOSE(l.penultimate, ref("clip_l_penultimate"));
        QVERIFY_CLOSE(l.pooled, ref("clip_l_pooled"));
        const T5Encoder t5(Weights(layout.t5.files, layout.t5.prefix, torch::kFloat32, torch::kCPU));
        QVERIFY_CLOSE(t5.forward(reference().tensor("t5_ids")), ref("t5_hidden"));
    }

    // The prompt through the folder's tokenizers and encoders: CLIP-G pads with "!" (id 0), the
    // CLIPs' penultimate states are joined and padded to T5's width, T5's states follow.
    void promptConditioningMatchesTheReference() {
        c10::InferenceMode inference;
        const auto model = open(fixture("sd3.5_medium"));
        const auto encoded = model->encodePrompt("a photo of a cat", nullptr);
        QVERIFY(torch::equal(encoded.clipLIds, reference().tensor("clip_l_ids").narrow(0, 0, 1)));
        QVERIFY(torch::equal(encoded.clipGIds, reference().tensor("clip_g_ids").narrow(0, 0, 1)));
        QVERIFY(torch::equal(encoded.t5Ids, reference().tensor("t5_ids")));
        QCOMPARE(encoded.clipGIds[0][76].item<int64_t>(), int64_t(0));
        QCOMPARE(encoded.context.sizes().vec(), (std::vector<int64_t>{1, 333, 192}));
        QVERIFY_CLOSE(encoded.context, ref("prompt_context"));
        QVERIFY_CLOSE(encoded.pooled, ref("prompt_pooled"));
        QVERIFY_CLOSE(model->encodePrompt("", nullptr).pooled, ref("empty_pooled"));

        // Without T5 its part of the context is zeros, and the run says so.
        const auto three = open(fixture("sd3_medium.safetensors"), clipsBeside());
        const auto bare = three->encodePrompt("a photo of a cat", nullptr);
        QVERIFY(!bare.withT5);
        QVERIFY_CLOSE(bare.context.narrow(1, 0, 77), ref("prompt_context").narrow(1, 0, 77));
        QCOMPARE(bare.context.narrow(1, 77, 256).abs().max().item<double>(), 0.0);
        TextSettings text = clipsBeside();
        text.width = text.height = 64;
        three->setText(text, nullptr);
        const auto notes = three->takeNotes();
        QVERIFY(std::any_of(notes.begin(), notes.end(), [](const std::string& n) { return n.find("no T5") != std::string::npos; }));
    }

    void autoencoderUsesSd3Scaling() {
        c10::InferenceMode inference;
        const auto model = open(fixture("sd3.5_medium"));
        QVERIFY_CLOSE(model->decodeLatents(ref32("ae_latents"), nullptr), ref("ae_decoded"));
    }

    // One Euler step from sigma = 1 ends at x - raw: with guidance scale w the raw output is
    // raw(negative) + w (raw(prompt) - raw(negative)), both halves from one batched forward pass.
    void guidanceWithANegativePromptThroughTheEngine() {
        Engine engine;
        SampleRequest request = smallRequest();
        request.steps = 1;
        request.seed = 5;
        request.guidance.method = GuidanceMethod::Cfg;
        request.guidance.scale = 4.0;
        request.text.negativePrompt = "blurry";
        const SampleResult result = engine.sample(request);
        QVERIFY2(result.ok(), result.error.c_str());
        QCOMPARE(result.sampleShape, (std::vector<int64_t>{16, 8, 8}));
        c10::InferenceMode inference;
        const auto model = open(fixture("sd3.5_medium"));
        const auto positive = model->encodePrompt("a photo of a cat", nullptr);
        const auto negative = model->encodePrompt("blurry", nullptr);
        const torch::Tensor noise = torch::randn({1, 16, 8, 8}, at::detail::createCPUGenerator(5));
        const torch::Tensor one = torch::ones({1});
        const torch::Tensor conditional = model->forwardRaw(noise, one, positive.context, positive.pooled, nullptr);
        const torch::Tensor unconditional = model->forwardRaw(noise, one, negative.context, negative.pooled, nullptr);
        const torch::Tensor expected = noise - (unconditional + 4.0 * (conditional - unconditional));
        const torch::Tensor got = torch::tensor(result.final.values).reshape({1, 16, 8, 8});
        QVERIFY2(test::maxAbsDiff(got, expected) < 1e-4, qPrintable(QString::number(test::maxAbsDiff(got, expected))));
        QCOMPARE(result.nfe, 1);
        // Unguided (scale 1) is the prompt's own prediction: the negative prompt plays no part.
        request.guidance.scale = 1.0;
        const SampleResult plain = engine.sample(request);
        QVERIFY2(plain.ok(), plain.error.c_str());
        const torch::Tensor unguided = torch::tensor(plain.final.values).reshape({1, 16, 8, 8});
        QVERIFY(test::maxAbsDiff(unguided, noise - conditional) < 1e-4);
        // A batch of two guided samples: the halves are split per row.
        request.guidance.scale = 4.0;
        request.batch = 2;
        const SampleResult pair = engine.sample(request);
        QVERIFY2(pair.ok(), pair.error.c_str());
        const torch::Tensor first = torch::tensor(pair.final.values).reshape({2, 16, 8, 8})[0];
        QVERIFY(test::maxAbsDiff(first, expected[0]) < 1e-4);
    }

    // Lanes may run SD3 and FLUX.1 in turn: while both fit in memory, neither reloads the other's
    // transformer (the catalog keeps several checkpoints open).
    void checkpointsTakenInTurnStayLoaded() {
        int mmditLoads = 0;
        setCheckpointLoadObserver([&](const std::string& part, uint64_t done, uint64_t) {
            if (part == "the MMDiT" && done == 0) ++mmditLoads;
        });
        const auto reset = qScopeGuard([] { setCheckpointLoadObserver({}); });
        Engine engine;
        SampleRequest sd3 = smallRequest();
        sd3.steps = 1;
        SampleRequest flux;
        flux.model = "checkpoint:" + std::string(FLOWSCOPE_SOURCE_DIR) + "/resources/fixtures/flux/schnell";
        flux.text.width = flux.text.height = 32;
        flux.steps = 1;
        for (const SampleRequest* request : {&sd3, &flux, &sd3}) {
            const SampleResult result = engine.sample(*request);
            QVERIFY2(result.ok(), result.error.c_str());
        }
        QCOMPARE(mmditLoads, 1);
    }

    void refusalsSayWhatIsWrong() {
        // Beyond the position table: 8 patches of 16 pixels.
        Engine engine;
        SampleRequest request = smallRequest();
        request.text.width = 256;
        const SampleResult wide = engine.sample(request);
        QVERIFY(!wide.ok());
        QVERIFY2(wide.error.find("up to 128") != std::string::npos, wide.error.c_str());
        // The 3.0 file alone lacks its CLIPs: the message says how to give them.
        const std::string lacking = test::messageOf([&] { open(fixture("sd3_medium.safetensors"))->encodePrompt("x", nullptr); });
        QVERIFY2(lacking.find("--clip-l") != std::string::npos, lacking.c_str());
        // A position table that is not a square grid names its key.
        QTemporaryDir dir;
        const SafeTensorsFile source = SafeTensorsFile::read(fixture("sd3_medium.safetensors"));
        std::vector<std::pair<std::string, torch::Tensor>> tensors;
        for (const SafeTensorsFile::Entry& entry : source.entries()) {
            const std::string& name = entry.name;
            torch::Tensor t = source.tensor(name);
            if (name == "model.diffusion_model.pos_embed") t = t.narrow(1, 0, 60).contiguous();
            tensors.emplace_back(name, t);
        }
        const std::string broken = dir.filePath("broken.safetensors").toStdString();
        writeSafeTensors(broken, tensors);
        const std::string misshapen = test::messageOf([&] { open(broken); });
        QVERIFY2(misshapen.find("pos_embed") != std::string::npos, misshapen.c_str());
        // FLUX.1 has no classifier-free guidance.
        SampleRequest flux;
        flux.model = "checkpoint:" + std::string(FLOWSCOPE_SOURCE_DIR) + "/resources/fixtures/flux/schnell";
        flux.text.width = flux.text.height = 32;
        flux.guidance.method = GuidanceMethod::Cfg;
        flux.guidance.scale = 3.0;
        const SampleResult distilled = engine.sample(flux);
        QVERIFY(!distilled.ok());
        QVERIFY2(distilled.error.find("guidance-distilled") != std::string::npos, distilled.error.c_str());
    }
};

QTEST_GUILESS_MAIN(TestSd3)
#include "tst_sd3.moc"
