#include "core/SafeTensorsFile.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <tuple>

#include "core/Json.h"
#include "core/RegularFile.h"

namespace flowscope::core {
namespace {

bool multiplyChecked(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

}  // namespace

uint64_t safeTensorsDtypeSize(const std::string& dtype) {
    static const std::map<std::string, uint64_t> sizes{{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
                                                       {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};
    const auto it = sizes.find(dtype);
    return it == sizes.end() ? 0 : it->second;
}

SafeTensorsFile SafeTensorsFile::parse(std::string bytes) {
    SafeTensorsFile file;
    if (bytes.size() < 8) throw SafeTensorsError("safetensors: the file is shorter than its 8-byte header length");
    uint64_t headerLength = 0;
    for (int i = 7; i >= 0; --i) headerLength = (headerLength << 8) | uint8_t(bytes[i]);
    if (headerLength > kSafeTensorsMaxHeader) {
        throw SafeTensorsError("safetensors: the header declares " + std::to_string(headerLength) +
                               " bytes, more than the 100 MB allowed");
    }
    if (headerLength > bytes.size() - 8) {
        throw SafeTensorsError("safetensors: the header length " + std::to_string(headerLength) +
                               " runs past the end of the file");
    }
    const std::string_view header(bytes.data() + 8, headerLength);
    if (header.empty() || header.front() != '{') {
        throw SafeTensorsError("safetensors: the header does not start with '{'");
    }
    JsonValue json;
    try {
        json = parseJson(header);
    } catch (const std::invalid_argument& error) {
        throw SafeTensorsError(std::string("safetensors: the header is not valid JSON (") + error.what() + ")");
    }
    if (!json.isObject()) throw SafeTensorsError("safetensors: the header is not a JSON object");

    for (const auto& [name, value] : json.object()) {
        if (name == "__metadata__") {
            if (!value.isObject()) throw SafeTensorsError("safetensors: __metadata__ is not an object");
            for (const auto& [key, text] : value.object()) {
                if (!text.isString()) throw SafeTensorsError("safetensors: __metadata__ value '" + key + "' is not a string");
                file.m_metadata[key] = text.string();
            }
            continue;
        }
        if (!value.isObject()) throw SafeTensorsError("safetensors: tensor '" + name + "' is not an object");
        const auto& fields = value.object();
        for (const auto& [key, ignored] : fields) {
            if (key != "dtype" && key != "shape" && key != "data_offsets") {
                throw SafeTensorsError("safetensors: tensor '" + name + "' has an unknown field '" + key + "'");
            }
        }
        const auto dtype = fields.find("dtype");
        const auto shape = fields.find("shape");
        const auto offsets = fields.find("data_offsets");
        if (dtype == fields.end() || shape == fields.end() || offsets == fields.end()) {
            throw SafeTensorsError("safetensors: tensor '" + name + "' lacks dtype, shape or data_offsets");
        }
        if (!dtype->second.isString() || safeTensorsDtypeSize(dtype->second.string()) == 0) {
            throw SafeTensorsError("safetensors: tensor '" + name + "' has an unknown dtype" +
                                   (dtype->second.isString() ? " '" + dtype->second.string() + "'" : ""));
        }
        Entry entry;
        entry.name = name;
        entry.dtype = dtype->second.string();
        if (!shape->second.isArray()) throw SafeTensorsError("safetensors: tensor '" + name + "' has a malformed shape");
        uint64_t elements = 1;
        for (const auto& dim : shape->second.array()) {
            uint64_t size = 0;
            if (!dim.toUnsigned(&size) || size > uint64_t(INT64_MAX)) {
                throw SafeTensorsError("safetensors: tensor '" + name + "' has a malformed shape");
            }
            if (!multiplyChecked(elements, size, &elements)) {
                throw SafeTensorsError("safetensors: tensor '" + name + "' overflows when its shape is multiplied out");
            }
            entry.shape.push_back(int64_t(size));
        }
        uint64_t byteSize = 0;
        if (!multiplyChecked(elements, safeTensorsDtypeSize(entry.dtype), &byteSize)) {
            throw SafeTensorsError("safetensors: tensor '" + name + "' overflows when its shape is multiplied out");
        }
        if (!offsets->second.isArray() || offsets->second.array().size() != 2 ||
            !offsets->second.array()[0].toUnsigned(&entry.begin) || !offsets->second.array()[1].toUnsigned(&entry.end)) {
            throw SafeTensorsError("safetensors: tensor '" + name + "' has malformed data_offsets");
        }
        if (entry.end < entry.begin || entry.end - entry.begin != byteSize) {
            throw SafeTensorsError("safetensors: tensor '" + name + "' has " +
                                   std::to_string(entry.end >= entry.begin ? entry.end - entry.begin : 0) +
                                   " bytes of data, but its dtype and shape need " + std::to_string(byteSize));
        }
        file.m_entries.push_back(std::move(entry));
    }
    std::sort(file.m_entries.begin(), file.m_entries.end(),
              [](const Entry& a, const Entry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
    uint64_t expected = 0;
    for (const Entry& entry : file.m_entries) {
        if (entry.begin != expected) {
            throw SafeTensorsError("safetensors: tensor '" + entry.name + "' starts at byte " + std::to_string(entry.begin) +
                                   " where " + std::to_string(expected) +
                                   " was expected (offsets must be contiguous from 0, without gaps or overlaps)");
        }
        expected = entry.end;
    }
    const uint64_t dataLength = bytes.size() - 8 - headerLength;
    if (expected != dataLength) {
        throw SafeTensorsError("safetensors: the tensors cover " + std::to_string(expected) + " bytes but the data section has " +
                               std::to_string(dataLength));
    }
    file.m_dataStart = 8 + headerLength;
    file.m_bytes = std::move(bytes);
    return file;
}

SafeTensorsFile SafeTensorsFile::read(const std::string& path) {
    std::string bytes;
    try {
        bytes = readRegularFile(path, memoryReadLimit(), "the safetensors file");
    } catch (const FileReadError& failure) {
        throw SafeTensorsError(failure.what());
    }
    try {
        return parse(std::move(bytes));
    } catch (const SafeTensorsError& error) {
        throw SafeTensorsError("'" + path + "': " + error.what());
    }
}

bool SafeTensorsFile::contains(const std::string& name) const {
    return std::any_of(m_entries.begin(), m_entries.end(), [&](const Entry& e) { return e.name == name; });
}

std::string_view SafeTensorsFile::data(const Entry& entry) const {
    return std::string_view(m_bytes).substr(m_dataStart + entry.begin, entry.end - entry.begin);
}

}  // namespace flowscope::core
