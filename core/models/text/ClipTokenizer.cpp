#include "core/models/text/ClipTokenizer.h"

#include <algorithm>
#include <array>
#include <climits>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/io/Json.h"
#include "core/io/RegularFile.h"
#include "core/models/text/Unicode.h"

namespace flowscope::core {
namespace {

constexpr std::string_view kStartToken = "<|startoftext|>";
constexpr std::string_view kEndToken = "<|endoftext|>";
constexpr std::string_view kWordEnd = "</w>";
// Words seen before are remembered up to this many, then forgotten all at once: a prompt edited
// keystroke by keystroke reuses nearly all of its words. Longer words are not remembered, which
// bounds the memory (a few MB).
constexpr size_t kMaxCachedWords = 1u << 14;
constexpr size_t kMaxCachedWordBytes = 64;

// GPT-2's reversible map from bytes to printable characters, which CLIP's vocabulary is written in:
// printable Latin-1 bytes stand for themselves, the 68 others for U+0100..U+0143 in byte order.
std::array<std::string, 256> byteSymbols() {
    std::array<std::string, 256> symbols;
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
        const bool printable =
            (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        appendUtf8(symbols[b], printable ? char32_t(b) : next++);
    }
    return symbols;
}

// A token of one word: its id and the byte of the word at which it starts.
struct WordToken {
    int64_t id;
    uint32_t begin;
};

struct Merge {
    int rank;
    int32_t merged;  // the symbol the two become
};

uint64_t pairKey(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
}

bool startsWithAscii(const std::vector<CodePoint>& text, size_t at, std::string_view ascii) {
    if (text.size() - at < ascii.size()) return false;
    for (size_t k = 0; k < ascii.size(); ++k) {
        if (text[at + k].value != char32_t(ascii[k])) return false;
    }
    return true;
}

// The length in code points of the piece of CLIP's pattern
//   <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// that starts at `at`: the first alternative that matches there, as a regex engine tries them.
// 0 at white space, which no alternative matches.
size_t pieceLength(const std::vector<CodePoint>& text, size_t at) {
    if (startsWithAscii(text, at, kStartToken)) return kStartToken.size();
    if (startsWithAscii(text, at, kEndToken)) return kEndToken.size();
    for (std::string_view contraction : {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
        if (startsWithAscii(text, at, contraction)) return contraction.size();
    }
    const char32_t first = text[at].value;
    size_t end = at + 1;
    if (isUnicodeLetter(first)) {
        while (end < text.size() && isUnicodeLetter(text[end].value)) ++end;
    } else if (isUnicodeNumber(first)) {
        return 1;
    } else if (isUnicodeSpace(first)) {
        return 0;
    } else {
        while (end < text.size() && !isUnicodeSpace(text[end].value) && !isUnicodeLetter(text[end].value) &&
               !isUnicodeNumber(text[end].value)) {
            ++end;
        }
    }
    return end - at;
}

// CLIP's clean-up: white-space runs become one space, the ends are stripped, letters lower-cased.
std::vector<CodePoint> cleaned(std::string_view prompt) {
    std::vector<CodePoint> collapsed;
    bool spaceBefore = false;
    size_t spaceOffset = 0;
    for (const CodePoint& c : decodeUtf8(prompt)) {
        if (isUnicodeSpace(c.value)) {
            if (!spaceBefore) spaceOffset = c.offset;
            spaceBefore = true;
            continue;
        }
        if (spaceBefore && !collapsed.empty()) collapsed.push_back({U' ', spaceOffset});
        spaceBefore = false;
        collapsed.push_back(c);
    }
    return toLowerCase(collapsed);
}

std::string quotedText(std::string_view text) {
    return "'" + jsonEscaped(text) + "'";
}

std::unordered_map<std::string, int64_t> parseVocabulary(std::string_view json, const std::string& name) {
    JsonValue document;
    try {
        document = parseJson(json);
    } catch (const std::invalid_argument& error) {
        throw TokenizerError("the CLIP vocabulary '" + name + "' is not valid JSON: " + error.what());
    }
    if (!document.isObject()) {
        throw TokenizerError("the CLIP vocabulary '" + name + "' is not a JSON object of token -> id");
    }
    std::unordered_map<std::string, int64_t> vocabulary;
    for (const auto& [token, value] : document.object()) {
        uint64_t id = 0;
        if (!value.toUnsigned(&id) || id > uint64_t(INT64_MAX)) {
            throw TokenizerError("the CLIP vocabulary '" + name + "' gives the token " + quotedText(token) +
                                 " an id that is not a non-negative integer");
        }
        vocabulary.emplace(token, int64_t(id));
    }
    for (std::string_view special : {kStartToken, kEndToken}) {
        if (!vocabulary.count(std::string(special))) {
            throw TokenizerError("the CLIP vocabulary '" + name + "' lacks the special token " +
                                 std::string(special) + ": is it CLIP's vocab.json?");
        }
    }
    return vocabulary;
}

// The merge lines after the "#version" header, as (line number, first, second).
struct MergeLine {
    int line;
    std::string first;
    std::string second;
};

std::vector<MergeLine> parseMerges(std::string_view text, const std::string& name) {
    // The reference strips the whole file, so trailing blank lines and a final newline are fine.
    while (!text.empty() &&
           (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' || text.back() == '\t')) {
        text.remove_suffix(1);
    }
    if (text.substr(0, 8) != "#version") {
        throw TokenizerError("the CLIP merges file '" + name +
                             "' does not start with a '#version' line: is it a BPE merges.txt?");
    }
    std::vector<MergeLine> lines;
    size_t at = std::min(text.find('\n'), text.size());
    for (int line = 2; at < text.size() && int(lines.size()) < ClipTokenizer::kMaxMerges; ++line) {
        const size_t end = std::min(text.find('\n', at + 1), text.size());
        std::string_view content = text.substr(at + 1, end - at - 1);
        at = end;
        std::vector<std::string_view> fields;
        size_t k = 0;
        while (k < content.size()) {
            const size_t begin = content.find_first_not_of(" \t\r", k);
            if (begin == std::string_view::npos) break;
            k = std::min(content.find_first_of(" \t\r", begin), content.size());
            fields.push_back(content.substr(begin, k - begin));
        }
        if (fields.size() != 2) {
            throw TokenizerError("the CLIP merges file '" + name + "' has a malformed line " +
                                 std::to_string(line) + " (" + quotedText(content) +
                                 "): each line after the first is two symbols and a space");
        }
        lines.push_back({line, std::string(fields[0]), std::string(fields[1])});
    }
    return lines;
}

}  // namespace

struct ClipTokenizer::Impl {
    // Symbols (byte strings, merged or not, with or without "</w>") are numbered at load; these
    // are their ids in the vocabulary.
    std::vector<int64_t> symbolIds;
    std::array<int32_t, 256> byteSymbol{};      // a byte inside a word
    std::array<int32_t, 256> lastByteSymbol{};  // the last byte of a word: the symbol + "</w>"
    std::unordered_map<uint64_t, Merge> merges;
    int64_t startId = 0;
    int64_t endId = 0;

    mutable std::mutex cacheMutex;
    mutable std::unordered_map<std::string, std::vector<WordToken>> cache;

    std::vector<WordToken> encodeWord(std::string_view word) const;
    std::vector<WordToken> cachedWord(std::string_view word) const;
};

// Byte-level BPE as the reference does it: repeatedly take the pair of adjacent symbols whose merge
// ranks first and merge all its occurrences from left to right, until no pair has a rank. A queue
// keyed by (rank, position) keeps this O(n log n) in the word's length, so that a pasted run of
// thousands of letters does not stall; pairs made during a round wait for the next one, as in the
// reference, which finds the next pair only after merging every occurrence of the current one.
std::vector<WordToken> ClipTokenizer::Impl::encodeWord(std::string_view word) const {
    struct Node {
        int32_t symbol;  // -1 once merged into the node before it
        int32_t prev;
        int32_t next;
    };
    struct Candidate {
        int rank;
        int32_t left;
        int32_t leftSymbol;
        int32_t rightSymbol;
        int32_t merged;
    };
    const auto n = int32_t(word.size());
    std::vector<Node> nodes(word.size());
    for (int32_t i = 0; i < n; ++i) {
        const auto byte = static_cast<unsigned char>(word[i]);
        nodes[i] = {i + 1 == n ? lastByteSymbol[byte] : byteSymbol[byte], i - 1, i + 1 == n ? -1 : i + 1};
    }
    const auto later = [](const Candidate& a, const Candidate& b) {
        return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
    std::vector<Candidate> nextRound;
    const auto addPair = [&](int32_t left) {
        const int32_t right = nodes[left].next;
        if (right < 0) return;
        const auto found = merges.find(pairKey(nodes[left].symbol, nodes[right].symbol));
        if (found == merges.end()) return;
        nextRound.push_back(
            {found->second.rank, left, nodes[left].symbol, nodes[right].symbol, found->second.merged});
    };
    for (int32_t i = 0; i + 1 < n; ++i) addPair(i);
    while (true) {
        for (const Candidate& pair : nextRound) queue.push(pair);
        nextRound.clear();
        if (queue.empty()) break;
        const int rank = queue.top().rank;
        while (!queue.empty() && queue.top().rank == rank) {
            const Candidate pair = queue.top();
            queue.pop();
            Node& left = nodes[pair.left];
            if (left.symbol != pair.leftSymbol || left.next < 0 ||
                nodes[left.next].symbol != pair.rightSymbol) {
                continue;  // an occurrence that an earlier merge took apart
            }
            Node& right = nodes[left.next];
            left.symbol = pair.merged;
            left.next = right.next;
            if (right.next >= 0) nodes[right.next].prev = pair.left;
            right.symbol = -1;
            if (left.prev >= 0) addPair(left.prev);
            addPair(pair.left);
        }
    }
    std::vector<WordToken> tokens;
    for (int32_t i = 0; i >= 0; i = nodes[i].next) {
        tokens.push_back({symbolIds[nodes[i].symbol], uint32_t(i)});
    }
    return tokens;
}

std::vector<WordToken> ClipTokenizer::Impl::cachedWord(std::string_view word) const {
    if (word.size() > kMaxCachedWordBytes) return encodeWord(word);
    const std::string key(word);
    {
        const std::lock_guard lock(cacheMutex);
        const auto found = cache.find(key);
        if (found != cache.end()) return found->second;
    }
    std::vector<WordToken> tokens = encodeWord(word);
    const std::lock_guard lock(cacheMutex);
    if (cache.size() >= kMaxCachedWords) cache.clear();
    cache.emplace(key, tokens);
    return tokens;
}

ClipTokenizer ClipTokenizer::fromBytes(std::string_view vocabJson, std::string_view mergesText,
                                       const std::string& vocabName, const std::string& mergesName) {
    const std::unordered_map<std::string, int64_t> vocabulary = parseVocabulary(vocabJson, vocabName);
    const std::vector<MergeLine> mergeLines = parseMerges(mergesText, mergesName);

    auto impl = std::make_unique<Impl>();
    std::unordered_map<std::string, int32_t> symbolNumbers;
    // Every symbol must be a token: then encode can never meet one that is not.
    const auto symbolNumber = [&](const std::string& symbol, const std::string& madeBy) {
        const auto [it, added] = symbolNumbers.try_emplace(symbol, int32_t(impl->symbolIds.size()));
        if (added) {
            const auto id = vocabulary.find(symbol);
            if (id == vocabulary.end()) {
                throw TokenizerError("the CLIP vocabulary '" + vocabName + "' lacks the token " +
                                     quotedText(symbol) + " (" + madeBy + "): are '" + vocabName + "' and '" +
                                     mergesName + "' from the same tokenizer?");
            }
            impl->symbolIds.push_back(id->second);
        }
        return it->second;
    };
    const std::array<std::string, 256> bytes = byteSymbols();
    for (int b = 0; b < 256; ++b) {
        impl->byteSymbol[b] = symbolNumber(bytes[b], "the symbol of byte " + std::to_string(b));
        impl->lastByteSymbol[b] = symbolNumber(bytes[b] + std::string(kWordEnd),
                                               "the symbol of byte " + std::to_string(b) + " ending a word");
    }
    for (size_t rank = 0; rank < mergeLines.size(); ++rank) {
        const MergeLine& merge = mergeLines[rank];
        const std::string madeBy =
            "which line " + std::to_string(merge.line) + " of '" + mergesName + "' makes";
        const int32_t first =
            symbolNumber(merge.first, "which line " + std::to_string(merge.line) + " merges");
        const int32_t second =
            symbolNumber(merge.second, "which line " + std::to_string(merge.line) + " merges");
        const int32_t merged = symbolNumber(merge.first + merge.second, madeBy);
        // A pair listed twice takes its later rank, as in the reference's dictionary.
        impl->merges[pairKey(first, second)] = {int(rank), merged};
    }
    impl->startId = vocabulary.at(std::string(kStartToken));
    impl->endId = vocabulary.at(std::string(kEndToken));
    return ClipTokenizer(std::move(impl));
}

ClipTokenizer ClipTokenizer::load(const std::string& vocabPath, const std::string& mergesPath) {
    std::string vocab;
    std::string merges;
    try {
        vocab = readRegularFile(vocabPath, kMaxFileBytes, "the CLIP vocabulary");
        merges = readRegularFile(mergesPath, kMaxFileBytes, "the CLIP merges file");
    } catch (const FileReadError& error) {
        throw TokenizerError(error.what());
    }
    return fromBytes(vocab, merges, vocabPath, mergesPath);
}

ClipTokenizer::ClipTokenizer(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;
ClipTokenizer::~ClipTokenizer() = default;

int64_t ClipTokenizer::startId() const {
    return m_impl->startId;
}
int64_t ClipTokenizer::endId() const {
    return m_impl->endId;
}

int64_t ClipTokenizer::exclamationId() const {
    return m_impl->symbolIds[size_t(m_impl->byteSymbol[size_t('!')])];
}

TokenizedPrompt ClipTokenizer::encode(std::string_view prompt, int length, int64_t padId) const {
    if (length < 2) {
        throw TokenizerError("a CLIP prompt needs at least 2 ids (start and end), not " +
                             std::to_string(length));
    }
    const std::vector<CodePoint> text = cleaned(prompt);
    struct Token {
        int64_t id;
        size_t offset;  // in the prompt as given
    };
    std::vector<Token> tokens;
    std::string word;
    std::vector<size_t> byteOffsets;  // of each byte of `word`, in the prompt as given
    for (size_t at = 0; at < text.size();) {
        const size_t count = pieceLength(text, at);
        if (count == 0) {
            ++at;
            continue;
        }
        const bool start = startsWithAscii(text, at, kStartToken);
        if (start || startsWithAscii(text, at, kEndToken)) {
            tokens.push_back({start ? m_impl->startId : m_impl->endId, text[at].offset});
            at += count;
            continue;
        }
        word.clear();
        byteOffsets.clear();
        for (size_t k = at; k < at + count; ++k) {
            appendUtf8(word, text[k].value);
            byteOffsets.resize(word.size(), text[k].offset);
        }
        for (const WordToken& token : m_impl->cachedWord(word)) {
            tokens.push_back({token.id, byteOffsets[token.begin]});
        }
        at += count;
    }

    TokenizedPrompt out;
    const size_t kept = std::min(tokens.size(), size_t(length - 2));
    out.promptTokens = int(std::min(tokens.size(), size_t(INT_MAX)));
    out.keptTokens = int(kept);
    out.cut = kept < tokens.size();
    if (out.cut) out.cutByte = tokens[kept].offset;
    out.ids.reserve(size_t(length));
    out.ids.push_back(m_impl->startId);
    for (size_t k = 0; k < kept; ++k) out.ids.push_back(tokens[k].id);
    out.ids.push_back(m_impl->endId);
    out.ids.resize(size_t(length), padId < 0 ? m_impl->endId : padId);
    return out;
}

}  // namespace flowscope::core
