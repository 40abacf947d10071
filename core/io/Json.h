#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace flowscope::core {

// A small JSON reader for the engine's own formats (safetensors headers, bundle manifests),
// because core/ links nothing but LibTorch and zlib. Strict RFC 8259: no comments, no trailing
// commas; numbers keep their text so 64-bit integers stay exact. Duplicate keys are an error.
struct JsonValue {
    using Object = std::map<std::string, JsonValue>;
    using Array = std::vector<JsonValue>;
    struct Number {
        std::string text;
    };
    std::variant<std::nullptr_t, bool, Number, std::string, Array, Object> value;

    bool isObject() const { return std::holds_alternative<Object>(value); }
    bool isArray() const { return std::holds_alternative<Array>(value); }
    bool isString() const { return std::holds_alternative<std::string>(value); }
    bool isNumber() const { return std::holds_alternative<Number>(value); }
    const Object& object() const { return std::get<Object>(value); }
    const Array& array() const { return std::get<Array>(value); }
    const std::string& string() const { return std::get<std::string>(value); }
    // The number as a non-negative integer; false if it is not one or does not fit in 64 bits.
    bool toUnsigned(uint64_t* out) const;
    // The number as a finite double; false if it is not a number or overflows.
    bool toDouble(double* out) const;
};

// Parses a whole document; throws std::invalid_argument with the byte offset of the problem.
JsonValue parseJson(std::string_view text, int maxDepth = 64);

// Writes a value back as compact JSON text (numbers exactly as they were read).
std::string toJsonText(const JsonValue& value);

// Escapes a string for a JSON string literal (without the quotes).
std::string jsonEscaped(std::string_view text);

}  // namespace flowscope::core
