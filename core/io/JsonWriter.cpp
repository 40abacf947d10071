#include "core/io/JsonWriter.h"

#include "core/io/Json.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace flowscope::core {

void JsonWriter::separate() {
    if (m_needComma) m_out += ',';
    m_needComma = true;
}

void JsonWriter::beginObject() {
    separate();
    m_out += '{';
    m_needComma = false;
}

void JsonWriter::endObject() {
    m_out += '}';
    m_needComma = true;
}

void JsonWriter::beginArray() {
    separate();
    m_out += '[';
    m_needComma = false;
}

void JsonWriter::endArray() {
    m_out += ']';
    m_needComma = true;
}

void JsonWriter::key(const std::string& name) {
    separate();
    m_out += '"' + jsonEscaped(name) + "\":";
    m_needComma = false;
}

void JsonWriter::members(std::string_view objectText) {
    if (objectText.size() < 2 || objectText.front() != '{' || objectText.back() != '}') {
        throw std::invalid_argument("JsonWriter::members takes an object's text");
    }
    if (objectText.size() == 2) return;
    separate();
    m_out += objectText.substr(1, objectText.size() - 2);
}

void JsonWriter::value(const std::string& text) {
    separate();
    m_out += '"' + jsonEscaped(text) + '"';
}

void JsonWriter::value(double number) {
    separate();
    if (!std::isfinite(number)) {
        m_out += "null";
        return;
    }
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.17g", number);
    m_out += buffer;
}

void JsonWriter::value(long long number) {
    separate();
    m_out += std::to_string(number);
}

void JsonWriter::value(bool flag) {
    separate();
    m_out += flag ? "true" : "false";
}

}  // namespace flowscope::core
