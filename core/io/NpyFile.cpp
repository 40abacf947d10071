#include "core/io/NpyFile.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <numeric>
#include <charconv>
#include <stdexcept>

#include "core/io/AtomicFile.h"
#include "core/io/RegularFile.h"

namespace flowscope::core {

std::string encodeNpy(const std::vector<int64_t>& shape, const float* data) {
    std::string dims;
    for (size_t i = 0; i < shape.size(); ++i) {
        dims += std::to_string(shape[i]);
        if (shape.size() == 1 || i + 1 < shape.size()) dims += ",";
        if (i + 1 < shape.size()) dims += " ";
    }
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
    const size_t unpadded = 10 + header.size() + 1;
    header.append((64 - unpadded % 64) % 64, ' ');
    header += '\n';
    const int64_t count = std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
    std::string bytes = std::string("\x93NUMPY", 6);
    bytes += '\x01';
    bytes += '\x00';
    bytes += static_cast<char>(header.size() & 0xff);
    bytes += static_cast<char>((header.size() >> 8) & 0xff);
    bytes += header;
    bytes.append(reinterpret_cast<const char*>(data), static_cast<size_t>(count) * sizeof(float));
    return bytes;
}

void writeNpy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
    writeFileAtomically(path, encodeNpy(shape, data));
}

namespace {

// The value of 'key' in the header's Python dict literal: a quoted string without its quotes, a
// parenthesized tuple with its parentheses, or a bare word. Empty when the key is absent.
std::string headerField(const std::string& header, const std::string& key) {
    const std::string quoted = "'" + key + "'";
    size_t at = header.find(quoted);
    if (at == std::string::npos) return {};
    at = header.find(':', at + quoted.size());
    if (at == std::string::npos) return {};
    at = header.find_first_not_of(' ', at + 1);
    if (at == std::string::npos) return {};
    if (header[at] == '\'') {
        const size_t end = header.find('\'', at + 1);
        return end == std::string::npos ? std::string() : header.substr(at + 1, end - at - 1);
    }
    if (header[at] == '(') {
        const size_t end = header.find(')', at);
        return end == std::string::npos ? std::string() : header.substr(at, end - at + 1);
    }
    const size_t end = header.find_first_of(",}", at);
    return header.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

}  // namespace

NpyArray readNpy(const std::string& path) {
    const std::string bytes = readRegularFile(path, memoryReadLimit(), "the array file");
    if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
        throw std::runtime_error("'" + path + "' is not a .npy file");
    }
    const int major = static_cast<unsigned char>(bytes[6]);
    size_t headerLength = 0;
    size_t offset = 0;
    if (major == 1) {
        headerLength = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
        offset = 10;
    } else {
        if (bytes.size() < 12) throw std::runtime_error("'" + path + "' is truncated");
        for (int i = 0; i < 4; ++i) headerLength |= size_t(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
        offset = 12;
    }
    if (offset + headerLength > bytes.size()) throw std::runtime_error("'" + path + "' is truncated");
    const std::string header = bytes.substr(offset, headerLength);
    const std::string descr = headerField(header, "descr");
    if (descr.size() < 2 || (descr.back() != '4' && descr.back() != '8') || descr[descr.size() - 2] != 'f' ||
        descr.size() > 3 || (descr.size() == 3 && descr[0] != '<' && descr[0] != '=' && descr[0] != '>')) {
        throw std::runtime_error("'" + path + "' is not a float32 or float64 array");
    }
    const bool isDouble = descr.back() == '8';
    if (descr[0] == '>') throw std::runtime_error("'" + path + "' is big-endian; save it little-endian");
    if (headerField(header, "fortran_order") == "True") {
        throw std::runtime_error("'" + path + "' is in Fortran order; save it in C order");
    }
    const std::string dims = headerField(header, "shape");
    if (dims.empty() || dims.front() != '(' || dims.back() != ')') throw std::runtime_error("'" + path + "' has no shape");
    NpyArray array;
    const size_t itemSize = isDouble ? 8 : 4;
    const uint64_t available = (bytes.size() - offset - headerLength) / itemSize;
    uint64_t count = 1;
    for (size_t i = 1; i + 1 < dims.size();) {
        if (dims[i] == ' ' || dims[i] == ',') {
            ++i;
            continue;
        }
        uint64_t size = 0;
        const auto [end, error] = std::from_chars(dims.data() + i, dims.data() + dims.size() - 1, size);
        if (error != std::errc() || end == dims.data() + i) throw std::runtime_error("'" + path + "' has a malformed shape");
        i = static_cast<size_t>(end - dims.data());
        // Checked: a shape whose product exceeds the data present is refused before any allocation.
        if (size != 0 && count > available / size) {
            throw std::runtime_error("'" + path + "' has the wrong data size for its shape");
        }
        count *= size;
        array.shape.push_back(static_cast<int64_t>(size));
    }
    const size_t dataOffset = offset + headerLength;
    if (bytes.size() - dataOffset != static_cast<size_t>(count) * itemSize) {
        throw std::runtime_error("'" + path + "' has the wrong data size for its shape");
    }
    array.data.resize(count);
    if (isDouble) {
        for (uint64_t i = 0; i < count; ++i) {
            double value;
            std::memcpy(&value, bytes.data() + dataOffset + i * 8, 8);
            array.data[i] = static_cast<float>(value);
        }
    } else {
        std::memcpy(array.data.data(), bytes.data() + dataOffset, count * 4);
    }
    return array;
}

}  // namespace flowscope::core
