#include "core/io/Json.h"

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace flowscope::core {
namespace {

class Parser {
public:
    Parser(std::string_view text, int maxDepth) : m_text(text), m_maxDepth(maxDepth) {}

    JsonValue document() {
        JsonValue value = parseValue(0);
        skipSpace();
        if (m_pos != m_text.size()) fail("unexpected text after the JSON value");
        return value;
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw std::invalid_argument("malformed JSON at byte " + std::to_string(m_pos) + ": " + what);
    }

    void skipSpace() {
        while (m_pos < m_text.size() &&
               (m_text[m_pos] == ' ' || m_text[m_pos] == '\t' || m_text[m_pos] == '\n' || m_text[m_pos] == '\r')) {
            ++m_pos;
        }
    }

    bool consume(char c) {
        skipSpace();
        if (m_pos < m_text.size() && m_text[m_pos] == c) {
            ++m_pos;
            return true;
        }
        return false;
    }

    void expectWord(std::string_view word) {
        if (m_text.substr(m_pos, word.size()) != word) fail("unknown literal");
        m_pos += word.size();
    }

    JsonValue parseValue(int depth) {
        if (depth > m_maxDepth) fail("nested too deeply");
        skipSpace();
        if (m_pos >= m_text.size()) fail("unexpected end");
        const char c = m_text[m_pos];
        JsonValue out;
        if (c == '{') {
            ++m_pos;
            JsonValue::Object object;
            if (!consume('}')) {
                do {
                    skipSpace();
                    if (m_pos >= m_text.size() || m_text[m_pos] != '"') fail("expected a key string");
                    std::string key = parseString();
                    if (!consume(':')) fail("expected ':'");
                    if (object.count(key)) fail("duplicate key '" + key + "'");
                    object.emplace(std::move(key), parseValue(depth + 1));
                } while (consume(','));
                if (!consume('}')) fail("expected ',' or '}'");
            }
            out.value = std::move(object);
        } else if (c == '[') {
            ++m_pos;
            JsonValue::Array array;
            if (!consume(']')) {
                do {
                    array.push_back(parseValue(depth + 1));
                } while (consume(','));
                if (!consume(']')) fail("expected ',' or ']'");
            }
            out.value = std::move(array);
        } else if (c == '"') {
            out.value = parseString();
        } else if (c == 't') {
            expectWord("true");
            out.value = true;
        } else if (c == 'f') {
            expectWord("false");
            out.value = false;
        } else if (c == 'n') {
            expectWord("null");
            out.value = nullptr;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            out.value = parseNumber();
        } else {
            fail("unexpected character");
        }
        return out;
    }

    JsonValue::Number parseNumber() {
        const size_t start = m_pos;
        auto digits = [&] {
            const size_t from = m_pos;
            while (m_pos < m_text.size() && m_text[m_pos] >= '0' && m_text[m_pos] <= '9') ++m_pos;
            return m_pos - from;
        };
        if (m_text[m_pos] == '-') ++m_pos;
        if (m_pos < m_text.size() && m_text[m_pos] == '0') {
            ++m_pos;
        } else if (digits() == 0) {
            fail("bad number");
        }
        if (m_pos < m_text.size() && m_text[m_pos] == '.') {
            ++m_pos;
            if (digits() == 0) fail("bad number");
        }
        if (m_pos < m_text.size() && (m_text[m_pos] == 'e' || m_text[m_pos] == 'E')) {
            ++m_pos;
            if (m_pos < m_text.size() && (m_text[m_pos] == '+' || m_text[m_pos] == '-')) ++m_pos;
            if (digits() == 0) fail("bad number");
        }
        return {std::string(m_text.substr(start, m_pos - start))};
    }

    static void appendUtf8(std::string& out, uint32_t code) {
        if (code < 0x80) {
            out += char(code);
        } else if (code < 0x800) {
            out += char(0xC0 | (code >> 6));
            out += char(0x80 | (code & 0x3F));
        } else if (code < 0x10000) {
            out += char(0xE0 | (code >> 12));
            out += char(0x80 | ((code >> 6) & 0x3F));
            out += char(0x80 | (code & 0x3F));
        } else {
            out += char(0xF0 | (code >> 18));
            out += char(0x80 | ((code >> 12) & 0x3F));
            out += char(0x80 | ((code >> 6) & 0x3F));
            out += char(0x80 | (code & 0x3F));
        }
    }

    uint32_t hex4() {
        if (m_pos + 4 > m_text.size()) fail("short \\u escape");
        uint32_t code = 0;
        const auto [ptr, ec] = std::from_chars(m_text.data() + m_pos, m_text.data() + m_pos + 4, code, 16);
        if (ec != std::errc() || ptr != m_text.data() + m_pos + 4) fail("bad \\u escape");
        m_pos += 4;
        return code;
    }

    std::string parseString() {
        ++m_pos;  // the opening quote
        std::string out;
        for (;;) {
            if (m_pos >= m_text.size()) fail("unterminated string");
            const unsigned char c = static_cast<unsigned char>(m_text[m_pos++]);
            if (c == '"') return out;
            if (c < 0x20) fail("control character in string");
            if (c != '\\') {
                out += char(c);
                continue;
            }
            if (m_pos >= m_text.size()) fail("unterminated escape");
            const char e = m_text[m_pos++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t code = hex4();
                    if (code >= 0xD800 && code < 0xDC00) {
                        if (m_text.substr(m_pos, 2) != "\\u") fail("unpaired surrogate");
                        m_pos += 2;
                        const uint32_t low = hex4();
                        if (low < 0xDC00 || low >= 0xE000) fail("bad surrogate pair");
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    } else if (code >= 0xDC00 && code < 0xE000) {
                        fail("unpaired surrogate");
                    }
                    appendUtf8(out, code);
                    break;
                }
                default: fail("bad escape");
            }
        }
    }

    std::string_view m_text;
    int m_maxDepth;
    size_t m_pos = 0;
};

}  // namespace

