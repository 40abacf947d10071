// The text encoders' tokenizers: CLIP's byte-level BPE on a tiny vocabulary whose ids are worked out
// by hand below, T5's SentencePiece (FlowScope's own reader) on hand-built unigram models, both
// against the reference tokenizations of resources/fixtures/flux/tokens.json (made by make_flux.py's
// own Python tokenizers), and a refusal in words for each kind of broken file. The T5 ids written
// out below are SentencePiece 0.1.97's for the same models and prompts.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include <QtTest/QtTest>

#include "core/io/Json.h"
#include "core/models/text/ClipTokenizer.h"
#include "core/models/text/T5Tokenizer.h"

using namespace flowscope::core;

namespace {

const std::string kFixtures = FLOWSCOPE_SOURCE_DIR "/resources/fixtures/flux/";

// CLIP's byte symbols in vocabulary order: the printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ' stand for
// themselves (ids 0..187), the other 68 bytes for U+0100.. in byte order (ids 188..255).
std::vector<std::string> byteSymbolsInIdOrder() {
    std::vector<int> bytes;
    for (int b = 0x21; b <= 0x7e; ++b) bytes.push_back(b);
    for (int b = 0xa1; b <= 0xac; ++b) bytes.push_back(b);
    for (int b = 0xae; b <= 0xff; ++b) bytes.push_back(b);
    std::vector<int> codes = bytes;
    int next = 0x100;
    for (int b = 0; b < 256; ++b) {
        if (std::find(bytes.begin(), bytes.end(), b) == bytes.end()) codes.push_back(next++);
    }
    std::vector<std::string> symbols;
    for (int code : codes) symbols.push_back(QString(QChar(code)).toStdString());
    return symbols;
}

// A vocabulary laid out as CLIP's: byte symbols 0..255, the same ending a word ("</w>") 256..511,
// then the merges' tokens from 512 in merge order, then <|startoftext|> and <|endoftext|>.
std::string clipVocabulary(const std::vector<std::pair<std::string, std::string>>& merges,
                           bool withSpecials = true) {
    std::vector<std::string> tokens = byteSymbolsInIdOrder();
    for (int k = 0; k < 256; ++k) tokens.push_back(tokens[k] + "</w>");
    for (const auto& [first, second] : merges) tokens.push_back(first + second);
    if (withSpecials) {
        tokens.push_back("<|startoftext|>");
        tokens.push_back("<|endoftext|>");
    }
    std::string json = "{";
    for (size_t id = 0; id < tokens.size(); ++id) {
        json += (id ? ",\"" : "\"") + jsonEscaped(tokens[id]) + "\":" + std::to_string(id);
    }
    return json + "}";
}

std::string mergesText(const std::vector<std::pair<std::string, std::string>>& merges) {
    std::string text = "#version: 0.2\n";
    for (const auto& [first, second] : merges) text += first + " " + second + "\n";
    return text;
}

// Five merges: "ca" 512, "cat</w>" 513, "'s</w>" 514, "do" 515, "dog</w>" 516; then
// <|startoftext|> 517 and <|endoftext|> 518. A byte b in '!'..'~' is b - 0x21, or that + 256 at the
// end of a word: a 64, a</w> 320, t 83, n</w> 333, !</w> 256, ,</w> 267.
const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"c", "a"}, {"ca", "t</w>"}, {"'", "s</w>"}, {"d", "o"}, {"do", "g</w>"}};
constexpr int64_t kStart = 517;
constexpr int64_t kEnd = 518;

ClipTokenizer tinyClip() {
    return ClipTokenizer::fromBytes(clipVocabulary(kMerges), mergesText(kMerges));
}

std::vector<int64_t> promptIds(const TokenizedPrompt& tokens) {
    return {tokens.ids.begin() + 1, tokens.ids.begin() + 1 + tokens.keptTokens};
}

QString clipRefusal(const std::string& vocab, const std::string& merges) {
    try {
        ClipTokenizer::fromBytes(vocab, merges, "v.json", "m.txt");
    } catch (const TokenizerError& error) {
        return QString::fromUtf8(error.what());
    }
    return {};
}

// A SentencePiece model written field by field (sentencepiece_model.proto): a unigram model with
// an identity normalizer, so that the best segmentation can be found by hand from the scores.
std::string varint(uint64_t value) {
    std::string out;
    do {
        auto byte = uint8_t(value & 0x7f);
        value >>= 7;
        if (value) byte |= 0x80;
        out += char(byte);
    } while (value);
    return out;
}
std::string protoField(int number, int64_t value) {
    return varint(uint64_t(number) << 3) + varint(uint64_t(value));
}
std::string protoField(int number, const std::string& bytes) {
    return varint((uint64_t(number) << 3) | 2) + varint(bytes.size()) + bytes;
}
std::string protoFloat(int number, float value) {
    char bytes[4];
    std::memcpy(bytes, &value, 4);
    return varint((uint64_t(number) << 3) | 5) + std::string(bytes, 4);
}

