#include "core/models/text/SentencePieceModel.h"

#include "core/models/text/SentencePieceProto.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/models/text/TokenizedPrompt.h"

namespace flowscope::core {
namespace {

using PieceType = SentencePieceModel::PieceType;

// What SentencePiece charges for a character no piece covers, below the lowest piece's score.
constexpr float kUnknownPenalty = 10.0f;
constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";           // U+2581
constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// The byte a byte piece stands for ("<0x00>".."<0xFF>", upper-case hex as SentencePiece writes
// them), or -1.
int byteOfPiece(std::string_view piece) {
    if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
    int value = 0;
    for (char c : piece.substr(3, 2)) {
        int digit = -1;
        if (c >= '0' && c <= '9') digit = c - '0';
        if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
        if (digit < 0) return -1;
        value = value * 16 + digit;
    }
    return value;
}

// The length of a UTF-8 sequence by its first byte, valid or not (SentencePiece's OneCharLen).
size_t sequenceLength(char lead) {
    static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLengths[uint8_t(lead) >> 4];
}

bool isTrail(char c) {
    return (uint8_t(c) & 0xc0) == 0x80;
}

// The length of the well-formed UTF-8 character that `text` starts with, 0 if it does not start
// with one (a stray or missing continuation byte, an overlong form, a surrogate, past U+10FFFF).
size_t validCharacterLength(std::string_view text) {
    const auto lead = uint8_t(text[0]);
    if (lead < 0x80) return 1;
    if ((lead & 0xe0) == 0xc0 && text.size() >= 2 && isTrail(text[1])) {
        const char32_t c = char32_t(lead & 0x1f) << 6 | char32_t(uint8_t(text[1]) & 0x3f);
        return c >= 0x80 ? 2 : 0;
    }
    if ((lead & 0xf0) == 0xe0 && text.size() >= 3 && isTrail(text[1]) && isTrail(text[2])) {
        const char32_t c = char32_t(lead & 0x0f) << 12 | char32_t(uint8_t(text[1]) & 0x3f) << 6 |
                           char32_t(uint8_t(text[2]) & 0x3f);
        return c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 3 : 0;
    }
    if ((lead & 0xf8) == 0xf0 && text.size() >= 4 && isTrail(text[1]) && isTrail(text[2]) &&
        isTrail(text[3])) {
        const char32_t c = char32_t(lead & 0x07) << 18 | char32_t(uint8_t(text[1]) & 0x3f) << 12 |
                           char32_t(uint8_t(text[2]) & 0x3f) << 6 | char32_t(uint8_t(text[3]) & 0x3f);
        return c >= 0x10000 && c <= 0x10ffff ? 4 : 0;
    }
    return 0;
}

// Darts-clone's double-array units: bits 0..7 the label by which a node is reached, bit 8 "has a
// leaf" (the child by label 0, holding the key's value), bits 10..31 the offset of the children
// (shifted 8 more when bit 9 is set); a leaf has bit 31 set and its value in bits 0..30.
size_t unitOffset(uint32_t unit) {
    return size_t(unit >> 10) << ((unit & (1u << 9)) >> 6);
}
uint32_t unitLabel(uint32_t unit) {
    return unit & ((1u << 31) | 0xffu);
}
bool unitHasLeaf(uint32_t unit) {
    return (unit >> 8) & 1;
}

}  // namespace

template <typename Visit>
void SentencePieceModel::forEachPrefix(const std::vector<int>& sorted, std::string_view text,
                                       Visit&& visit) const {
    // The pieces that begin with text[0, depth) are a run of `sorted`; it narrows byte by byte.
    // Within it a piece of exactly `depth` bytes sorts first, and there is at most one.
    size_t first = 0;
    size_t last = sorted.size();
    for (size_t depth = 0; depth < text.size() && first < last; ++depth) {
        if (m_pieces[size_t(sorted[first])].text.size() == depth) ++first;
        const auto byte = uint8_t(text[depth]);
        const auto byteAt = [&](int id) { return uint8_t(m_pieces[size_t(id)].text[depth]); };
        const auto begin = sorted.begin();
        first = size_t(std::partition_point(begin + ptrdiff_t(first), begin + ptrdiff_t(last),
                                            [&](int id) { return byteAt(id) < byte; }) -
                       begin);
        last = size_t(std::partition_point(begin + ptrdiff_t(first), begin + ptrdiff_t(last),
                                           [&](int id) { return byteAt(id) == byte; }) -
                      begin);
        if (first < last && m_pieces[size_t(sorted[first])].text.size() == depth + 1) {
            visit(depth + 1, sorted[first]);
        }
    }
}

int SentencePieceModel::findIn(const std::vector<int>& sorted, std::string_view text) const {
    const auto found = std::lower_bound(
        sorted.begin(), sorted.end(), text,
        [&](int id, std::string_view key) { return std::string_view(m_pieces[size_t(id)].text) < key; });
    return found != sorted.end() && m_pieces[size_t(*found)].text == text ? *found : -1;
}

int SentencePieceModel::pieceId(std::string_view text) const {
    const int reserved = findIn(m_reserved, text);
    if (reserved >= 0) return reserved;
    const int matchable = findIn(m_matchable, text);
    return matchable >= 0 ? matchable : m_unknownId;
}

SentencePieceModel SentencePieceModel::parse(std::string_view bytes, const std::string& name,
                                             const std::string& role) {
    SentencePieceModel model;
    model.m_label = role + " '" + name + "'";
    const std::string& label = model.m_label;
    RawModel raw = readModel(bytes, label);
    const auto refuse = [&](const std::string& what) {
        throw TokenizerError(label + " is not a SentencePiece model (" + what + ")");
    };

    if (raw.modelType != 1) {
        static const char* const kTypes[] = {"", "unigram", "BPE", "word", "character"};
        throw TokenizerError(label + " is a SentencePiece " + kTypes[raw.modelType] +
                             " model: FlowScope reads only unigram models, which T5's is");
    }
    if (raw.pieces.size() > size_t(std::numeric_limits<int>::max())) refuse("too many pieces");
    model.m_pieces.reserve(raw.pieces.size());
    std::array<bool, 256> byteFound{};
    for (size_t k = 0; k < raw.pieces.size(); ++k) {
        RawPiece& in = raw.pieces[k];
        const int id = int(k);
        const auto type = PieceType(in.type);
        if (in.text.empty()) refuse("piece " + std::to_string(k) + " is empty");
        switch (type) {
            case PieceType::Normal:
            case PieceType::UserDefined:
            case PieceType::Unused:
                // SentencePiece's trie would cut such a piece at the NUL; none that it makes has one.
                if (in.text.find('\0') != std::string::npos) {
                    refuse("piece " + std::to_string(k) + " contains a NUL byte");
                }
                model.m_matchable.push_back(id);
                if (type == PieceType::UserDefined) model.m_userDefined.push_back(id);
                break;
            case PieceType::Unknown:
                if (model.m_unknownId >= 0) {
                    refuse("pieces " + std::to_string(model.m_unknownId) + " and " + std::to_string(k) +
                           " are both the unknown piece");
                }
                model.m_unknownId = id;
                model.m_reserved.push_back(id);
                break;
            case PieceType::Byte: {
                if (!raw.byteFallback) {
                    refuse("piece " + std::to_string(k) +
                           " is a byte piece in a model without byte fallback");
                }
                const int byte = byteOfPiece(in.text);
                if (byte < 0) refuse("byte piece " + std::to_string(k) + " is not one of <0x00>..<0xFF>");
                byteFound[size_t(byte)] = true;
                model.m_byteIds[size_t(byte)] = id;
                model.m_reserved.push_back(id);
                break;
            }
            case PieceType::Control:
                model.m_reserved.push_back(id);
                break;
        }
        model.m_pieces.push_back({std::move(in.text), in.score, type});
    }
    if (model.m_matchable.empty()) refuse("it has no normal pieces");
    if (model.m_unknownId < 0) refuse("it has no unknown piece");
    if (raw.byteFallback && std::find(byteFound.begin(), byteFound.end(), false) != byteFound.end()) {
        refuse("it has byte fallback but not all 256 byte pieces");
    }
    for (std::vector<int>* sorted : {&model.m_matchable, &model.m_userDefined, &model.m_reserved}) {
        const auto byText = [&](int a, int b) {
            return model.m_pieces[size_t(a)].text < model.m_pieces[size_t(b)].text;
        };
        std::sort(sorted->begin(), sorted->end(), byText);
        const auto twice = std::adjacent_find(sorted->begin(), sorted->end(), [&](int a, int b) {
            return model.m_pieces[size_t(a)].text == model.m_pieces[size_t(b)].text;
        });
        if (twice != sorted->end()) {
            refuse("pieces " + std::to_string(std::min(twice[0], twice[1])) + " and " +
                   std::to_string(std::max(twice[0], twice[1])) + " are the same");
        }
    }

    model.m_minScore = std::numeric_limits<float>::max();
    model.m_maxScore = std::numeric_limits<float>::min();  // SentencePiece starts from FLT_MIN, > 0
    for (const Piece& piece : model.m_pieces) {
        if (piece.type != PieceType::Normal) continue;
        model.m_minScore = std::min(model.m_minScore, piece.score);
        model.m_maxScore = std::max(model.m_maxScore, piece.score);
    }
    model.m_byteFallback = raw.byteFallback;
    // SentencePiece looks the special pieces up by their names as C strings.
    const auto controlId = [&](const std::string& piece) {
        const int id = model.pieceId(std::string_view(piece.c_str()));
        return model.pieceType(id) == PieceType::Control ? id : -1;
    };
    model.m_endId = controlId(raw.endPiece);
    model.m_padId = controlId(raw.padPiece);

    model.m_addDummyPrefix = raw.addDummyPrefix;
    model.m_removeExtraWhitespaces = raw.removeExtraWhitespaces;
    model.m_escapeWhitespaces = raw.escapeWhitespaces;
    model.m_whitespaceAsSuffix = raw.whitespaceAsSuffix;
    if (!raw.charsMap.empty()) {
        // A uint32 (little-endian): the size in bytes of the double array that follows; then the
        // pool of replacements.
        const std::string& map = raw.charsMap;
        if (map.size() <= 4) refuse("its character map is shorter than its header");
        uint32_t arrayBytes = 0;
        for (int k = 3; k >= 0; --k) arrayBytes = (arrayBytes << 8) | uint8_t(map[size_t(k)]);
        if (arrayBytes > map.size() - 4) refuse("its character map's rules run past its end");
        model.m_rules.resize(arrayBytes / 4);
        for (size_t u = 0; u < model.m_rules.size(); ++u) {
            uint32_t unit = 0;
            for (int k = 3; k >= 0; --k) unit = (unit << 8) | uint8_t(map[4 + 4 * u + size_t(k)]);
            model.m_rules[u] = unit;
        }
        model.m_replacements = map.substr(4 + size_t(arrayBytes));
    }
    return model;
}

std::pair<size_t, uint32_t> SentencePieceModel::longestRule(std::string_view input) const {
    // Darts-clone's common-prefix search from the root (unit 0), every index checked: a map
    // SentencePiece made never leaves its array, a broken one simply stops matching.
    std::pair<size_t, uint32_t> longest{0, 0};
    if (m_rules.empty()) return longest;
    size_t node = unitOffset(m_rules[0]);
    for (size_t k = 0; k < input.size(); ++k) {
        const auto byte = uint8_t(input[k]);
        node ^= byte;
        if (node >= m_rules.size()) break;
        const uint32_t unit = m_rules[node];
        if (unitLabel(unit) != byte) break;
        node ^= unitOffset(unit);
        if (unitHasLeaf(unit)) {
            if (node >= m_rules.size()) break;
            longest = {k + 1, m_rules[node] & 0x7fffffffu};
        }
    }
    return longest;
}

std::string_view SentencePieceModel::replacement(uint32_t poolOffset) const {
    // SentencePiece reads up to the NUL; the pool's last string may end with the field itself.
    if (poolOffset > m_replacements.size()) {
        throw TokenizerError(m_label + " has a broken character map (a rule points past its replacements)");
    }
    const std::string_view rest = std::string_view(m_replacements).substr(poolOffset);
    return rest.substr(0, rest.find('\0'));
}

std::pair<std::string_view, size_t> SentencePieceModel::normalizePrefix(std::string_view input) const {
    // A user-defined piece is kept as typed, the longest one first.
    if (!m_userDefined.empty()) {
        size_t longest = 0;
        forEachPrefix(m_userDefined, input, [&](size_t length, int) { longest = length; });
        if (longest > 0) return {input.substr(0, longest), longest};
    }
    const auto [ruleLength, poolOffset] = longestRule(input);
    if (ruleLength > 0) return {replacement(poolOffset), ruleLength};
    const size_t length = validCharacterLength(input);
    if (length == 0) return {kReplacementCharacter, 1};
    return {input.substr(0, length), length};
}

SentencePieceModel::Normalized SentencePieceModel::normalize(std::string_view input) const {
    Normalized out;
    size_t consumed = 0;
    if (m_removeExtraWhitespaces) {
        while (!input.empty()) {
            const auto [normalized, length] = normalizePrefix(input);
            if (normalized != " ") break;
            input.remove_prefix(length);
            consumed += length;
        }
    }
    if (input.empty()) {
        out.origin.push_back(consumed);
        return out;
    }
    out.text.reserve(input.size() * 3);
    out.origin.reserve(input.size() * 3 + 1);
    const auto appendSpace = [&] {
        const std::string_view space = m_escapeWhitespaces ? kSpaceSymbol : " ";
        out.text += space;
        out.origin.insert(out.origin.end(), space.size(), consumed);
    };
    if (m_addDummyPrefix && !m_whitespaceAsSuffix) appendSpace();

    bool afterSpace = m_removeExtraWhitespaces;
    while (!input.empty()) {
        auto [normalized, length] = normalizePrefix(input);
        if (afterSpace) {
            while (!normalized.empty() && normalized.front() == ' ') normalized.remove_prefix(1);
        }
        if (!normalized.empty()) {
            for (char c : normalized) {
                if (c == ' ' && m_escapeWhitespaces) {
                    out.text += kSpaceSymbol;
                    out.origin.insert(out.origin.end(), kSpaceSymbol.size(), consumed);
                } else {
                    out.text += c;
                    out.origin.push_back(consumed);
                }
            }
            afterSpace = normalized.back() == ' ';
        }
        consumed += length;
        input.remove_prefix(length);
        if (!m_removeExtraWhitespaces) afterSpace = false;
    }

    if (m_removeExtraWhitespaces) {
        // Trailing spaces go, and the end is then where the first of them came from.
        const std::string_view space = m_escapeWhitespaces ? kSpaceSymbol : " ";
        while (out.text.size() >= space.size() && std::string_view(out.text).ends_with(space)) {
            const size_t length = out.text.size() - space.size();
            consumed = out.origin[length];
            // erase, not resize: GCC 12 at -O3 warns falsely about resize's growth path here.
            out.text.erase(out.text.begin() + std::ptrdiff_t(length), out.text.end());
            out.origin.resize(length);
        }
    }
    if (m_addDummyPrefix && m_whitespaceAsSuffix) appendSpace();
    out.origin.push_back(consumed);
    return out;
}

std::vector<SentencePieceModel::EncodedPiece> SentencePieceModel::encode(std::string_view input) const {
    const Normalized normalized = normalize(input);
    const std::string_view text = normalized.text;
    std::vector<EncodedPiece> out;
    if (text.empty()) return out;

    // Viterbi over the bytes: the best path that ends at each character boundary (scores as
    // SentencePiece keeps them: a float per boundary; a piece's candidate total computed in double
    // and compared with that float, the unknown piece's in float). The first candidate found keeps
    // a tie: candidates are tried by start, then by length.
    struct Best {
        float score = 0;
        int id = -1;
        size_t start = SIZE_MAX;  // SIZE_MAX: not reached yet
    };
    std::vector<Best> best(text.size() + 1);
    const float unknownScore = m_minScore - kUnknownPenalty;
    for (size_t start = 0; start < text.size();) {
        const float scoreHere = best[start].score;
        const size_t characterLength = std::min(sequenceLength(text[start]), text.size() - start);
        bool characterCovered = false;
        forEachPrefix(m_matchable, text.substr(start), [&](size_t length, int id) {
            const Piece& piece = m_pieces[size_t(id)];
            if (piece.type == PieceType::Unused) return;
            // A user-defined piece outscores any segmentation of the same bytes.
            const double score = piece.type == PieceType::UserDefined
                                     ? double(float(length) * m_maxScore) - 0.1
                                     : double(piece.score);
            const double total = score + double(scoreHere);
            Best& end = best[start + length];
            if (end.start == SIZE_MAX || total > double(end.score)) end = {float(total), id, start};
            if (length == characterLength) characterCovered = true;
        });
        if (!characterCovered) {
            const float total = unknownScore + scoreHere;
            Best& end = best[start + characterLength];
            if (end.start == SIZE_MAX || total > end.score) end = {total, m_unknownId, start};
        }
        start += characterLength;
    }

    std::vector<size_t> ends;
    for (size_t end = text.size(); end > 0; end = best[end].start) ends.push_back(end);
    std::reverse(ends.begin(), ends.end());

    bool afterUnknown = false;
    size_t start = 0;
    for (size_t end : ends) {
        const int id = best[end].id;
        const bool unknown = id == m_unknownId;
        const size_t begin = normalized.origin[start];
        if (unknown && m_byteFallback) {
            for (size_t k = start; k < end; ++k) out.push_back({m_byteIds[uint8_t(text[k])], begin});
        } else if (!(unknown && afterUnknown)) {
            // A run of unknown pieces is one piece.
            out.push_back({id, begin});
        }
        afterUnknown = unknown;
        start = end;
    }
    return out;
}

}  // namespace flowscope::core