bool JsonValue::toUnsigned(uint64_t* out) const {
    if (!isNumber()) return false;
    const std::string& text = std::get<Number>(value).text;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
    return ec == std::errc() && ptr == text.data() + text.size();
}

bool JsonValue::toDouble(double* out) const {
    if (!isNumber()) return false;
    const std::string& text = std::get<Number>(value).text;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
    return ec == std::errc() && ptr == text.data() + text.size() && std::isfinite(*out);
}

JsonValue parseJson(std::string_view text, int maxDepth) { return Parser(text, maxDepth).document(); }

std::string jsonEscaped(std::string_view text) {
    std::string out;
    for (const unsigned char c : text) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buffer[8];
                    std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
                    out += buffer;
                } else {
                    out += char(c);
                }
        }
    }
    return out;
}

std::string toJsonText(const JsonValue& value) {
    if (std::holds_alternative<std::nullptr_t>(value.value)) return "null";
    if (const bool* flag = std::get_if<bool>(&value.value)) return *flag ? "true" : "false";
    if (const auto* number = std::get_if<JsonValue::Number>(&value.value)) return number->text;
    std::string text;
    if (value.isString()) {
        text.append("\"").append(jsonEscaped(value.string())).append("\"");
        return text;
    }
    if (value.isArray()) {
        text.push_back('[');
        for (const auto& item : value.array()) {
            if (text.size() > 1) text.push_back(',');
            text.append(toJsonText(item));
        }
        text.push_back(']');
        return text;
    }
    text.push_back('{');
    for (const auto& [key, item] : value.object()) {
        if (text.size() > 1) text.push_back(',');
        text.append("\"").append(jsonEscaped(key)).append("\":").append(toJsonText(item));
    }
    text.push_back('}');
    return text;
}

}  // namespace flowscope::core
