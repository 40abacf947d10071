#pragma once

// What a text encoder's tokenizer makes of a prompt: ids of a fixed length, and whether (and
// where) the prompt was cut to fit. Shared by the CLIP and T5 tokenizers.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace flowscope::core {

struct TokenizedPrompt {
    std::vector<int64_t> ids;  // exactly the requested length, special and padding ids included
    bool cut = false;          // the prompt had more tokens than fit
    int promptTokens = 0;      // the prompt's own tokens before cutting (start, end and padding not counted)
    int keptTokens = 0;        // those of them that were kept
    // Where the first dropped token begins, as a UTF-8 byte offset into the prompt as given (always
    // at the start of a character), so that a front end can mark the words that were cut off;
    // npos when nothing was cut.
    size_t cutByte = std::string::npos;
};

// A tokenizer file that cannot be used (the message names the file and what is wrong with it), or a
// prompt or length that cannot be encoded.
class TokenizerError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace flowscope::core
