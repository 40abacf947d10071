#pragma once

// A SentencePiece unigram model (`spiece.model`, the tokenizer T5 ships with) read and run by
// FlowScope's own code. Debian's libsentencepiece carries its own copy of protobuf, which cannot
// share a process with LibTorch's; this reads the file without any protobuf library and encodes
// as SentencePiece 0.1.97's Encode does, piece for piece:
//  - the file: protobuf's wire format read field by field (sentencepiece_model.proto's
//    ModelProto: the pieces with their scores and types, the trainer spec's model type, byte
//    fallback and the names of the special pieces, the normalizer spec); fields it does not use,
//    of every wire type, are skipped;
//  - normalization: the precompiled character map (a Darts-clone double array of the rules'
//    sources, then the pool of their NUL-terminated replacements), the longest rule at each
//    position, user-defined pieces kept as typed, extra white space removed, the dummy prefix
//    added, spaces written as U+2581 "▁";
//  - encoding: the segmentation with the best total score (Viterbi, ties to the segmentation
//    found first), characters no piece covers as the unknown piece at the lowest score minus 10,
//    consecutive unknown pieces merged into one, or spelled as byte pieces where the model has
//    byte fallback.
// No LibTorch, no Qt: it can be fuzzed. `encode` may run on several threads at once.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flowscope::core {

class SentencePieceModel {
public:
    enum class PieceType : uint8_t {
        Normal = 1,
        Unknown = 2,
        Control = 3,
        UserDefined = 4,
        Unused = 5,
        Byte = 6
    };

    // A piece of an encoded text.
    struct EncodedPiece {
        int id;
        size_t begin;  // the byte of the text where the piece's surface begins (what it was normalized from)
    };

    // Reads a serialized ModelProto. Throws TokenizerError naming the file ("<role> '<name>' ...")
    // and what is wrong: not protobuf's wire format (a truncated field, a length past the end, an
    // unknown wire type, groups that do not close or nest too deep), not a unigram model, no
    // pieces, an empty or repeated piece, not exactly one unknown piece, byte pieces that do not
    // match the byte fallback setting, a broken character map.
    static SentencePieceModel parse(std::string_view bytes, const std::string& name,
                                    const std::string& role = "the SentencePiece model");

    // The pieces of `text` (any bytes: malformed UTF-8 becomes U+FFFD as in SentencePiece). Throws
    // TokenizerError only where the character map points past its pool of replacements, which a
    // file SentencePiece made never does.
    std::vector<EncodedPiece> encode(std::string_view text) const;

    int pieceCount() const { return int(m_pieces.size()); }
    const std::string& piece(int id) const { return m_pieces[size_t(id)].text; }
    PieceType pieceType(int id) const { return m_pieces[size_t(id)].type; }
    float pieceScore(int id) const { return m_pieces[size_t(id)].score; }
    // As SentencePiece's PieceToId: a control, unknown or byte piece of that name, else a normal,
    // user-defined or unused one, else the unknown piece.
    int pieceId(std::string_view text) const;
    int unknownId() const { return m_unknownId; }
    // The trainer spec's end piece ("</s>" unless named otherwise) and padding piece ("<pad>")
    // when each is a control piece, else -1 (SentencePiece's eos_id() and pad_id()).
    int endId() const { return m_endId; }
    int padId() const { return m_padId; }

    // The text as SentencePiece normalizes it, and for each of its bytes (and its end) the byte of
    // `text` it comes from.
    struct Normalized {
        std::string text;
        std::vector<size_t> origin;  // text.size() + 1 offsets into the input, never decreasing
    };
    Normalized normalize(std::string_view text) const;

private:
    struct Piece {
        std::string text;
        float score = 0;
        PieceType type = PieceType::Normal;
    };
    SentencePieceModel() = default;
    std::pair<std::string_view, size_t> normalizePrefix(std::string_view input) const;
    std::pair<size_t, uint32_t> longestRule(std::string_view input) const;
    std::string_view replacement(uint32_t poolOffset) const;
    // For each piece of `sorted` (ids sorted by text) that begins `text`, shortest first:
    // visit(length, id).
    template <typename Visit>
    void forEachPrefix(const std::vector<int>& sorted, std::string_view text, Visit&& visit) const;
    int findIn(const std::vector<int>& sorted, std::string_view text) const;

    std::string m_label;  // "<role> '<name>'" for messages
    std::vector<Piece> m_pieces;
    std::vector<int> m_matchable;    // normal, user-defined and unused pieces, sorted by text
    std::vector<int> m_userDefined;  // user-defined pieces, sorted by text
    std::vector<int> m_reserved;     // control, unknown and byte pieces, sorted by text
    int m_unknownId = -1;
    int m_endId = -1;
    int m_padId = -1;
    float m_minScore = 0;
    float m_maxScore = 0;
    bool m_byteFallback = false;
    std::array<int, 256> m_byteIds{};

    bool m_addDummyPrefix = true;
    bool m_removeExtraWhitespaces = true;
    bool m_escapeWhitespaces = true;
    bool m_whitespaceAsSuffix = false;
    std::vector<uint32_t> m_rules;  // the character map's double array (empty: no rules)
    std::string m_replacements;     // its pool of NUL-terminated replacements
};

}  // namespace flowscope::core
