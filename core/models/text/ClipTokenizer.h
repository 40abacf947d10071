#pragma once

// CLIP's tokenizer (byte-level BPE) as openai/clip-vit-large-patch14 ships it with FLUX.1 and
// Stable Diffusion 3: `vocab.json` (token -> id) and `merges.txt` (one merge a line, rank = line
// order). No LibTorch, no Qt. `encode` may be called from several threads at once.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/models/text/TokenizedPrompt.h"

namespace flowscope::core {

class ClipTokenizer {
public:
    // CLIP's context: the start token, 75 of the prompt's tokens, the end token.
    static constexpr int kContextLength = 77;
    // The most merges read, as the reference tokenizer (49152 - 256 bytes - 2 special tokens);
    // lines after it are ignored.
    static constexpr int kMaxMerges = 48894;
    // The most FlowScope reads of either file (CLIP's are 1.6 MB and 0.5 MB).
    static constexpr uint64_t kMaxFileBytes = 64u << 20;

    // Reads the two files (regular files of at most kMaxFileBytes). Throws TokenizerError naming
    // the file and what is wrong: missing or unreadable, not a regular file, too large, malformed
    // JSON or not an object of token -> non-negative integer, a merge line that is not two
    // symbols, a missing "#version" header, a vocabulary that lacks <|startoftext|>,
    // <|endoftext|>, one of the 512 byte symbols, or a token that a merge makes.
    static ClipTokenizer load(const std::string& vocabPath, const std::string& mergesPath);
    // The same from the files' contents; the names stand for the files in messages.
    static ClipTokenizer fromBytes(std::string_view vocabJson, std::string_view mergesText,
                                   const std::string& vocabName = "vocab.json",
                                   const std::string& mergesName = "merges.txt");

    ClipTokenizer(ClipTokenizer&&) noexcept;
    ClipTokenizer& operator=(ClipTokenizer&&) noexcept;
    ~ClipTokenizer();

    // [start] + up to length - 2 of the prompt's tokens + [end], padded to `length` ids with the
    // end token (padId < 0, CLIP-L's rule) or padId (SD3's CLIP-G pads with "!"). The prompt is cleaned as CLIP does (white-space runs become one space, the ends
    // are stripped, letters are lower-cased), then split into words by CLIP's pattern and each word
    // encoded by byte-level BPE. Throws TokenizerError if `length` < 2 or the prompt is not UTF-8.
    // Where it differs from Hugging Face's CLIPTokenizer: no Unicode normalization (it composes
    // to NFC, and with ftfy installed also mends mojibake and straightens curly quotes), so a
    // decomposed "e" + U+0301 stays a letter and a separate mark; letters, digits and case are
    // Unicode 14's; "<|endoftext|>" typed in a prompt is that token only where CLIP's pattern finds
    // it, not inside a run of punctuation such as "<<|endoftext|>".
    TokenizedPrompt encode(std::string_view prompt, int length = kContextLength, int64_t padId = -1) const;

    int64_t startId() const;
    int64_t endId() const;
    // The id of the one-character token "!" (0 in CLIP's vocabulary): CLIP-G's padding.
    int64_t exclamationId() const;

private:
    struct Impl;
    explicit ClipTokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

}  // namespace flowscope::core
