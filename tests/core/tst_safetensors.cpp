// The safetensors reader and writer: round trips for every dtype, metadata, and one distinct
// refusal for each rule of the reference implementation's validation.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include "core/io/Json.h"
#include "core/io/SafeTensors.h"

using namespace flowscope::core;

namespace {

// A file with the given header text and `dataBytes` bytes of data.
std::string fileWith(const std::string& header, size_t dataBytes, uint64_t declaredLength = UINT64_MAX) {
    const uint64_t length = declaredLength == UINT64_MAX ? header.size() : declaredLength;
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = char((length >> (8 * i)) & 0xff);
    return bytes + header + std::string(dataBytes, '\x01');
}

QString refusal(const std::string& bytes) {
    try {
        SafeTensorsFile::parse(bytes);
    } catch (const SafeTensorsError& error) {
        return error.what();
    }
    return {};
}

}  // namespace

class TestSafeTensors : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void roundTripEveryDtype();
    void metadataAndEmptyTensors();
    void layoutMatchesTheFormat();
    void refusals_data();
    void refusals();
    void writerRefusesBadNames();
    void jsonParserIsStrict();
};

void TestSafeTensors::roundTripEveryDtype() {
    torch::manual_seed(3);
    std::vector<std::pair<std::string, torch::Tensor>> tensors{
        {"f64", torch::randn({2, 3}, torch::kFloat64)},
        {"f32", torch::randn({4}, torch::kFloat32)},
        {"f16", torch::randn({3, 1}).to(torch::kFloat16)},
        {"bf16", torch::randn({5}).to(torch::kBFloat16)},
        {"i64", torch::randint(-1000000, 1000000, {3}, torch::kInt64)},
        {"i32", torch::randint(-1000, 1000, {2, 2}, torch::kInt32)},
        {"i16", torch::randint(-100, 100, {3}, torch::kInt16)},
        {"i8", torch::randint(-100, 100, {3}, torch::kInt8)},
        {"u8", torch::randint(0, 255, {7}, torch::kUInt8)},
        {"bool", torch::rand({6}) > 0.5},
        {"noncontiguous", torch::randn({3, 4}).t()},
    };
    const SafeTensorsFile file = SafeTensorsFile::parse(encodeSafeTensors(tensors));
    QCOMPARE(file.entries().size(), tensors.size());
    for (const auto& [name, tensor] : tensors) {
        const torch::Tensor back = file.tensor(name);
        QCOMPARE(back.scalar_type(), tensor.scalar_type());
        QVERIFY2(torch::equal(back, tensor), name.c_str());
    }
}

void TestSafeTensors::metadataAndEmptyTensors() {
    QTemporaryDir dir;
    const std::string path = dir.filePath("m.safetensors").toStdString();
    writeSafeTensors(path, {{"empty", torch::zeros({0, 3})}, {"x", torch::ones({2})}},
                     {{"model", "gmm:8gaussians"}, {"quote", "a \"b\"\n"}});
    const SafeTensorsFile file = SafeTensorsFile::read(path);
    QCOMPARE(file.metadata().at("model"), std::string("gmm:8gaussians"));
    QCOMPARE(file.metadata().at("quote"), std::string("a \"b\"\n"));
    QCOMPARE(file.tensor("empty").sizes().vec(), (std::vector<int64_t>{0, 3}));
    QVERIFY(file.contains("x") && !file.contains("y"));
    QVERIFY_THROWS_EXCEPTION(SafeTensorsError, file.tensor("y"));
}

void TestSafeTensors::layoutMatchesTheFormat() {
    const std::string bytes = encodeSafeTensors({{"a", torch::tensor({1.0f, 2.0f})}});
    uint64_t length = 0;
    for (int i = 7; i >= 0; --i) length = (length << 8) | uint8_t(bytes[i]);
    QCOMPARE((8 + length) % 8, uint64_t(0));  // data 8-byte aligned
    const JsonValue header = parseJson(std::string_view(bytes).substr(8, length));
    const auto& a = header.object().at("a").object();
    QCOMPARE(a.at("dtype").string(), std::string("F32"));
    uint64_t begin = 1, end = 0;
    QVERIFY(a.at("data_offsets").array()[0].toUnsigned(&begin) && a.at("data_offsets").array()[1].toUnsigned(&end));
    QCOMPARE(begin, uint64_t(0));
    QCOMPARE(end, uint64_t(8));
    float values[2];
    std::memcpy(values, bytes.data() + 8 + length, 8);
    QCOMPARE(values[1], 2.0f);
}

