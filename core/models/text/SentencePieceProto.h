#pragma once

// What FlowScope reads of a SentencePiece model file (sentencepiece_model.proto's ModelProto),
// through its own reader of protobuf's wire format: no protobuf library (Debian's libsentencepiece
// carries protobuf 3.14's symbols, which abort beside LibTorch's libprotobuf 3.21).

#include <string>
#include <string_view>
#include <vector>

#include "core/models/text/SentencePieceModel.h"

namespace flowscope::core {

// What FlowScope uses of sentencepiece_model.proto's ModelProto, with the proto's defaults. A
// field given twice keeps the last value; a message given twice is merged, as protobuf does.
struct RawPiece {
    std::string text;
    float score = 0;
    int type = int(SentencePieceModel::PieceType::Normal);
};
struct RawModel {
    std::vector<RawPiece> pieces;
    int modelType = 1;  // TrainerSpec.model_type: 1 unigram, 2 BPE, 3 word, 4 character
    bool byteFallback = false;
    bool whitespaceAsSuffix = false;
    std::string endPiece = "</s>";
    std::string padPiece = "<pad>";
    std::string charsMap;
    bool addDummyPrefix = true;
    bool removeExtraWhitespaces = true;
    bool escapeWhitespaces = true;
};

// The model's fields; throws TokenizerError naming `label` (the file) and the byte where the
// wire format goes wrong (truncated numbers, lengths past the end, groups that do not close or
// nest more than 100 deep).
RawModel readModel(std::string_view bytes, const std::string& label);

}  // namespace flowscope::core
