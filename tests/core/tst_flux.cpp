// FLUX.1 from checkpoint files: the C++ networks against the independent float64 implementation
// in resources/fixtures/make_flux.py (on its small random checkpoints with the published key
// names), every layout loading the same network, refusals that name the key, and the model
// sampling through the engine.
#include <filesystem>
#include <fstream>
#include <map>

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
#include "core/models/NetworkParts.h"
#include "core/models/PartPlacement.h"
#include "core/models/flux/FluxModel.h"
#include "core/models/text/ClipTokenizer.h"
#include "core/models/text/TextEncoders.h"
#include "core/sampling/Device.h"

using namespace flowscope;
using namespace flowscope::core;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return std::string(FLOWSCOPE_SOURCE_DIR) + "/resources/fixtures/flux/" + name; }

const SafeTensorsFile& reference() {
    static const SafeTensorsFile file = SafeTensorsFile::read(fixture("reference.safetensors"));
    return file;
}

torch::Tensor ref(const std::string& name) { return reference().tensor(name).to(torch::kFloat64); }

// The largest difference relative to the reference's largest magnitude. The C++ computes in
// float32: each output is a chain of a few dozen matrix products over widths of at most 256,
// whose rounding (2^-24 relative per operation, growing with the square root of the width and
// the depth) stays below 1e-5 of the values; 1e-4 leaves a margin and still catches any wrong
// equation (those show as errors of order 1).
using test::relativeError;
using test::messageOf;

std::unique_ptr<flux::FluxModel> open(const std::string& path, const TextSettings& text = {}) {
    auto model = std::make_unique<flux::FluxModel>(findCheckpoint(path, text));
    model->prepare(torch::kCPU, torch::kFloat32);
    return model;
}

// The fixture's [schnell] folder with a prompt, at 48 x 32 pixels (6 x 4 latents).
SampleRequest smallSchnellRequest() {
    SampleRequest request;
    request.model = "checkpoint:" + fixture("schnell");
    request.text.prompt = "a photo of a cat";
    request.text.width = 48;
    request.text.height = 32;
    return request;
}

// Sets FLOWSCOPE_MEMORY_LIMIT for a scope ("" unsets it), and puts back what was there.
class ScopedMemoryLimit {
public:
    explicit ScopedMemoryLimit(const std::string& value)
        : m_had(qEnvironmentVariableIsSet("FLOWSCOPE_MEMORY_LIMIT")), m_old(qgetenv("FLOWSCOPE_MEMORY_LIMIT")) {
        if (value.empty()) {
            qunsetenv("FLOWSCOPE_MEMORY_LIMIT");
        } else {
            qputenv("FLOWSCOPE_MEMORY_LIMIT", QByteArray::fromStdString(value));
        }
    }
    ~ScopedMemoryLimit() {
        if (m_had) {
            qputenv("FLOWSCOPE_MEMORY_LIMIT", m_old);
        } else {
            qunsetenv("FLOWSCOPE_MEMORY_LIMIT");
        }
    }
    ScopedMemoryLimit(const ScopedMemoryLimit&) = delete;
    ScopedMemoryLimit& operator=(const ScopedMemoryLimit&) = delete;

private:
    bool m_had;
    QByteArray m_old;
};

// A safetensors file of one F8_E4M3 tensor [rows, cols] with the given bytes.
std::string float8File(const std::string& name, int64_t rows, int64_t cols, const std::vector<uint8_t>& values) {
    const std::string header = R"({")" + name + R"(":{"dtype":"F8_E4M3","shape":[)" + std::to_string(rows) + "," +
                               std::to_string(cols) + R"(],"data_offsets":[0,)" + std::to_string(values.size()) + "]}}";
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((header.size() >> (8 * i)) & 0xFF);
    bytes += header;
    for (uint8_t value : values) bytes += char(value);
    return bytes;
}

