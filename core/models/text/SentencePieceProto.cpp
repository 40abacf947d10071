#include "core/models/text/SentencePieceProto.h"

#include <cstring>

#include "core/models/text/TokenizedPrompt.h"

namespace flowscope::core {
namespace {

using PieceType = SentencePieceModel::PieceType;

// protobuf's own limit on how deep messages and groups may nest.
constexpr int kMaxGroupDepth = 100;

enum WireType {
    kVarint = 0,
    kFixed64 = 1,
    kLengthDelimited = 2,
    kStartGroup = 3,
    kEndGroup = 4,
    kFixed32 = 5
};

// protobuf's wire format over one message's bytes; `base` is where they start in the file. Every
// read is checked against the end; a malformed field throws TokenizerError naming the file.
class WireReader {
public:
    WireReader(std::string_view bytes, size_t base, const std::string& label)
        : m_bytes(bytes), m_base(base), m_label(label) {}

    bool atEnd() const { return m_pos == m_bytes.size(); }

    uint64_t varint() {
        const size_t start = m_pos;
        uint64_t value = 0;
        for (int shift = 0; shift < 70; shift += 7) {
            if (m_pos == m_bytes.size()) fail(start, "a number cut off by the end");
            const auto byte = uint8_t(m_bytes[m_pos++]);
            value |= uint64_t(byte & 0x7f) << shift;
            if (!(byte & 0x80)) return value;
        }
        fail(start, "a number longer than 10 bytes");
    }

    // A field's number and wire type.
    std::pair<uint32_t, int> tag() {
        const size_t start = m_pos;
        const uint64_t key = varint();
        const uint64_t field = key >> 3;
        const int wire = int(key & 7);
        if (field == 0 || field > (uint64_t(1) << 29) - 1) {
            fail(start, "a field number out of range (" + std::to_string(field) + ")");
        }
        if (wire > kFixed32) fail(start, "an unknown wire type (" + std::to_string(wire) + ")");
        return {uint32_t(field), wire};
    }

    // A length-delimited field's bytes, and where they start in the file.
    std::pair<std::string_view, size_t> delimited() {
        const size_t start = m_pos;
        const uint64_t length = varint();
        if (length > m_bytes.size() - m_pos) fail(start, "a field whose length runs past the end");
        const std::pair<std::string_view, size_t> out{m_bytes.substr(m_pos, size_t(length)), m_base + m_pos};
        m_pos += size_t(length);
        return out;
    }

    uint32_t fixed32() {
        if (m_bytes.size() - m_pos < 4) fail(m_pos, "a 4-byte number cut off by the end");
        uint32_t value = 0;
        for (int k = 3; k >= 0; --k) value = (value << 8) | uint8_t(m_bytes[m_pos + size_t(k)]);
        m_pos += 4;
        return value;
    }

    // Skips a field this reader does not use: any wire type, groups to their end.
    void skip(uint32_t field, int wire, int depth = 0) {
        const size_t start = m_pos;
        switch (wire) {
            case kVarint:
                varint();
                return;
            case kFixed64:
                if (m_bytes.size() - m_pos < 8) fail(start, "an 8-byte number cut off by the end");
                m_pos += 8;
                return;
            case kLengthDelimited:
                delimited();
                return;
            case kFixed32:
                fixed32();
                return;
            case kStartGroup:
                if (depth >= kMaxGroupDepth) fail(start, "groups nested more than 100 deep");
                for (;;) {
                    if (atEnd()) fail(start, "a group that does not end");
                    const auto [inner, innerWire] = tag();
                    if (innerWire == kEndGroup) {
                        if (inner != field) fail(start, "a group that ends with another field's number");
                        return;
                    }
                    skip(inner, innerWire, depth + 1);
                }
            default:
                fail(start, "the end of a group that did not start");
        }
    }

    [[noreturn]] void fail(size_t at, const std::string& what) const {
        throw TokenizerError(m_label + " is not a SentencePiece model (" + what + " at byte " +
                             std::to_string(m_base + at) + ")");
    }

private:
    std::string_view m_bytes;
    size_t m_pos = 0;
    size_t m_base;
    const std::string& m_label;
};

// An enum field: protobuf keeps a value outside the enum as an unknown field, leaving the default.
void readEnum(uint64_t value, int first, int last, int& out) {
    const auto number = int32_t(uint32_t(value));
    if (number >= first && number <= last) out = number;
}

RawPiece readPiece(std::string_view bytes, size_t base, const std::string& label) {
    RawPiece piece;
    WireReader reader(bytes, base, label);
    while (!reader.atEnd()) {
        const auto [field, wire] = reader.tag();
        if (field == 1 && wire == kLengthDelimited) {
            piece.text = std::string(reader.delimited().first);
        } else if (field == 2 && wire == kFixed32) {
            const uint32_t bits = reader.fixed32();
            std::memcpy(&piece.score, &bits, sizeof bits);
        } else if (field == 3 && wire == kVarint) {
            readEnum(reader.varint(), 1, 6, piece.type);
        } else {
            reader.skip(field, wire);
        }
    }
    return piece;
}

void readTrainerSpec(std::string_view bytes, size_t base, const std::string& label, RawModel& model) {
    WireReader reader(bytes, base, label);
    while (!reader.atEnd()) {
        const auto [field, wire] = reader.tag();
        if (field == 3 && wire == kVarint) {
            readEnum(reader.varint(), 1, 4, model.modelType);
        } else if (field == 24 && wire == kVarint) {
            model.whitespaceAsSuffix = reader.varint() != 0;
        } else if (field == 35 && wire == kVarint) {
            model.byteFallback = reader.varint() != 0;
        } else if (field == 47 && wire == kLengthDelimited) {
            model.endPiece = std::string(reader.delimited().first);
        } else if (field == 48 && wire == kLengthDelimited) {
            model.padPiece = std::string(reader.delimited().first);
        } else {
            reader.skip(field, wire);
        }
    }
}

void readNormalizerSpec(std::string_view bytes, size_t base, const std::string& label, RawModel& model) {
    WireReader reader(bytes, base, label);
    while (!reader.atEnd()) {
        const auto [field, wire] = reader.tag();
        if (field == 2 && wire == kLengthDelimited) {
            model.charsMap = std::string(reader.delimited().first);
        } else if (field == 3 && wire == kVarint) {
            model.addDummyPrefix = reader.varint() != 0;
        } else if (field == 4 && wire == kVarint) {
            model.removeExtraWhitespaces = reader.varint() != 0;
        } else if (field == 5 && wire == kVarint) {
            model.escapeWhitespaces = reader.varint() != 0;
        } else {
            reader.skip(field, wire);
        }
    }
}

}  // namespace

RawModel readModel(std::string_view bytes, const std::string& label) {
    RawModel model;
    WireReader reader(bytes, 0, label);
    while (!reader.atEnd()) {
        const auto [field, wire] = reader.tag();
        if (field >= 1 && field <= 3 && wire == kLengthDelimited) {
            const auto [message, base] = reader.delimited();
            if (field == 1) model.pieces.push_back(readPiece(message, base, label));
            if (field == 2) readTrainerSpec(message, base, label, model);
            if (field == 3) readNormalizerSpec(message, base, label, model);
        } else {
            reader.skip(field, wire);
        }
    }
    return model;
}

}  // namespace flowscope::core