enum PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5 };
struct ModelPiece {
    std::string text;
    float score;
    PieceType type;
};
std::string protoPieces(const std::vector<ModelPiece>& pieces) {
    std::string model;
    for (const ModelPiece& piece : pieces) {
        model +=
            protoField(1, protoField(1, piece.text) + protoFloat(2, piece.score) + protoField(3, piece.type));
    }
    return model;
}

// Pieces (id: piece, score): 0 <pad>, 1 </s>, 2 <unk>, 3 ▁a -1, 4 ▁cat -2, 5 ▁c -3, 6 at -3, 7 s -2,
// 8 ▁ -2. With pad 0, end 1, unknown 2 and no start piece, as T5's.
std::string handMadeSentencePieceModel(bool withPad = true) {
    const std::vector<ModelPiece> pieces = {{withPad ? "<pad>" : "<nopad>", 0, kControl},
                                            {"</s>", 0, kControl},
                                            {"<unk>", 0, kUnknown},
                                            {"\u2581a", -1, kNormal},
                                            {"\u2581cat", -2, kNormal},
                                            {"\u2581c", -3, kNormal},
                                            {"at", -3, kNormal},
                                            {"s", -2, kNormal},
                                            {"\u2581", -2, kNormal}};
    std::string model = protoPieces(pieces);
    // trainer_spec: unigram, vocabulary size, unk 2, bos none, eos 1, pad 0 (or none).
    model += protoField(2, protoField(3, 1) + protoField(4, int64_t(pieces.size())) + protoField(40, 2) +
                               protoField(41, -1) + protoField(42, 1) + protoField(43, withPad ? 0 : -1));
    // normalizer_spec: identity, dummy prefix, extra white space removed, spaces as ▁.
    model += protoField(
        3, protoField(1, std::string("identity")) + protoField(3, 1) + protoField(4, 1) + protoField(5, 1));
    return model;
}

// A model without a character map (identity normalization), with a user-defined piece, an unused
// one and a tie. Pieces (id: piece, score): 0 <pad>, 1 </s>, 2 <unk>, 3 ▁ab -2, 4 ▁a -1, 5 b -1,
// 6 ▁ -1.5, 7 ab -1, 8 <sep> (user-defined), 9 xyz 0 (unused), 10 c -0.5, 11 ▁c -3. Unknown fields
// of every wire type are sprinkled in, which a reader must skip; the normalizer spec leaves its
// flags to their defaults (dummy prefix, extra white space removed, spaces as ▁).
std::string identitySentencePieceModel() {
    std::string model = protoPieces({{"<pad>", 0, kControl},
                                     {"</s>", 0, kControl},
                                     {"<unk>", 0, kUnknown},
                                     {"\u2581ab", -2, kNormal},
                                     {"\u2581a", -1, kNormal},
                                     {"b", -1, kNormal}});
    model += protoField(17, 12345) + varint((uint64_t(9) << 3) | 1) + "8 bytes.";
    model += varint((uint64_t(6) << 3) | 3) + protoField(1, 7) + varint((uint64_t(6) << 3) | 4);
    model += protoPieces({{"\u2581", -1.5f, kNormal},
                          {"ab", -1, kNormal},
                          {"<sep>", 0, kUserDefined},
                          {"xyz", 0, kUnused},
                          {"c", -0.5f, kNormal},
                          {"\u2581c", -3, kNormal}});
    model += protoField(2, protoField(3, 1) + protoField(40, 2) + protoField(41, -1) + protoField(42, 1) +
                               protoField(43, 0) + protoField(1, std::string("corpus.txt")));
    model += protoField(3, protoField(1, std::string("identity")));
    return model;
}

std::vector<int64_t> idsOf(const JsonValue& list) {
    std::vector<int64_t> ids;
    for (const JsonValue& id : list.array()) {
        uint64_t value = 0;
        if (!id.toUnsigned(&value)) throw std::runtime_error("tokens.json: an id that is not an integer");
        ids.push_back(int64_t(value));
    }
    return ids;
}

std::string readFixture(const std::string& path) {
    QFile file(QString::fromStdString(path));
    if (!file.open(QIODevice::ReadOnly)) return {};
    return file.readAll().toStdString();
}

void writeFile(const QString& path, const std::string& bytes) {
    QFile file(path);
    QVERIFY(file.open(QIODevice::WriteOnly));
    QCOMPARE(file.write(bytes.data(), qint64(bytes.size())), qint64(bytes.size()));
}

}  // namespace