// A T5 encoder (width 8, 2 heads of 4, feed-forward 16, 2 blocks, vocabulary 40) whose matrices
// are F8_E4M3 bytes of magnitudes 2^-6 to 2^-2 (either sign), its norms float32 ones.
std::string float8T5File() {
    std::vector<std::pair<std::string, std::vector<int64_t>>> matrices{{"shared.weight", {40, 8}},
        {"encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", {32, 2}}};
    std::vector<std::string> norms{"encoder.final_layer_norm.weight"};
    for (int b = 0; b < 2; ++b) {
        const std::string block = "encoder.block." + std::to_string(b) + ".layer.";
        for (const char* name : {"q", "k", "v", "o"}) matrices.push_back({block + "0.SelfAttention." + name + ".weight", {8, 8}});
        matrices.push_back({block + "1.DenseReluDense.wi_0.weight", {16, 8}});
        matrices.push_back({block + "1.DenseReluDense.wi_1.weight", {16, 8}});
        matrices.push_back({block + "1.DenseReluDense.wo.weight", {8, 16}});
        norms.push_back(block + "0.layer_norm.weight");
        norms.push_back(block + "1.layer_norm.weight");
    }
    std::string header = "{";
    std::string data;
    uint32_t state = 12345;
    for (const auto& [name, shape] : matrices) {
        const size_t begin = data.size();
        for (int64_t i = 0; i < shape[0] * shape[1]; ++i) {
            state = state * 1664525u + 1013904223u;
            const int exponent = 1 + int((state >> 8) % 5);  // 2^-6 .. 2^-2
            data += char(((state >> 16) & 0x80) | (exponent << 3) | ((state >> 20) & 7));
        }
        header += (header.size() > 1 ? "," : "") + ("\"" + name + "\":{\"dtype\":\"F8_E4M3\",\"shape\":[") +
                  std::to_string(shape[0]) + "," + std::to_string(shape[1]) + "],\"data_offsets\":[" + std::to_string(begin) +
                  "," + std::to_string(data.size()) + "]}";
    }
    for (const std::string& name : norms) {
        const size_t begin = data.size();
        const float one = 1.0f;
        for (int i = 0; i < 8; ++i) data.append(reinterpret_cast<const char*>(&one), sizeof one);
        header += ",\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[" + std::to_string(begin) + "," +
                  std::to_string(data.size()) + "]}";
    }
    header += "}";
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((header.size() >> (8 * i)) & 0xFF);
    return bytes + header + data;
}

}  // namespace

