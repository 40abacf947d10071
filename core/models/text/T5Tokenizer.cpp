#include "core/models/text/T5Tokenizer.h"

#include <algorithm>
#include <climits>

#include "core/io/RegularFile.h"
#include "core/models/text/SentencePieceModel.h"
#include "core/models/text/Unicode.h"

namespace flowscope::core {

struct T5Tokenizer::Impl {
    // Read-only once loaded: concurrent callers need no lock.
    SentencePieceModel model;
    int64_t endId = 0;
    int64_t padId = 0;
};

bool T5Tokenizer::available() {
    return true;
}

T5Tokenizer T5Tokenizer::fromBytes(std::string_view model, const std::string& name) {
    SentencePieceModel parsed = SentencePieceModel::parse(model, name, "the T5 tokenizer model");
    if (parsed.endId() < 0) {
        throw TokenizerError("the T5 tokenizer model '" + name +
                             "' has no end piece (</s>), which T5 prompts end with");
    }
    if (parsed.padId() < 0) {
        throw TokenizerError("the T5 tokenizer model '" + name +
                             "' has no padding piece (<pad>), which T5 prompts are padded with");
    }
    const int64_t endId = parsed.endId();
    const int64_t padId = parsed.padId();
    return T5Tokenizer(std::make_unique<Impl>(Impl{std::move(parsed), endId, padId}));
}

TokenizedPrompt T5Tokenizer::encode(std::string_view prompt, int length) const {
    if (length < 1) {
        throw TokenizerError("a T5 prompt needs at least 1 id (the end), not " + std::to_string(length));
    }
    // Refuses what is not UTF-8, which SentencePiece would alter silently.
    const std::vector<CodePoint> characters = decodeUtf8(prompt);
    const std::vector<SentencePieceModel::EncodedPiece> pieces = m_impl->model.encode(prompt);

    TokenizedPrompt out;
    const size_t count = pieces.size();
    const size_t kept = std::min(count, size_t(length - 1));
    out.promptTokens = int(std::min(count, size_t(INT_MAX)));
    out.keptTokens = int(kept);
    out.cut = kept < count;
    if (out.cut) {
        // A piece that begins a word begins at the white space before it; the word is what a
        // reader sees cut off.
        const size_t begin = pieces[kept].begin;
        auto c = std::find_if(characters.begin(), characters.end(),
                              [&](const CodePoint& character) { return character.offset >= begin; });
        while (c != characters.end() && isUnicodeSpace(c->value)) ++c;
        out.cutByte = c == characters.end() ? prompt.size() : c->offset;
    }
    out.ids.reserve(size_t(length));
    for (size_t k = 0; k < kept; ++k) out.ids.push_back(pieces[k].id);
    out.ids.push_back(m_impl->endId);
    out.ids.resize(size_t(length), m_impl->padId);
    return out;
}

int64_t T5Tokenizer::endId() const {
    return m_impl->endId;
}
int64_t T5Tokenizer::padId() const {
    return m_impl->padId;
}

T5Tokenizer T5Tokenizer::load(const std::string& modelPath) {
    std::string model;
    try {
        model = readRegularFile(modelPath, kMaxFileBytes, "the T5 tokenizer model");
    } catch (const FileReadError& error) {
        throw TokenizerError(error.what());
    }
    return fromBytes(model, modelPath);
}

T5Tokenizer::T5Tokenizer(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
T5Tokenizer::T5Tokenizer(T5Tokenizer&&) noexcept = default;
T5Tokenizer& T5Tokenizer::operator=(T5Tokenizer&&) noexcept = default;
T5Tokenizer::~T5Tokenizer() = default;

}  // namespace flowscope::core