class TestTokenizers : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void clipEncodesTheTinyVocabularyAsWorkedOutByHand_data();
    void clipEncodesTheTinyVocabularyAsWorkedOutByHand();
    void clipEmptyPromptIsStartThenEndPadding();
    void clipCutAt77PointsAtTheFirstDroppedWord();
    void clipCutInsideAWordPointsAtTheDroppedToken();
    void clipRefusesBrokenFilesNamingThem_data();
    void clipRefusesBrokenFilesNamingThem();
    void clipLoadRefusesMissingFoldersAndHugeFiles();
    void clipRefusesNonUtf8PromptsAndShortLengths();
    void clipGivesTheSameIdsFromSeveralThreads();
    void clipMatchesTheFixtureReferences();
    void t5EncodesTheHandMadeModel();
    void t5EncodesTheIdentityModelAsSentencePiece_data();
    void t5EncodesTheIdentityModelAsSentencePiece();
    void t5NormalizesAsSentencePiece();
    void t5CutKeepsRoomForTheEndId();
    void t5CutPointsIntoThePromptAsGiven();
    void t5GivesTheSameIdsFromSeveralThreads();
    void t5RefusesBrokenModels();
    void t5MatchesTheFixtureReferences();
};

void TestTokenizers::clipEncodesTheTinyVocabularyAsWorkedOutByHand_data() {
    QTest::addColumn<QString>("prompt");
    QTest::addColumn<std::vector<int64_t>>("ids");
    QTest::newRow("words") << "a cat" << std::vector<int64_t>{320, 513};
    QTest::newRow("case folded") << "A CaT" << std::vector<int64_t>{320, 513};
    QTest::newRow("white space collapsed") << "  a \t\n  cat\r\n" << std::vector<int64_t>{320, 513};
    // "!!" is one piece: "!" 0 then "!</w>" 256; "," alone is ",</w>" 267.
    QTest::newRow("punctuation split") << "cat!!" << std::vector<int64_t>{513, 0, 256};
    QTest::newRow("comma between words") << "cat,dog" << std::vector<int64_t>{513, 267, 516};
    QTest::newRow("'s contraction") << "dog's" << std::vector<int64_t>{516, 514};
    // "'s" is taken before the letters: "'sun" is "'s" then "un" (u 84, n</w> 333).
    QTest::newRow("'s before letters") << "'Sun" << std::vector<int64_t>{514, 84, 333};
    // Each digit is its own piece: 2</w> 273, 0</w> 271, 4</w> 275.
    QTest::newRow("digits one by one") << "2024" << std::vector<int64_t>{273, 271, 273, 275};
    // "Ça" lower-cases to "ça", bytes C3 A7 61: Ã 127 (0xae.. start at 106), § 100 (0xa1.. at 94), a</w> 320.
    QTest::newRow("latin-1 letter") << "Ça" << std::vector<int64_t>{127, 100, 320};
    // Latin Extended-A: "Ł" lower-cases to "ł", C5 82: Å 129, then the unprintable 0x82 ending the word 480.
    QTest::newRow("latin extended letter") << "Ł" << std::vector<int64_t>{129, 480};
    // "ΟΔΟΣ" becomes "οδος" with a final sigma: CE BF CE B4 CE BF CF 82; 0x82 is the 37th unprintable
    // byte (188 + 36 = 224), and ends the word (480).
    QTest::newRow("greek final sigma")
        << "ΟΔΟΣ" << std::vector<int64_t>{138, 123, 138, 112, 138, 123, 139, 480};
    // "日本" is one run of letters (E6 97 A5 E6 9C AC), the digits stay apart from it.
    QTest::newRow("cjk letters then digits")
        << "日本20" << std::vector<int64_t>{162, 245, 98, 162, 250, 361, 273, 271};
    // An emoji is no letter: "a" and then its own piece F0 9F 99 82.
    QTest::newRow("emoji apart") << "a🙂" << std::vector<int64_t>{320, 172, 253, 247, 480};
    QTest::newRow("special token in the text") << "a <|endoftext|> a" << std::vector<int64_t>{320, kEnd, 320};
}

void TestTokenizers::clipEncodesTheTinyVocabularyAsWorkedOutByHand() {
    QFETCH(QString, prompt);
    QFETCH(std::vector<int64_t>, ids);
    const ClipTokenizer clip = tinyClip();
    const TokenizedPrompt tokens = clip.encode(prompt.toStdString());
    QCOMPARE(tokens.ids.size(), size_t(77));
    QCOMPARE(tokens.ids.front(), kStart);
    QCOMPARE(promptIds(tokens), ids);
    QCOMPARE(tokens.promptTokens, int(ids.size()));
    QVERIFY(!tokens.cut);
    QCOMPARE(tokens.cutByte, std::string::npos);
    for (size_t k = 1 + ids.size(); k < 77; ++k) QCOMPARE(tokens.ids[k], kEnd);
}

