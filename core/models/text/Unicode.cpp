#include "core/models/text/Unicode.h"

#include <algorithm>
#include <iterator>

#include "core/models/text/TokenizedPrompt.h"
#include "core/models/text/UnicodeTables.h"

namespace flowscope::core {
namespace {

using unicode_tables::LowerRun;
using unicode_tables::Range;

template <size_t N>
bool inRanges(const Range (&ranges)[N], char32_t c) {
    const auto* after =
        std::upper_bound(std::begin(ranges), std::end(ranges), c,
                         [](char32_t value, const Range& range) { return value < range.first; });
    return after != std::begin(ranges) && c <= std::prev(after)->last;
}

char32_t simpleLowerCase(char32_t c) {
    using unicode_tables::kLowerCase;
    const auto* after =
        std::upper_bound(std::begin(kLowerCase), std::end(kLowerCase), c,
                         [](char32_t value, const LowerRun& run) { return value < run.first; });
    if (after == std::begin(kLowerCase)) return c;
    const LowerRun& run = *std::prev(after);
    if (c > run.last || (c - run.first) % run.stride != 0) return c;
    return char32_t(int32_t(c) + run.delta);
}

bool isCased(char32_t c) {
    return inRanges(unicode_tables::kCased, c);
}

bool isCaseIgnorable(char32_t c) {
    return inRanges(unicode_tables::kCaseIgnorable, c);
}

// Python's rule: a capital sigma preceded by a cased letter and not followed by one (case-ignorable
// characters skipped both ways) ends a word.
bool endsWord(const std::vector<CodePoint>& text, size_t sigma) {
    size_t before = sigma;
    while (before > 0 && isCaseIgnorable(text[before - 1].value)) --before;
    if (before == 0 || !isCased(text[before - 1].value)) return false;
    size_t after = sigma + 1;
    while (after < text.size() && isCaseIgnorable(text[after].value)) ++after;
    return after == text.size() || !isCased(text[after].value);
}

}  // namespace

std::vector<CodePoint> decodeUtf8(std::string_view text) {
    std::vector<CodePoint> out;
    out.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
        const auto lead = static_cast<unsigned char>(text[i]);
        // A lead byte gives the sequence's length, its share of the value and the least value that
        // needs that length (anything less is an overlong form).
        size_t length = 0;
        char32_t value = 0;
        char32_t smallest = 0;
        if (lead < 0x80) {
            length = 1;
            value = lead;
        } else if (lead >= 0xc2 && lead <= 0xdf) {
            length = 2;
            value = lead & 0x1f;
            smallest = 0x80;
        } else if (lead >= 0xe0 && lead <= 0xef) {
            length = 3;
            value = lead & 0x0f;
            smallest = 0x800;
        } else if (lead >= 0xf0 && lead <= 0xf4) {
            length = 4;
            value = lead & 0x07;
            smallest = 0x10000;
        }
        bool valid = length > 0 && i + length <= text.size();
        for (size_t k = 1; valid && k < length; ++k) {
            const auto next = static_cast<unsigned char>(text[i + k]);
            valid = (next & 0xc0) == 0x80;
            value = (value << 6) | (next & 0x3f);
        }
        if (!valid || value < smallest || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) {
            throw TokenizerError("the prompt is not UTF-8 text: byte " + std::to_string(i) +
                                 " does not start a valid character");
        }
        out.push_back({value, i});
        i += length;
    }
    return out;
}

void appendUtf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out += char(c);
    } else if (c < 0x800) {
        out += char(0xc0 | (c >> 6));
        out += char(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        out += char(0xe0 | (c >> 12));
        out += char(0x80 | ((c >> 6) & 0x3f));
        out += char(0x80 | (c & 0x3f));
    } else {
        out += char(0xf0 | (c >> 18));
        out += char(0x80 | ((c >> 12) & 0x3f));
        out += char(0x80 | ((c >> 6) & 0x3f));
        out += char(0x80 | (c & 0x3f));
    }
}

bool isUnicodeLetter(char32_t c) {
    return inRanges(unicode_tables::kLetters, c);
}

bool isUnicodeNumber(char32_t c) {
    return inRanges(unicode_tables::kNumbers, c);
}

bool isUnicodeSpace(char32_t c) {
    if (c < 0x80) return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
           c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

std::vector<CodePoint> toLowerCase(const std::vector<CodePoint>& text) {
    std::vector<CodePoint> out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        const CodePoint& c = text[i];
        if (c.value == 0x130) {
            out.push_back({U'i', c.offset});
            out.push_back({0x307, c.offset});
        } else if (c.value == 0x3a3) {
            out.push_back({endsWord(text, i) ? char32_t(0x3c2) : char32_t(0x3c3), c.offset});
        } else {
            out.push_back({simpleLowerCase(c.value), c.offset});
        }
    }
    return out;
}

}  // namespace flowscope::core
