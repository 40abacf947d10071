#include "core/io/SafeTensors.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "core/io/AtomicFile.h"
#include "core/io/Json.h"

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

const std::array<float, 256>& e4m3Table() {
    static const std::array<float, 256> table = [] {
        std::array<float, 256> values{};
        for (int byte = 0; byte < 256; ++byte) {
            const int exponent = (byte >> 3) & 15;
            const int mantissa = byte & 7;
            float value = exponent == 0 ? std::ldexp(float(mantissa) / 8.0f, -6)
                                        : std::ldexp(1.0f + float(mantissa) / 8.0f, exponent - 7);
            if (exponent == 15 && mantissa == 7) value = std::numeric_limits<float>::quiet_NaN();
            values[size_t(byte)] = (byte & 128) ? -value : value;
        }
        return values;
    }();
    return table;
}

// Float8 values as float32: E4M3FN by the table; E5M2 is the top byte of an IEEE half.
torch::Tensor float8ToFloat32(std::string_view bytes, const std::vector<int64_t>& shape, bool e4m3) {
    torch::Tensor out = torch::empty(shape, torch::kFloat32);
    float* values = out.data_ptr<float>();
    const auto* raw = reinterpret_cast<const uint8_t*>(bytes.data());
    if (e4m3) {
        const std::array<float, 256>& table = e4m3Table();
        for (size_t i = 0; i < bytes.size(); ++i) values[i] = table[raw[i]];
        return out;
    }
    torch::Tensor half = torch::empty(shape, torch::kFloat16);
    auto* bits = static_cast<uint16_t*>(half.data_ptr());
    for (size_t i = 0; i < bytes.size(); ++i) bits[i] = uint16_t(raw[i]) << 8;
    return half.to(torch::kFloat32);
}

}  // namespace

torch::Tensor SafeTensorsFile::tensor(const std::string& name) const {
    for (const Entry& entry : m_entries) {
        if (entry.name != name) continue;
        if (entry.dtype == "F8_E4M3" || entry.dtype == "F8_E5M2") {
            return float8ToFloat32(data(entry), entry.shape, entry.dtype == "F8_E4M3");
        }
        torch::Tensor out = torch::empty(entry.shape, torch::TensorOptions().dtype(dtypeByName(entry.dtype)->type));
        const std::string_view bytes = data(entry);
        if (!bytes.empty()) std::memcpy(out.data_ptr(), bytes.data(), bytes.size());
        return out;
    }
    throw SafeTensorsError("safetensors: no tensor named '" + name + "'");
}

torch::Tensor float8E4M3Values() {
    return torch::from_blob(const_cast<float*>(e4m3Table().data()), {256}, torch::kFloat32).clone();
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