void TestTokenizers::clipEmptyPromptIsStartThenEndPadding() {
    const ClipTokenizer clip = tinyClip();
    for (const char* prompt : {"", "   \t\n"}) {
        const TokenizedPrompt tokens = clip.encode(prompt);
        std::vector<int64_t> expected(77, kEnd);
        expected[0] = kStart;
        QCOMPARE(tokens.ids, expected);
        QCOMPARE(tokens.promptTokens, 0);
        QVERIFY(!tokens.cut);
    }
    QCOMPARE(clip.encode("a cat", 4).ids, (std::vector<int64_t>{kStart, 320, 513, kEnd}));
    QCOMPARE(clip.startId(), kStart);
    QCOMPARE(clip.endId(), kEnd);
}

void TestTokenizers::clipCutAt77PointsAtTheFirstDroppedWord() {
    // Two tabs, 75 times "a" and three spaces (75 tokens), then "Dog cat": two tokens too many.
    std::string prompt = "\t\t";
    for (int k = 0; k < 75; ++k) prompt += "a   ";
    const size_t dog = prompt.size();
    prompt += "Dog cat";
    const TokenizedPrompt tokens = tinyClip().encode(prompt);
    QVERIFY(tokens.cut);
    QCOMPARE(tokens.promptTokens, 77);
    QCOMPARE(tokens.keptTokens, 75);
    QCOMPARE(tokens.cutByte, dog);
    QCOMPARE(tokens.ids.size(), size_t(77));
    QCOMPARE(tokens.ids[75], int64_t(320));
    QCOMPARE(tokens.ids[76], kEnd);

    // Exactly 75 tokens fit.
    const TokenizedPrompt full = tinyClip().encode(prompt.substr(0, dog));
    QVERIFY(!full.cut);
    QCOMPARE(full.keptTokens, 75);
}

void TestTokenizers::clipCutInsideAWordPointsAtTheDroppedToken() {
    // 74 times "a ", then "cats": "ca" 512, "t" 83, "s</w>" 338. The cut falls after "ca".
    std::string prompt;
    for (int k = 0; k < 74; ++k) prompt += "a ";
    prompt += "Cats";
    const TokenizedPrompt tokens = tinyClip().encode(prompt);
    QCOMPARE(tokens.promptTokens, 77);
    QCOMPARE(tokens.ids[75], int64_t(512));
    QCOMPARE(tokens.cutByte, size_t(74 * 2 + 2));
    // In front, a two-byte letter that lower-cases to three bytes (İ -> "i" + U+0307: the tokens
    // i</w>, Ì, ‡</w>) and a white-space run that collapses: the offset is still one of the prompt as
    // given, 5 bytes of "İ  \n", 71 times "a ", "Ca".
    const TokenizedPrompt shifted = tinyClip().encode("\xC4\xB0  \n" + prompt.substr(6));
    QCOMPARE(shifted.promptTokens, 77);
    QCOMPARE(shifted.ids[1], int64_t(0x69 - 0x21 + 256));
    QCOMPARE(shifted.ids[75], int64_t(512));
    QCOMPARE(shifted.cutByte, size_t(5 + 71 * 2 + 2));
}

void TestTokenizers::clipRefusesBrokenFilesNamingThem_data() {
    QTest::addColumn<QString>("vocab");
    QTest::addColumn<QString>("merges");
    QTest::addColumn<QString>("because");
    const QString vocab = QString::fromStdString(clipVocabulary(kMerges));
    const QString merges = QString::fromStdString(mergesText(kMerges));
    QTest::newRow("vocab not JSON") << "{\"a\": 1," << merges << "'v.json' is not valid JSON";
    QTest::newRow("vocab not an object") << "[1, 2]" << merges << "'v.json' is not a JSON object";
    QTest::newRow("negative id") << "{\"a\": -1}" << merges << "not a non-negative integer";
    QTest::newRow("no specials") << QString::fromStdString(clipVocabulary(kMerges, false)) << merges
                                 << "lacks the special token <|startoftext|>";
    QTest::newRow("no header") << vocab << "c a\n"
                               << "'m.txt' does not start with a '#version' line";
    QTest::newRow("three symbols") << vocab << "#version: 0.2\nc a\nca t</w> x\n"
                                   << "malformed line 3";
    QTest::newRow("blank line") << vocab << "#version: 0.2\n\nc a\n"
                                << "malformed line 2";
    QTest::newRow("merge makes no token") << vocab << "#version: 0.2\nc a\nt o\n"
                                          << "lacks the token 'to' (which line 3 of 'm.txt' makes)";
    QString noByte = vocab;
    noByte.replace(",\"a\":64", "");
    QTest::newRow("byte symbol missing") << noByte << merges << "lacks the token 'a' (the symbol of byte 97)";
}

void TestTokenizers::clipRefusesBrokenFilesNamingThem() {
    QFETCH(QString, vocab);
    QFETCH(QString, merges);
    QFETCH(QString, because);
    const QString message = clipRefusal(vocab.toStdString(), merges.toStdString());
    QVERIFY2(message.contains(because), qPrintable(message));
}