void TestSafeTensors::refusals_data() {
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("message");
    auto add = [](const char* row, const std::string& bytes, const char* message) {
        QTest::newRow(row) << QByteArray(bytes.data(), qsizetype(bytes.size())) << QString(message);
    };
    const std::string one = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    add("valid", fileWith(one, 8), "");
    add("too short", std::string(5, '\0'), "shorter than its 8-byte header length");
    add("header over 100 MB", fileWith(one, 8, 100'000'001), "more than the 100 MB allowed");
    add("header past the end", fileWith(one, 8, one.size() + 100), "runs past the end of the file");
    add("not an object start", fileWith("[1,2]", 0), "does not start with '{'");
    add("malformed JSON", fileWith(R"({"a":{"dtype":"F32",)", 0), "not valid JSON");
    add("unknown dtype", fileWith(R"({"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", 1), "unknown dtype 'F8'");
    add("missing field", fileWith(R"({"a":{"dtype":"F32","shape":[1]}})", 4), "lacks dtype, shape or data_offsets");
    add("size mismatch", fileWith(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "but its dtype and shape need 12");
    add("gap", fileWith(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})", 5),
        "contiguous from 0");
    add("overlap", fileWith(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", 4),
        "contiguous from 0");
    add("not from 0", fileWith(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})", 3), "contiguous from 0");
    add("trailing data", fileWith(one, 9), "the data section has 9");
    add("short data", fileWith(one, 6), "the data section has 6");
    add("overflow", fileWith(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
        "overflows");
    add("negative dim", fileWith(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "malformed shape");
    add("bad metadata", fileWith(R"({"__metadata__":{"k":1}})", 0), "is not a string");
    add("unknown field", fileWith(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":0}})", 1), "unknown field 'x'");
}

void TestSafeTensors::refusals() {
    QFETCH(QByteArray, bytes);
    QFETCH(QString, message);
    const QString got = refusal(std::string(bytes.constData(), size_t(bytes.size())));
    if (message.isEmpty()) {
        QVERIFY2(got.isEmpty(), qPrintable(got));
    } else {
        QVERIFY2(got.contains(message), qPrintable(got));
    }
}

void TestSafeTensors::writerRefusesBadNames() {
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, encodeSafeTensors({{"a", torch::ones({1})}, {"a", torch::ones({1})}}));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, encodeSafeTensors({{"__metadata__", torch::ones({1})}}));
}

void TestSafeTensors::jsonParserIsStrict() {
    QVERIFY(parseJson(R"({"a":[1,2.5e3,-0,true,false,null,"\u00e9\ud83d\ude00"]})").isObject());
    QCOMPARE(parseJson(R"("\u00e9")").string(), std::string("\xc3\xa9"));
    for (const char* bad : {"{\"a\":1,}", "[1,]", "{'a':1}", "01", "1.", "\"\\x\"", "{\"a\":1,\"a\":2}", "[1] x",
                            "\"\\ud800\"", "tru"}) {
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, parseJson(bad));
    }
    std::string deep(100, '[');
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, parseJson(deep + std::string(100, ']')));
    uint64_t value = 0;
    QVERIFY(parseJson("18446744073709551615").toUnsigned(&value));
    QCOMPARE(value, UINT64_MAX);
    QVERIFY(!parseJson("18446744073709551616").toUnsigned(&value));
    QVERIFY(!parseJson("1.5").toUnsigned(&value));
}

QTEST_GUILESS_MAIN(TestSafeTensors)
#include "tst_safetensors.moc"
