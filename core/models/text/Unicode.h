#pragma once

// The little of Unicode that the CLIP tokenizer needs, without ICU: UTF-8 decoding, the letter,
// number and white-space classes of its pre-tokenizer, and Python's str.lower(), all as Python 3.11
// has them (Unicode 14), from tables that make_unicode_tables.py generates. No normalization: text
// is taken in the form it comes in (see ClipTokenizer.h).

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace flowscope::core {

// A code point of a text and the byte offset at which it starts in that text.
struct CodePoint {
    char32_t value;
    size_t offset;
};

// The code points of UTF-8 `text`; throws TokenizerError naming the byte offset of the first
// malformed sequence (a stray continuation byte, a truncated or overlong sequence, a surrogate, a
// value past U+10FFFF).
std::vector<CodePoint> decodeUtf8(std::string_view text);

void appendUtf8(std::string& out, char32_t c);

// General category L, as the regex `\p{L}`. Unassigned code points between two letters of a script
// count as letters (so that letters added after Unicode 14 most likely still do).
bool isUnicodeLetter(char32_t c);
// General category N (Nd, Nl, No), as `\p{N}`: digits of every script, Roman numerals, ², ½, ①.
bool isUnicodeNumber(char32_t c);
// Python's str.isspace(): ASCII white space, U+001C..U+001F, U+0085, U+00A0, U+1680,
// U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
bool isUnicodeSpace(char32_t c);

// Python's str.lower() for every script that has case: the simple lower-case mapping of each code
// point, U+0130 (İ) becoming "i" + U+0307, and a capital sigma at the end of a word becoming the
// final sigma ς (Python's rule, with its cased and case-ignorable characters). Offsets are kept:
// the code points a character becomes all carry its offset.
std::vector<CodePoint> toLowerCase(const std::vector<CodePoint>& text);

}  // namespace flowscope::core