void TestTokenizers::clipLoadRefusesMissingFoldersAndHugeFiles() {
    QTemporaryDir dir;
    const QString vocab = dir.filePath("vocab.json");
    const QString merges = dir.filePath("merges.txt");
    writeFile(vocab, clipVocabulary(kMerges));
    writeFile(merges, mergesText(kMerges));
    QCOMPARE(ClipTokenizer::load(vocab.toStdString(), merges.toStdString()).encode("a cat").ids[2],
             int64_t(513));

    const auto refusal = [](const QString& v, const QString& m) {
        try {
            ClipTokenizer::load(v.toStdString(), m.toStdString());
        } catch (const TokenizerError& error) {
            return QString::fromUtf8(error.what());
        }
        return QString();
    };
    QString message = refusal(dir.filePath("missing.json"), merges);
    QVERIFY2(message.contains("missing.json") && message.contains("cannot open"), qPrintable(message));
    message = refusal(vocab, dir.path());
    QVERIFY2(message.contains(dir.path()) && message.contains("a folder"), qPrintable(message));
    QFile huge(dir.filePath("huge.txt"));
    QVERIFY(huge.open(QIODevice::WriteOnly) && huge.resize(qint64(ClipTokenizer::kMaxFileBytes) + 1));
    huge.close();
    message = refusal(vocab, huge.fileName());
    QVERIFY2(message.contains("huge.txt") && message.contains("more than"), qPrintable(message));
    message = refusal(merges, merges);
    QVERIFY2(message.contains("merges.txt") && message.contains("not valid JSON"), qPrintable(message));
}

void TestTokenizers::clipRefusesNonUtf8PromptsAndShortLengths() {
    const ClipTokenizer clip = tinyClip();
    for (const char* prompt : {"a \xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"}) {
        QVERIFY_THROWS_EXCEPTION(TokenizerError, clip.encode(prompt));
    }
    QVERIFY_THROWS_EXCEPTION(TokenizerError, clip.encode("a", 1));
    QCOMPARE(clip.encode("a cat", 2).ids, (std::vector<int64_t>{kStart, kEnd}));
    QVERIFY(clip.encode("a cat", 2).cut);
}

void TestTokenizers::clipGivesTheSameIdsFromSeveralThreads() {
    const ClipTokenizer clip = tinyClip();
    std::vector<std::string> prompts;
    for (int k = 0; k < 200; ++k) {
        prompts.push_back("a cat " + std::to_string(k) + " dog's CATS!! " + std::string(size_t(k % 7), 'd') +
                          "o");
    }
    std::vector<std::vector<int64_t>> expected;
    for (const std::string& prompt : prompts) expected.push_back(tinyClip().encode(prompt).ids);
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int round = 0; round < 5; ++round) {
                for (size_t k = size_t(t); k < prompts.size(); k += 2) {
                    if (clip.encode(prompts[k]).ids != expected[k]) ++wrong;
                }
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    QCOMPARE(wrong.load(), 0);
}

void TestTokenizers::clipMatchesTheFixtureReferences() {
    const ClipTokenizer clip = ClipTokenizer::load(kFixtures + "schnell/tokenizer/vocab.json",
                                                   kFixtures + "schnell/tokenizer/merges.txt");
    const JsonValue references = parseJson(readFixture(kFixtures + "tokens.json"));
    QVERIFY(references.isArray() && !references.array().empty());
    bool someCut = false;
    for (const JsonValue& entry : references.array()) {
        const std::string& prompt = entry.object().at("prompt").string();
        const JsonValue::Object& clipL = entry.object().at("clip_l").object();
        const TokenizedPrompt tokens = clip.encode(prompt);
        QVERIFY2(tokens.ids == idsOf(clipL.at("ids")), prompt.c_str());
        QCOMPARE(tokens.cut, std::get<bool>(clipL.at("cut").value));
        someCut = someCut || tokens.cut;
    }
    QVERIFY(someCut);
}

void TestTokenizers::t5EncodesTheHandMadeModel() {
    QVERIFY(T5Tokenizer::available());
    const T5Tokenizer t5 = T5Tokenizer::fromBytes(handMadeSentencePieceModel(), "hand.model");
    QCOMPARE(t5.endId(), int64_t(1));
    QCOMPARE(t5.padId(), int64_t(0));
    // "▁a▁cat": ▁a ▁cat scores -3, better than ▁a ▁c at (-7).
    QCOMPARE(t5.encode("a cat", 6).ids, (std::vector<int64_t>{3, 4, 1, 0, 0, 0}));
    QCOMPARE(t5.encode("  a   cats ", 6).ids, (std::vector<int64_t>{3, 4, 7, 1, 0, 0}));
    // An unknown letter: "▁" then <unk>.
    QCOMPARE(t5.encode("a x", 6).ids, (std::vector<int64_t>{3, 8, 2, 1, 0, 0}));
    const TokenizedPrompt empty = t5.encode("", 3);
    QCOMPARE(empty.ids, (std::vector<int64_t>{1, 0, 0}));
    QCOMPARE(empty.promptTokens, 0);
    QVERIFY(!empty.cut);
    QCOMPARE(t5.encode("    ", 3).ids, (std::vector<int64_t>{1, 0, 0}));
    // Without a character map, tab and newline are no spaces: "▁", then one <unk> for both.
    QCOMPARE(t5.encode(" \t\n ", 4).ids, (std::vector<int64_t>{8, 2, 1, 0}));
}

