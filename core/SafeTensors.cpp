#include "core/SafeTensors.h"

#include <algorithm>
#include <cstring>
#include <tuple>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "core/AtomicFile.h"
#include "core/Json.h"

namespace flowscope::core {
namespace {

struct DtypeInfo {
    const char* name;
    torch::ScalarType type;
    uint64_t size;
};

const DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8}, {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* dtypeByName(const std::string& name) {
    for (const auto& d : kDtypes) {
        if (name == d.name) return &d;
    }
    return nullptr;
}

const DtypeInfo* dtypeByType(torch::ScalarType type) {
    for (const auto& d : kDtypes) {
        if (type == d.type) return &d;
    }
    return nullptr;
}

bool multiplyChecked(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

}  // namespace

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
        if (!dtype->second.isString() || !dtypeByName(dtype->second.string())) {
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
        if (!multiplyChecked(elements, dtypeByName(entry.dtype)->size, &byteSize)) {
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
    std::ifstream in(path, std::ios::binary);
    if (!in) throw SafeTensorsError("cannot open '" + path + "'");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
        return parse(std::move(bytes));
    } catch (const SafeTensorsError& error) {
        throw SafeTensorsError("'" + path + "': " + error.what());
    }
}

bool SafeTensorsFile::contains(const std::string& name) const {
    return std::any_of(m_entries.begin(), m_entries.end(), [&](const Entry& e) { return e.name == name; });
}

torch::Tensor SafeTensorsFile::tensor(const std::string& name) const {
    for (const Entry& entry : m_entries) {
        if (entry.name != name) continue;
        torch::Tensor out = torch::empty(entry.shape, torch::TensorOptions().dtype(dtypeByName(entry.dtype)->type));
        if (entry.end > entry.begin) std::memcpy(out.data_ptr(), m_bytes.data() + m_dataStart + entry.begin, entry.end - entry.begin);
        return out;
    }
    throw SafeTensorsError("safetensors: no tensor named '" + name + "'");
}

std::string encodeSafeTensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata) {
    std::set<std::string> names;
    std::ostringstream json;
    json << '{';
    std::string data;
    bool first = true;
    for (const auto& [name, tensor] : tensors) {
        if (name == "__metadata__" || !names.insert(name).second) {
            throw std::invalid_argument("safetensors: tensor name '" + name + "' is reserved or repeated");
        }
        const DtypeInfo* dtype = dtypeByType(tensor.scalar_type());
        if (!dtype) throw std::invalid_argument("safetensors: tensor '" + name + "' has a dtype the format lacks");
        const torch::Tensor cpu = tensor.detach().to(torch::kCPU).contiguous();
        const uint64_t begin = data.size();
        data.append(static_cast<const char*>(cpu.data_ptr()), size_t(cpu.numel()) * dtype->size);
        json << (first ? "" : ",") << '"' << jsonEscaped(name) << "\":{\"dtype\":\"" << dtype->name << "\",\"shape\":[";
        for (int64_t i = 0; i < cpu.dim(); ++i) json << (i ? "," : "") << cpu.size(i);
        json << "],\"data_offsets\":[" << begin << ',' << data.size() << "]}";
        first = false;
    }
    if (!metadata.empty()) {
        json << (first ? "" : ",") << "\"__metadata__\":{";
        bool firstKey = true;
        for (const auto& [key, value] : metadata) {
            json << (firstKey ? "" : ",") << '"' << jsonEscaped(key) << "\":\"" << jsonEscaped(value) << '"';
            firstKey = false;
        }
        json << '}';
    }
    json << '}';
    std::string header = json.str();
    // The data section starts 8-byte aligned, as the reference writer does (padding with spaces).
    header.append((8 - header.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    uint64_t length = header.size();
    for (int i = 0; i < 8; ++i) out[i] = char((length >> (8 * i)) & 0xff);
    out += header;
    out += data;
    return out;
}

void writeSafeTensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
    writeFileAtomically(path, encodeSafeTensors(tensors, metadata));
}

}  // namespace flowscope::core