class TestFlux : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QVERIFY2(fs::exists(fixture("reference.safetensors")), "run resources/fixtures/make_flux.py");
    }

    // E4M3FN by hand: sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is subnormal
    // (m/8 2^-6), S.1111.111 is NaN, no infinities; E5M2 is an IEEE half's top byte.
    void float8IsDecodedExactly() {
        const std::string header = R"({"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]},)"
                                   R"("b":{"dtype":"F8_E5M2","shape":[3],"data_offsets":[8,11]}})";
        std::string bytes(8, '\0');
        for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((header.size() >> (8 * i)) & 0xFF);
        bytes += header;
        for (int byte : {0x38, 0xB8, 0x7E, 0x01, 0x08, 0x3C, 0x7F, 0x00}) bytes += char(byte);
        for (int byte : {0x3C, 0xC0, 0x7C}) bytes += char(byte);
        const SafeTensorsFile file = SafeTensorsFile::parse(bytes);
        const torch::Tensor a = file.tensor("a");
        const std::vector<float> expected{1.0f, -1.0f, 448.0f, std::ldexp(1.0f, -9), std::ldexp(1.0f, -6), 1.5f};
        for (size_t i = 0; i < expected.size(); ++i) QCOMPARE(a[int64_t(i)].item<float>(), expected[i]);
        QVERIFY(std::isnan(a[6].item<float>()));
        QCOMPARE(a[7].item<float>(), 0.0f);
        const torch::Tensor b = file.tensor("b");
        QCOMPARE(b[0].item<float>(), 1.0f);
        QCOMPARE(b[1].item<float>(), -2.0f);
        QVERIFY(std::isinf(b[2].item<float>()));
    }

    void transformerMatchesTheReference() {
        c10::InferenceMode inference;
        const auto model = open(fixture("schnell"));
        const torch::Tensor out = model->forwardRaw(ref("x").to(torch::kFloat32), ref("sigma").to(torch::kFloat32),
                                                    ref("txt").to(torch::kFloat32), ref("vec").to(torch::kFloat32), 3.5, nullptr);
        QCOMPARE(out.sizes().vec(), ref("schnell_out").sizes().vec());
        QVERIFY2(relativeError(out, ref("schnell_out")) < 1e-4, qPrintable(QString::number(relativeError(out, ref("schnell_out")))));
    }

    // [dev] with its guidance input, stored in bfloat16 and in float8 (E4M3, converted here).
    void devInBfloat16AndFloat8MatchTheReference() {
        c10::InferenceMode inference;
        for (const auto& [file, output] : {std::pair{"dev-bf16.safetensors", "dev_bf16_out"}, std::pair{"dev-fp8.safetensors", "dev_fp8_out"}}) {
            const auto model = open(fixture(file));
            QCOMPARE(model->layout().family, CheckpointLayout::Family::Flux1Dev);
            const torch::Tensor out = model->forwardRaw(ref("x").to(torch::kFloat32), ref("sigma").to(torch::kFloat32),
                                                        ref("txt").to(torch::kFloat32), ref("vec").to(torch::kFloat32), 3.5, nullptr);
            const double error = relativeError(out, ref(output));
            QVERIFY2(error < 1e-4, qPrintable(QString("%1: %2").arg(file).arg(error)));
        }
    }

    void textEncodersMatchTheReference() {
        c10::InferenceMode inference;
        const CheckpointLayout layout = findCheckpoint(fixture("schnell"), {});
        const ClipTextModel clip(Weights(layout.clipL.files, layout.clipL.prefix, torch::kFloat32, torch::kCPU),
                                 ClipTextModel::Activation::QuickGelu);
        const ClipTokenizer tokenizer = ClipTokenizer::load(layout.clipVocab, layout.clipMerges);
        const auto out = clip.forward(ref("clip_ids").to(torch::kInt64), tokenizer.endId());
        QVERIFY(relativeError(out.hidden, ref("clip_hidden")) < 1e-4);
        QVERIFY(relativeError(out.pooled, ref("clip_pooled")) < 1e-4);
        const T5Encoder t5(Weights(layout.t5.files, layout.t5.prefix, torch::kFloat32, torch::kCPU));
        const torch::Tensor hidden = t5.forward(ref("t5_ids").to(torch::kInt64));
        QVERIFY2(relativeError(hidden, ref("t5_hidden")) < 1e-4, qPrintable(QString::number(relativeError(hidden, ref("t5_hidden")))));
    }

    // T5's relative-position buckets, by hand: exact below 8 either way (keys after the query
    // in the upper 16), then logarithmic: 8 + floor(log(d/8)/log(16) * 8), capped at 15.
    void t5BucketsFollowTheirDefinition() {
        QCOMPARE(T5Encoder::bucket(0), int64_t(0));
        QCOMPARE(T5Encoder::bucket(-3), int64_t(3));
        QCOMPARE(T5Encoder::bucket(3), int64_t(19));
        QCOMPARE(T5Encoder::bucket(-8), int64_t(8));
        QCOMPARE(T5Encoder::bucket(-16), int64_t(10));   // log(2)/log(16) * 8 = 2
        QCOMPARE(T5Encoder::bucket(-127), int64_t(15));  // 8 + floor(7.98)
        QCOMPARE(T5Encoder::bucket(-1000), int64_t(15));
        QCOMPARE(T5Encoder::bucket(1000), int64_t(31));
    }

    void autoencoderMatchesTheReference() {
        c10::InferenceMode inference;
        const auto model = open(fixture("schnell"));
        const torch::Tensor decoded = model->decodeLatents(ref("ae_latents").to(torch::kFloat32), nullptr);
        QCOMPARE(decoded.sizes().vec(), ref("ae_decoded").sizes().vec());
        QVERIFY2(relativeError(decoded, ref("ae_decoded")) < 1e-4, qPrintable(QString::number(relativeError(decoded, ref("ae_decoded")))));
        const torch::Tensor encoded = model->encode(ref("ae_images").to(torch::kFloat32));
        QVERIFY2(relativeError(encoded, ref("ae_encoded")) < 1e-4, qPrintable(QString::number(relativeError(encoded, ref("ae_encoded")))));
    }

    void promptEncodesEndToEnd() {
        c10::InferenceMode inference;
        const auto model = open(fixture("schnell"));
        const auto encoded = model->encodePrompt("a photo of a cat", nullptr);
        QCOMPARE(encoded.t5Ids.size(1), int64_t(256));
        QVERIFY(relativeError(encoded.txt, ref("prompt_txt")) < 1e-4);
        QVERIFY(relativeError(encoded.vec, ref("prompt_vec")) < 1e-4);
    }

    // The folder, the all-in-one file and the separate encoder files hold the same networks (the
    // all-in-one and the ComfyUI encoder files in float16: equal to the folder's weights rounded).
    void everyLayoutLoadsTheSameWeights() {
        const CheckpointLayout folder = findCheckpoint(fixture("schnell"), {});
        const CheckpointLayout allInOne = findCheckpoint(fixture("all-in-one.safetensors"), {});
        TextSettings separate;
        separate.clipL = fixture("clip_l.safetensors");
        separate.t5 = fixture("t5xxl.safetensors");
        separate.autoencoder = fixture("schnell/ae.safetensors");
        separate.tokenizers = fixture("schnell");
        const CheckpointLayout single = findCheckpoint(fixture("schnell/flux1-schnell.safetensors"), separate);
        auto compare = [](const CheckpointPart& a, const CheckpointPart& b) {
            const Weights wa(a.files, a.prefix, torch::kFloat32, torch::kCPU), wb(b.files, b.prefix, torch::kFloat32, torch::kCPU);
            QCOMPARE(wa.names(), wb.names());
            for (const std::string& name : wa.names()) {
                const torch::Tensor x = wa.get(name), y = wb.get(name);
                const torch::Tensor rounded = x.to(torch::kFloat16).to(torch::kFloat32);
                QVERIFY2(torch::equal(y, x) || torch::equal(y, rounded) ||
                             torch::equal(y, x.to(torch::kBFloat16).to(torch::kFloat32)),
                         name.c_str());
            }
        };
        for (const CheckpointLayout* other : {&allInOne, &single}) {
            QVERIFY(other->autoencoder.found() && other->clipL.found() && other->t5.found());
            compare(folder.transformer, other->transformer);
            compare(folder.autoencoder, other->autoencoder);
            compare(folder.clipL, other->clipL);
            compare(folder.t5, other->t5);
        }
        QCOMPARE(folder.t5.files->paths().size(), size_t(2));  // the sharded T5, through its index
        QVERIFY(!single.clipVocab.empty() && !single.t5Model.empty());
    }

    // The memory estimate follows the engine's rule: float32 where it fits in 80% of the memory,
    // bfloat16 where only that fits, and a refusal in words below; the encoders before the rest.
    void memoryEstimateFollowsTheLoadingRule() {
        const CheckpointInfo info = inspectCheckpoint(fixture("schnell"));
        std::map<std::string, double> parameters;
        for (const auto& part : info.parts) parameters[part.name] = double(part.parameters);
        const double transformer = 4.0 * parameters["transformer"];
        const double autoencoder = 4.0 * parameters["autoencoder"];
        const double encoder = 4.0 * std::max(parameters["clip_l"], parameters["t5"]);
        CheckpointMemory roomy = estimateCheckpointMemory(info, 1e12);
        QCOMPARE(roomy.transformerDtype, std::string("float32"));
        QCOMPARE(roomy.transformerBytes, transformer);
        QCOMPARE(roomy.encoderBytes, encoder);
        QCOMPARE(roomy.autoencoderBytes, autoencoder);
        QCOMPARE(roomy.peakBytes, transformer + autoencoder + encoder);
        QVERIFY(roomy.fits);
        QVERIFY2(roomy.summary.rfind("Needs about", 0) == 0, roomy.summary.c_str());
        // Room for the transformer in bfloat16 only (float32 takes more than 80%).
        const double tight = transformer / 0.8 * 0.9;
        const CheckpointMemory narrow = estimateCheckpointMemory(info, tight);
        QCOMPARE(narrow.transformerDtype, std::string("bfloat16"));
        QCOMPARE(narrow.transformerBytes, transformer / 2.0);
        const CheckpointMemory none = estimateCheckpointMemory(info, transformer / 4.0);
        QVERIFY(!none.fits);
        QVERIFY2(none.summary.find("Does not fit") == 0 && none.summary.find("fp8") != std::string::npos,
                 none.summary.c_str());
    }

    // Sizes as users write them, in binary units; anything else is no size.
    void memorySizesParse() {
        QCOMPARE(parseMemorySize("4096"), 4096.0);
        QCOMPARE(parseMemorySize("8G"), 8.0 * 1024 * 1024 * 1024);
        QCOMPARE(parseMemorySize(" 512m "), 512.0 * 1024 * 1024);
        QCOMPARE(parseMemorySize("1.5T"), 1.5 * 1024 * 1024 * 1024 * 1024);
        QCOMPARE(parseMemorySize("64k"), 65536.0);
        for (const char* bad : {"", "G", "eight", "-1G", "0", "1e999", "0x10", "12 GB", "nan", "inf"}) {
            QVERIFY2(parseMemorySize(bad) < 0.0, bad);
        }
    }

    // FLOWSCOPE_MEMORY_LIMIT lowers the memory FlowScope weighs against, never raises it, and a
    // value that is no size is refused in words.
    void memoryLimitFromTheEnvironment() {
        const double machine = [] {
            const ScopedMemoryLimit none("");
            return machineMemoryBytes();
        }();
        QVERIFY(machine > 0.0);
        {
            const ScopedMemoryLimit limit("3G");
            QCOMPARE(machineMemoryBytes(), std::min(machine, 3.0 * 1024 * 1024 * 1024));
        }
        {
            const ScopedMemoryLimit limit("1000T");
            QCOMPARE(machineMemoryBytes(), machine);
        }
        const ScopedMemoryLimit bad("lots");
        const std::string message = messageOf([] { machineMemoryBytes(); });
        QVERIFY2(message.find("FLOWSCOPE_MEMORY_LIMIT='lots'") != std::string::npos && message.find("8G") != std::string::npos,
                 message.c_str());
    }

    // What is free now can only lower the room a part may take, below FlowScope's share.
    void freeMemoryLowersTheRoom() {
        const ScopedMemoryLimit none("");
        const double machine = machineMemoryBytes();
        const double free = freeMemoryBytes();
        QVERIFY2(free > 0.0 && free <= machine, qPrintable(QString("%1 free of %2").arg(free).arg(machine)));
        const double room = cpuRoomBytes(kCpuMemoryShare);
        QVERIFY(room > 0.0 && room <= kCpuMemoryShare * machine);
        const ScopedMemoryLimit limit("1M");
        QVERIFY(cpuRoomBytes(kCpuMemoryShare) <= kCpuMemoryShare * 1024 * 1024);
        // The estimate says what is free where that is the limit; given sizes, it weighs them alone.
        const CheckpointInfo info = inspectCheckpoint(fixture("schnell"));
        QCOMPARE(estimateCheckpointMemory(info, 1e12, "cpu").freeBytes, 0.0);
        QVERIFY(estimateCheckpointMemory(info, 0.0, "cpu").freeBytes > 0.0);
    }

    // The placement rule by its cases: p parameters of which q are float8; bytes are 4p (float32),
    // 4(p - q) + q (float8 packed, float32 compute), 2p (bfloat16), 2(p - q) + q; first that fits.
    void partPlacementFollowsTheOrder() {
        const PartSize fp8{1000.0, 900.0};
        const PartSize plain{1000.0, 0.0};
        const auto check = [](const PartPlacement& p, bool bfloat16, bool packed, double bytes, bool fits) {
            QCOMPARE(p.bfloat16, bfloat16);
            QCOMPARE(p.packFloat8, packed);
            QCOMPARE(p.bytes, bytes);
            QCOMPARE(p.fits, fits);
        };
        check(placePart(fp8, 10.0, 4010.0, false), false, false, 4010.0, true);
        check(placePart(fp8, 10.0, 4009.0, false), false, true, 1310.0, true);
        check(placePart(fp8, 10.0, 1309.0, false), true, true, 1110.0, true);
        check(placePart(fp8, 10.0, 1109.0, false), true, true, 1110.0, false);  // none fits: the smallest
        QCOMPARE(placePart(fp8, 10.0, 1109.0, false).describe(), std::string("float8 (computed in bfloat16)"));
        check(placePart(fp8, 10.0, 0.0, false), false, false, 4010.0, true);  // unknown memory: the first
        check(placePart(plain, 0.0, 3999.0, false), true, false, 2000.0, true);
        check(placePart(plain, 0.0, 1999.0, false), true, false, 2000.0, false);
        // A GPU computes in bfloat16, packed where plain bfloat16 does not fit.
        check(placePart(fp8, 0.0, 2000.0, true), true, false, 2000.0, true);
        check(placePart(fp8, 0.0, 1999.0, true), true, true, 1100.0, true);
        check(placePart(plain, 0.0, 1999.0, true), true, false, 2000.0, false);
        QCOMPARE(placePart(fp8, 0.0, 1999.0, false).describe(), std::string("float8 (computed in float32)"));
    }

    // A float8 matrix kept packed is one byte per value and gives the same products (and the same
    // embedding rows) as the same matrix widened at load; a NaN byte is refused naming the tensor.
    void packedFloat8LinearEqualsTheWidenedOne() {
        c10::InferenceMode inference;
        QTemporaryDir dir;
        std::vector<uint8_t> values;
        // Bytes of both signs, many exponents and mantissas, bit 3 clear so that none is NaN (S.1111.111).
        for (int i = 0; i < 6 * 5; ++i) values.push_back(uint8_t(((i * 37 + 11) % 256) & 0xF7));
        const std::string path = (dir.path() + "/w.safetensors").toStdString();
        { std::ofstream(path, std::ios::binary) << float8File("layer.weight", 6, 5, values); }
        const auto files = WeightFiles::open({path});
        const layers::Linear packed = layers::Linear::load(Weights(files, "", torch::kFloat32, torch::kCPU, nullptr, true), "layer",
                                                           5, 6, /*withBias=*/false);
        const layers::Linear wide = layers::Linear::load(Weights(files, "", torch::kFloat32, torch::kCPU), "layer", 5, 6, false);
        QCOMPARE(packed.weight.scalar_type(), torch::kByte);
        QCOMPARE(packed.weight.nbytes(), size_t(30));
        QCOMPARE(packed.dtype(), torch::kFloat32);
        QCOMPARE(wide.weight.scalar_type(), torch::kFloat32);
        QVERIFY(torch::equal(packed.widened(), wide.weight));
        const torch::Tensor x = torch::randn({3, 5});
        QVERIFY(torch::equal(packed(x), wide(x)));
        // As an embedding: only the rows looked up are widened, to the same values.
        const auto rows = layers::Embedding::load(Weights(files, "", torch::kFloat32, torch::kCPU, nullptr, true), "layer.weight");
        QCOMPARE(rows.weight.scalar_type(), torch::kByte);
        const torch::Tensor ids = torch::tensor({5, 0, 5, 2}, torch::kInt64).reshape({2, 2});
        const torch::Tensor looked = rows.rows(ids);
        QCOMPARE(looked.sizes().vec(), (std::vector<int64_t>{2, 2, 5}));
        QVERIFY(torch::equal(looked, wide.weight.index_select(0, ids.reshape({-1})).view({2, 2, 5})));
        values[7] = 0xFF;  // -NaN
        const std::string nanPath = (dir.path() + "/nan.safetensors").toStdString();
        { std::ofstream(nanPath, std::ios::binary) << float8File("layer.weight", 6, 5, values); }
        const std::string message = messageOf([&] {
            layers::Linear::load(Weights(WeightFiles::open({nanPath}), "", torch::kFloat32, torch::kCPU, nullptr, true), "layer");
        });
        QVERIFY2(message.find("layer.weight") != std::string::npos && message.find("NaN") != std::string::npos, message.c_str());
    }

    // T5 (the usual fp8 text encoder) keeps its matrices, embedding and position-bias table
    // packed, and encodes to the same hidden states as with everything widened at load.
    void float8T5StaysPackedAndEncodesTheSame() {
        c10::InferenceMode inference;
        QTemporaryDir dir;
        const std::string path = (dir.path() + "/t5.safetensors").toStdString();
        { std::ofstream(path, std::ios::binary) << float8T5File(); }
        const auto files = WeightFiles::open({path});
        const Weights packedWeights(files, "", torch::kFloat32, torch::kCPU, nullptr, true);
        QCOMPARE(packedWeights.float8Parameters(), int64_t(40 * 8 + 32 * 2 + 2 * (4 * 64 + 3 * 128)));
        const T5Encoder packed(packedWeights);
        const T5Encoder wide(Weights(files, "", torch::kFloat32, torch::kCPU));
        // Every matrix one byte per value; only the five float32 norms of 8 values stay wide.
        QCOMPARE(packed.heldBytes(), packedWeights.float8Parameters() + int64_t(5 * 8 * 4));
        QCOMPARE(wide.heldBytes(), 4 * packedWeights.float8Parameters() + int64_t(5 * 8 * 4));
        const torch::Tensor ids = torch::tensor({3, 17, 39, 0, 1}, torch::kInt64).reshape({1, 5});
        const torch::Tensor a = packed.forward(ids);
        QVERIFY(torch::isfinite(a).all().item<bool>());
        QVERIFY(torch::equal(a, wide.forward(ids)));
    }

    // Where float32 would not fit, the fp8 file's transformer keeps its matrices packed (the note
    // says so) and computes the same output as in float32 to the last bit.
    void fp8TransformerStaysPackedWhereFloat32DoesNotFit() {
        c10::InferenceMode inference;
        const auto input = [] {
            return std::vector<torch::Tensor>{ref("x").to(torch::kFloat32), ref("sigma").to(torch::kFloat32),
                                              ref("txt").to(torch::kFloat32), ref("vec").to(torch::kFloat32)};
        };
        const auto run = [&](flux::FluxModel& model) {
            const auto in = input();
            return model.forwardRaw(in[0], in[1], in[2], in[3], 3.5, nullptr);
        };
        torch::Tensor wide;
        {
            const ScopedMemoryLimit none("");
            const auto model = open(fixture("dev-fp8.safetensors"));
            wide = run(*model);
            QVERIFY(model->takeNotes().empty());
        }
        const auto model = open(fixture("dev-fp8.safetensors"));
        const PartSize size = CheckpointModel::partSize(model->layout().transformer);
        QVERIFY(size.float8Parameters > 0.5 * size.parameters);
        const double activations = model->transformerActivationBytes();
        const double float32 = 4.0 * size.parameters + activations;
        const double packed = 4.0 * (size.parameters - size.float8Parameters) + size.float8Parameters + activations;
        const ScopedMemoryLimit limit(std::to_string(int64_t((float32 + packed) / 2.0 / kCpuMemoryShare)));
        const torch::Tensor out = run(*model);
        const std::vector<std::string> notes = model->takeNotes();
        QVERIFY2(notes.size() == 1 && notes[0].find("runs in float8 (computed in float32) on the CPU") != std::string::npos,
                 notes.empty() ? "no note" : notes[0].c_str());
        QVERIFY(torch::equal(out, wide));
        QVERIFY(relativeError(out, ref("dev_fp8_out")) < 1e-4);
        // Below the packed size: refused in words, without the fp8 advice (this is the fp8 file).
        const auto small = open(fixture("dev-fp8.safetensors"));
        const ScopedMemoryLimit tiny(std::to_string(int64_t(0.5 * packed / kCpuMemoryShare)));
        const std::string message = messageOf([&] { run(*small); });
        QVERIFY2(message.find("more than this machine's memory") != std::string::npos && message.find("fp8") == std::string::npos,
                 message.c_str());
    }

    // The estimate follows the same rule: packed float8 on the CPU where float32 does not fit; on
    // a GPU bfloat16 against its free memory, packed where that does not fit.
    void memoryEstimateKeepsFloat8PackedAndWeighsTheGpu() {
        const CheckpointInfo info = inspectCheckpoint(fixture("dev-fp8.safetensors"));
        const CheckpointInfo::Part& transformer = info.parts.front();
        QCOMPARE(transformer.name, std::string("transformer"));
        const double p = double(transformer.parameters);
        const double q = double(transformer.float8Parameters);
        QVERIFY(q > 0.0);
        const CheckpointMemory cpu = estimateCheckpointMemory(info, 4.0 * p / kCpuMemoryShare * 0.99, "cpu");
        QCOMPARE(cpu.transformerDtype, std::string("float8 (computed in float32)"));
        QCOMPARE(cpu.transformerBytes, 4.0 * (p - q) + q);
        QVERIFY(cpu.fits && !cpu.gpu);
        const CheckpointMemory gpu = estimateCheckpointMemory(info, 1e12, "cuda");
        QVERIFY(gpu.gpu && gpu.fits);
        QCOMPARE(gpu.transformerDtype, std::string("bfloat16"));
        QCOMPARE(gpu.transformerBytes, 2.0 * p);
        QVERIFY2(gpu.summary.find("of the GPU's") != std::string::npos, gpu.summary.c_str());
        const CheckpointMemory tight = estimateCheckpointMemory(info, 2.0 * p / kGpuMemoryShare * 0.99, "cuda");
        QCOMPARE(tight.transformerDtype, std::string("float8 (computed in bfloat16)"));
        QCOMPARE(tight.transformerBytes, 2.0 * (p - q) + q);
        const CheckpointMemory none = estimateCheckpointMemory(info, q / kGpuMemoryShare * 0.5, "cuda");
        QVERIFY(!none.fits);
        QVERIFY2(none.summary.find("--device cpu") != std::string::npos && none.summary.find("fp8") == std::string::npos,
                 none.summary.c_str());
    }

    void brokenCheckpointsAreRefusedNamingTheKey() {
        QTemporaryDir dir;
        const SafeTensorsFile source = SafeTensorsFile::read(fixture("schnell/flux1-schnell.safetensors"));
        std::vector<std::pair<std::string, torch::Tensor>> tensors;
        for (const auto& entry : source.entries()) tensors.emplace_back(entry.name, source.tensor(entry.name));
        // A missing tensor.
        auto missing = tensors;
        missing.erase(std::find_if(missing.begin(), missing.end(), [](const auto& t) { return t.first == "single_blocks.0.linear2.weight"; }));
        const std::string missingPath = (dir.path() + "/missing.safetensors").toStdString();
        writeSafeTensors(missingPath, missing);
        QVERIFY(messageOf([&] { open(missingPath)->forwardRaw(ref("x").to(torch::kFloat32), ref("sigma").to(torch::kFloat32),
                                                               ref("txt").to(torch::kFloat32), ref("vec").to(torch::kFloat32), 0, nullptr); })
                    .find("single_blocks.0.linear2.weight") != std::string::npos);
        // A misshapen one.
        auto misshapen = tensors;
        for (auto& [name, tensor] : misshapen) {
            if (name == "double_blocks.0.txt_attn.proj.weight") tensor = tensor.narrow(0, 0, tensor.size(0) - 1).contiguous();
        }
        const std::string misshapenPath = (dir.path() + "/misshapen.safetensors").toStdString();
        writeSafeTensors(misshapenPath, misshapen);
        const std::string shapeMessage = messageOf([&] {
            open(misshapenPath)->forwardRaw(ref("x").to(torch::kFloat32), ref("sigma").to(torch::kFloat32), ref("txt").to(torch::kFloat32),
                                            ref("vec").to(torch::kFloat32), 0, nullptr);
        });
        QVERIFY2(shapeMessage.find("double_blocks.0.txt_attn.proj.weight") != std::string::npos, shapeMessage.c_str());
        // A truncated file, and a file of another family.
        const std::string bytes = test::readBytes(QString::fromStdString(fixture("schnell/flux1-schnell.safetensors")));
        const QString truncated = dir.path() + "/truncated.safetensors";
        test::writeBytes(truncated, bytes.substr(0, bytes.size() - 100));
        QVERIFY(!messageOf([&] { findCheckpoint(truncated.toStdString(), {}); }).empty());
        const std::string other = (dir.path() + "/other.safetensors").toStdString();
        writeSafeTensors(other, {{"conv.weight", torch::zeros({2, 2})}});
        const std::string otherMessage = messageOf([&] { findCheckpoint(other, {}); });
        QVERIFY2(otherMessage.find("conv.weight") != std::string::npos && otherMessage.find("double_blocks") != std::string::npos,
                 otherMessage.c_str());
        // A transformer alone cannot encode a prompt: the message says what to give.
        const std::string lacking = messageOf([&] { open(fixture("dev-bf16.safetensors"))->encodePrompt("x", nullptr); });
        QVERIFY2(lacking.find("--") != std::string::npos, lacking.c_str());
    }

    // One Euler step on the linear path from sigma = 1 ends at x - raw(x, sigma = 1): the engine
    // takes the network's eps - x0 output with the sign and time input DESIGN.md section 7 gives.
    void samplesThroughTheEngine() {
        Engine engine;
        SampleRequest request = smallSchnellRequest();
        request.steps = 1;
        request.seed = 3;
        const SampleResult result = engine.sample(request);
        QVERIFY2(result.ok(), result.error.c_str());
        QCOMPARE(result.sampleShape, (std::vector<int64_t>{16, 4, 6}));
        c10::InferenceMode inference;
        const auto model = open(fixture("schnell"));
        const auto encoded = model->encodePrompt("a photo of a cat", nullptr);
        const torch::Tensor noise = torch::randn({1, 16, 4, 6}, at::detail::createCPUGenerator(3));
        const torch::Tensor raw = model->forwardRaw(noise, torch::ones({1}), encoded.txt, encoded.vec, 3.5, nullptr);
        const torch::Tensor expected = noise - raw;
        const torch::Tensor got = torch::tensor(result.final.values).reshape({1, 16, 4, 6});
        QVERIFY2(test::maxAbsDiff(got, expected) < 1e-4, qPrintable(QString::number(test::maxAbsDiff(got, expected))));
        QVERIFY(!result.finalImage.shape.empty());  // decoded by the autoencoder
        QCOMPARE(result.finalImage.shape, (std::vector<int64_t>{1, 3, 32, 48}));
    }

    // Image to image goes through the autoencoder's encoder: at strength 0 the run returns the
    // encoder's latents themselves (the reference's), and a strength of 0.5 runs half the grid.
    void imagesStartRunsThroughTheEncoder() {
        Engine engine;
        SampleRequest request = smallSchnellRequest();
        request.steps = 4;
        request.start.kind = RunStart::Kind::Image;
        const torch::Tensor images = ref("ae_images").to(torch::kFloat32).contiguous();
        request.start.image.shape = images.sizes().vec();
        request.start.image.values.assign(images.data_ptr<float>(), images.data_ptr<float>() + images.numel());
        request.start.time = 1.0;
        const SampleResult kept = engine.sample(request);
        QVERIFY2(kept.ok(), kept.error.c_str());
        const torch::Tensor latents = torch::tensor(kept.final.values).reshape({1, 16, 4, 6});
        QVERIFY(relativeError(latents, ref("ae_encoded")) < 1e-4);
        request.start.time = 0.5;
        const SampleResult half = engine.sample(request);
        QVERIFY2(half.ok(), half.error.c_str());
        QCOMPARE(half.nfe, 2);
        // An image of another size than the run's is refused in words.
        request.text.width = 64;
        const SampleResult refused = engine.sample(request);
        QVERIFY(!refused.ok());
    }

    void promptsAreRefusedByOtherModels() {
        Engine engine;
        SampleRequest request;
        request.model = "gmm:8gaussians";
        request.text.prompt = "a cat";
        const SampleResult result = engine.sample(request);
        QVERIFY(!result.ok());
        QVERIFY(result.error.find("prompt") != std::string::npos);
    }
};

QTEST_GUILESS_MAIN(TestFlux)
#include "tst_flux.moc"