void TestTokenizers::t5EncodesTheIdentityModelAsSentencePiece_data() {
    QTest::addColumn<QString>("prompt");
    QTest::addColumn<std::vector<int64_t>>("ids");
    // "▁ab" ties with "▁a" "b" (-2 each): the path found first, the longer piece from the left, stays.
    QTest::newRow("tie") << "ab" << std::vector<int64_t>{3};
    QTest::newRow("tie then piece") << "abab" << std::vector<int64_t>{3, 7};
    // A user-defined piece is always one piece, even where it splits what would be a better path.
    QTest::newRow("user-defined") << "a<sep>b" << std::vector<int64_t>{4, 8, 5};
    QTest::newRow("user-defined after") << "ab<sep>" << std::vector<int64_t>{3, 8};
    // An unused piece never matches, nor does a control piece typed in the prompt: their characters
    // are unknown, and a run of unknown characters is one <unk>.
    QTest::newRow("unused") << "xyz" << std::vector<int64_t>{6, 2};
    QTest::newRow("control typed") << "a</s>c" << std::vector<int64_t>{4, 2, 10};
    // Without a character map only spaces collapse: a tab or a no-break space is a character, and
    // the full-width "ｃ" stays itself (unknown).
    QTest::newRow("tab kept") << "a\tb" << std::vector<int64_t>{4, 2, 5};
    QTest::newRow("no-break space kept") << "c\u00a0c" << std::vector<int64_t>{6, 10, 2, 10};
    QTest::newRow("full-width kept") << "\uff43" << std::vector<int64_t>{6, 2};
    // "▁c" (-3) loses to "▁" "c" (-2); spaces collapse and the ends are trimmed.
    QTest::newRow("spaces") << "  ab   c " << std::vector<int64_t>{3, 6, 10};
    // A "▁" typed in the prompt is the same character as an escaped space.
    QTest::newRow("typed space symbol") << "\u2581ab" << std::vector<int64_t>{6, 3};
}

void TestTokenizers::t5EncodesTheIdentityModelAsSentencePiece() {
    QFETCH(QString, prompt);
    QFETCH(std::vector<int64_t>, ids);
    const T5Tokenizer t5 = T5Tokenizer::fromBytes(identitySentencePieceModel(), "identity.model");
    QCOMPARE(t5.endId(), int64_t(1));
    QCOMPARE(t5.padId(), int64_t(0));
    const TokenizedPrompt tokens = t5.encode(prompt.toStdString(), 16);
    QCOMPARE(std::vector<int64_t>(tokens.ids.begin(), tokens.ids.begin() + tokens.keptTokens), ids);
    QCOMPARE(tokens.promptTokens, int(ids.size()));
    QCOMPARE(tokens.ids[ids.size()], int64_t(1));
}

void TestTokenizers::t5NormalizesAsSentencePiece() {
    // The fixture model's nmt_nfkc character map: "ﬁ" is "fi", "①" is "1", half-width "ｶﾞ" is "ガ",
    // full-width letters are ASCII, "™" is "TM", "é" decomposed is composed, U+3000, tab, no-break
    // and em spaces are spaces. Ids from SentencePiece 0.1.97 on the same model.
    const T5Tokenizer t5 = T5Tokenizer::load(kFixtures + "schnell/tokenizer_2/spiece.model");
    const auto ids = [&](const std::string& prompt) {
        const TokenizedPrompt tokens = t5.encode(prompt, 32);
        return std::vector<int64_t>(tokens.ids.begin(), tokens.ids.begin() + tokens.keptTokens);
    };
    // ▁f ine ▁1 ▁ ガ(unknown) ▁caf é
    QCOMPARE(ids("\ufb01ne \u2460 \uff76\uff9e caf\u00e9"),
             (std::vector<int64_t>{29, 172, 227, 4, 2, 244, 54}));
    // ▁ A(unknown) ▁ PHOTO(unknown) ▁ of ▁a ▁cat
    QCOMPARE(ids("\uff21 \uff30\uff28\uff2f\uff34\uff2f\u3000of\t\uff41 cat"),
             (std::vector<int64_t>{4, 2, 4, 2, 4, 7, 3, 40}));
    // ▁caf é ▁ TM(unknown)
    QCOMPARE(ids("cafe\u0301 \u2122"), (std::vector<int64_t>{244, 54, 4, 2}));
    // ▁a ▁photo ▁ of ▁a ▁cat
    QCOMPARE(ids("a\u00a0\u00a0photo\u2003of  a cat"), (std::vector<int64_t>{3, 37, 4, 7, 3, 40}));
}

