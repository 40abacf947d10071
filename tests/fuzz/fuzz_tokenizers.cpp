// The text encoders' tokenizer files on arbitrary bytes. The first byte picks the reader: even, T5's
// SentencePiece model (the rest of the input); odd, CLIP's vocab.json and merges.txt (the rest, split
// at its first NUL). An accepted file encodes fixed prompts into exactly the ids asked for, with a
// cut that lies on a character of the prompt; every rejected file comes with a message.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/models/text/ClipTokenizer.h"
#include "core/models/text/T5Tokenizer.h"
#include "tests/fuzz/FuzzSupport.h"

namespace {

using namespace flowscope::core;

// Plain words, white space to collapse, characters NFKC rewrites (ligature, circled digit,
// half-width katakana, full-width letters, a combining accent), an emoji and a literal "▁".
constexpr std::string_view kPrompts[] = {
    "a photo of a cat",
    "  A \t\u00a0fine  \u3000 day,\u2003 \ufb01ne \u2460 \uff76\uff9e \uff21\uff22 e\u0301 \U0001F642 "
    "\u2581x  ",
    "",
};

void check(const TokenizedPrompt& tokens, std::string_view prompt, int length) {
    if (tokens.ids.size() != size_t(length) || tokens.keptTokens > tokens.promptTokens) std::abort();
    if (tokens.cut != (tokens.cutByte != std::string::npos)) std::abort();
    if (tokens.cut && tokens.cutByte > prompt.size()) std::abort();
    if (tokens.cut && tokens.cutByte < prompt.size() && (uint8_t(prompt[tokens.cutByte]) & 0xc0) == 0x80)
        std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    try {
        if (data[0] % 2 == 0) {
            const T5Tokenizer t5 = T5Tokenizer::fromBytes(input, "spiece.model");
            for (std::string_view prompt : kPrompts) {
                for (int length : {1, 3, 64}) {
                    const TokenizedPrompt tokens = t5.encode(prompt, length);
                    check(tokens, prompt, length);
                    if (tokens.ids[size_t(tokens.keptTokens)] != t5.endId()) std::abort();
                }
            }
        } else {
            const size_t split = input.find('\0');
            const std::string_view vocab = input.substr(0, split);
            const std::string_view merges =
                split == std::string_view::npos ? std::string_view() : input.substr(split + 1);
            const ClipTokenizer clip = ClipTokenizer::fromBytes(vocab, merges);
            for (std::string_view prompt : kPrompts) {
                for (int length : {2, 4, ClipTokenizer::kContextLength})
                    check(clip.encode(prompt, length), prompt, length);
            }
        }
    } catch (const TokenizerError& error) {
        flowscope::fuzz::requireMessage(error);
    }
    return 0;
}
