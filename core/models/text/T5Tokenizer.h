#pragma once

// T5's tokenizer: the SentencePiece (unigram) model `spiece.model` that T5 v1.1 ships with FLUX.1
// and Stable Diffusion 3, read and run by FlowScope's own code (SentencePieceModel.h), which
// encodes as SentencePiece 0.1.97 does. No LibTorch, no Qt, no SentencePiece library. `encode`
// may be called from several threads at once.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/models/text/TokenizedPrompt.h"

namespace flowscope::core {

class T5Tokenizer {
public:
    // The most FlowScope reads of a model file (T5's is 0.8 MB).
    static constexpr uint64_t kMaxFileBytes = 64u << 20;

    // Always true: every build reads SentencePiece models (kept for callers that still ask).
    static bool available();

    // Reads the model (a regular file of at most kMaxFileBytes). Throws TokenizerError naming
    // the file and what is wrong: missing or unreadable, not a regular file, too large, not a
    // SentencePiece model (malformed, or not one SentencePiece would load), not a unigram model,
    // a model without an end piece (</s>) or a padding piece (<pad>).
    static T5Tokenizer load(const std::string& modelPath);
    // The same from the file's contents; `name` stands for the file in messages.
    static T5Tokenizer fromBytes(std::string_view model, const std::string& name = "spiece.model");

    T5Tokenizer(T5Tokenizer&&) noexcept;
    T5Tokenizer& operator=(T5Tokenizer&&) noexcept;
    ~T5Tokenizer();

    // The ids of the prompt's pieces as SentencePiece encodes them (the model's own normalization:
    // NFKC for T5's, white space collapsed), then the end id, padded with the padding id to
    // `length`. A prompt of more than length - 1 pieces is cut so that the end id still fits.
    // Throws TokenizerError if `length` < 1 or the prompt is not UTF-8 (or, for a broken model
    // only, if its character map points outside itself).
    TokenizedPrompt encode(std::string_view prompt, int length) const;

    int64_t endId() const;
    int64_t padId() const;

private:
    struct Impl;
    explicit T5Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

}  // namespace flowscope::core