void TestTokenizers::t5CutKeepsRoomForTheEndId() {
    const T5Tokenizer t5 = T5Tokenizer::fromBytes(handMadeSentencePieceModel(), "hand.model");
    const std::string prompt = "a a  a a cat";
    const TokenizedPrompt exact = t5.encode(prompt, 6);
    QCOMPARE(exact.ids, (std::vector<int64_t>{3, 3, 3, 3, 4, 1}));
    QVERIFY(!exact.cut);
    const TokenizedPrompt cut = t5.encode(prompt, 4);
    QCOMPARE(cut.ids, (std::vector<int64_t>{3, 3, 3, 1}));
    QVERIFY(cut.cut);
    QCOMPARE(cut.promptTokens, 5);
    QCOMPARE(cut.keptTokens, 3);
    QCOMPARE(cut.cutByte, size_t(7));  // the fourth "a", past the spaces before it
    QCOMPARE(t5.encode(prompt, 1).ids, (std::vector<int64_t>{1}));
    QVERIFY_THROWS_EXCEPTION(TokenizerError, t5.encode(prompt, 0));
    QVERIFY_THROWS_EXCEPTION(TokenizerError, t5.encode("a \xff", 8));
}

void TestTokenizers::t5CutPointsIntoThePromptAsGiven() {
    // "ﬁne ① ｶﾞ café" is ▁f ine ▁1 ▁ ガ ▁caf é; "ﬁ" (bytes 0..2) becomes two letters, "①" (6..8) one,
    // "ｶﾞ" (10..15) one. The cut offsets are bytes of the prompt as typed.
    const T5Tokenizer t5 = T5Tokenizer::load(kFixtures + "schnell/tokenizer_2/spiece.model");
    const std::string prompt = "\ufb01ne \u2460 \uff76\uff9e caf\u00e9";
    const auto cutByte = [&](int length) { return t5.encode(prompt, length).cutByte; };
    QCOMPARE(cutByte(2), size_t(0));   // "ine" comes from the ligature too: the word from its start
    QCOMPARE(cutByte(3), size_t(6));   // "▁1": the space before "①" skipped
    QCOMPARE(cutByte(4), size_t(10));  // "▁" before "ｶﾞ"
    QCOMPARE(cutByte(5), size_t(10));  // "ガ" itself
    QCOMPARE(cutByte(6), size_t(17));  // "▁caf"
    QCOMPARE(cutByte(7), size_t(20));  // "é"
    QCOMPARE(cutByte(8), std::string::npos);
}

void TestTokenizers::t5GivesTheSameIdsFromSeveralThreads() {
    const T5Tokenizer t5 = T5Tokenizer::fromBytes(handMadeSentencePieceModel(), "hand.model");
    std::vector<std::string> prompts;
    for (int k = 0; k < 100; ++k)
        prompts.push_back(std::string(size_t(k % 9), 'a') + " cat" + std::string(size_t(k % 4), 's'));
    std::vector<std::vector<int64_t>> expected;
    for (const std::string& prompt : prompts) expected.push_back(t5.encode(prompt, 16).ids);
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int round = 0; round < 5; ++round) {
                for (size_t k = 0; k < prompts.size(); ++k) {
                    if (t5.encode(prompts[k], 16).ids != expected[k]) ++wrong;
                }
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    QCOMPARE(wrong.load(), 0);
}

void TestTokenizers::t5RefusesBrokenModels() {
    const auto refusal = [](const std::string& bytes) {
        try {
            T5Tokenizer::fromBytes(bytes, "x.model");
        } catch (const TokenizerError& error) {
            return QString::fromUtf8(error.what());
        }
        return QString();
    };
    QString message = refusal("not a model");
    QVERIFY2(message.contains("'x.model' is not a SentencePiece model"), qPrintable(message));
    message = refusal(handMadeSentencePieceModel().substr(0, 40));
    QVERIFY2(message.contains("'x.model' is not a SentencePiece model"), qPrintable(message));
    message = refusal(handMadeSentencePieceModel(false));
    QVERIFY2(message.contains("'x.model' has no padding piece"), qPrintable(message));

    // Malformed wire format, each named with where it goes wrong.
    const std::string model = identitySentencePieceModel();
    const std::vector<std::pair<std::string, QString>> malformed = {
        {std::string("\x08\x80\x80", 3), "a number cut off by the end at byte 1"},
        {[] {  // tag, then eleven varint bytes (built in place: GCC 12 misreads "..." + string at -O3)
             std::string bytes(12, '\xff');
             bytes.front() = '\x08';
             bytes.back() = '\x01';
             return bytes;
         }(),
         "a number longer than 10 bytes"},
        {std::string("\x0a\x05", 2) + "abc", "a field whose length runs past the end at byte 1"},
        {std::string("\x00\x01", 2), "a field number out of range"},
        {"\x0f", "an unknown wire type (7)"},
        {"\x33\x08\x01", "a group that does not end"},
        {"\x33\x3c", "a group that ends with another field's number"},
        {"\x34", "the end of a group that did not start"},
        {std::string(101, '\x33'), "groups nested more than 100 deep"},
        {model.substr(0, model.size() - 3), "is not a SentencePiece model"},
    };
    for (const auto& [bytes, because] : malformed) {
        message = refusal(bytes);
        QVERIFY2(message.contains("'x.model' is not a SentencePiece model") && message.contains(because),
                 qPrintable(message));
    }
    // Well-formed, but not a model SentencePiece would load.
    const std::string normalizer = protoField(3, protoField(1, std::string("identity")));
    const std::string trainer = protoField(2, protoField(3, 1));
    const std::vector<std::pair<std::string, QString>> invalid = {
        {trainer + normalizer, "it has no normal pieces"},
        {protoPieces({{"<unk>", 0, kUnknown}, {"a", -1, kNormal}, {"</s>", 0, kControl}, {"a", -2, kNormal}}),
         "pieces 1 and 3 are the same"},
        {protoPieces({{"<unk>", 0, kUnknown}, {"", -1, kNormal}}), "piece 1 is empty"},
        {protoPieces({{"a", -1, kNormal}}), "it has no unknown piece"},
        {protoPieces({{"<unk>", 0, kUnknown}, {"<unk2>", 0, kUnknown}, {"a", -1, kNormal}}),
         "pieces 0 and 1 are both the unknown piece"},
        {protoPieces({{"<unk>", 0, kUnknown}, {"a", -1, kNormal}}) +
             protoField(1, protoField(1, std::string("<0x41>")) + protoField(3, 6)),
         "piece 2 is a byte piece in a model without byte fallback"},
        {protoPieces({{"<unk>", 0, kUnknown}, {"a", -1, kNormal}}) +
             protoField(3, protoField(2, std::string("\x08\0\0\0abcd", 8))),
         "its character map's rules run past its end"},
    };
    for (const auto& [bytes, because] : invalid) {
        message = refusal(bytes);
        QVERIFY2(message.contains("'x.model' is not a SentencePiece model") && message.contains(because),
                 qPrintable(message));
    }
    message =
        refusal(protoPieces({{"<unk>", 0, kUnknown}, {"a", -1, kNormal}}) + protoField(2, protoField(3, 2)));
    QVERIFY2(message.contains("'x.model' is a SentencePiece BPE model") && message.contains("only unigram"),
             qPrintable(message));
    // An unknown piece type or model type is protobuf's unknown enum value: the default stays.
    const T5Tokenizer odd = T5Tokenizer::fromBytes(
        protoPieces({{"<pad>", 0, kControl}, {"</s>", 0, kControl}, {"<unk>", 0, kUnknown}}) +
        protoField(1, protoField(1, std::string("\u2581a")) + protoField(3, 9)) +
        protoField(2, protoField(3, 9)));
    QCOMPARE(odd.encode("a a", 4).ids, (std::vector<int64_t>{3, 3, 1, 0}));

    QTemporaryDir dir;
    try {
        T5Tokenizer::load(dir.filePath("spiece.model").toStdString());
        QFAIL("a missing model loaded");
    } catch (const TokenizerError& error) {
        QVERIFY2(QString(error.what()).contains("spiece.model"), error.what());
    }
}

void TestTokenizers::t5MatchesTheFixtureReferences() {
    const T5Tokenizer t5 = T5Tokenizer::load(kFixtures + "schnell/tokenizer_2/spiece.model");
    const JsonValue references = parseJson(readFixture(kFixtures + "tokens.json"));
    QVERIFY(references.isArray() && !references.array().empty());
    bool someCut = false;
    for (const JsonValue& entry : references.array()) {
        const std::string& prompt = entry.object().at("prompt").string();
        for (const auto& [key, length] : {std::pair<std::string, int>{"t5", 256}, {"t5_512", 512}}) {
            const auto found = entry.object().find(key);
            if (found == entry.object().end()) continue;
            const TokenizedPrompt tokens = t5.encode(prompt, length);
            QVERIFY2(tokens.ids == idsOf(found->second.object().at("ids")), (key + ": " + prompt).c_str());
            QCOMPARE(tokens.cut, std::get<bool>(found->second.object().at("cut").value));
            someCut = someCut || tokens.cut;
        }
    }
    QVERIFY(someCut);
}

QTEST_GUILESS_MAIN(TestTokenizers)
#include "tst_tokenizers.moc"
