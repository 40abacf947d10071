#include "core/NpyFile.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <numeric>
#include <regex>
#include <stdexcept>

#include "core/AtomicFile.h"

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

NpyArray readNpy(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open '" + path + "'");
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
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
    std::smatch match;
    if (!std::regex_search(header, match, std::regex("'descr':\\s*'([<|>]?)(f4|f8)'"))) {
        throw std::runtime_error("'" + path + "' is not a float32 or float64 array");
    }
    const bool isDouble = match[2] == "f8";
    if (match[1] == ">") throw std::runtime_error("'" + path + "' is big-endian; save it little-endian");
    if (std::regex_search(header, std::regex("'fortran_order':\\s*True"))) {
        throw std::runtime_error("'" + path + "' is in Fortran order; save it in C order");
    }
    if (!std::regex_search(header, match, std::regex("'shape':\\s*\\(([^)]*)\\)"))) {
        throw std::runtime_error("'" + path + "' has no shape");
    }
    NpyArray array;
    const std::string dims = match[1];
    std::regex number("\\d+");
    for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number); it != std::sregex_iterator(); ++it) {
        array.shape.push_back(std::stoll(it->str()));
    }
    const int64_t count = std::accumulate(array.shape.begin(), array.shape.end(), int64_t{1}, std::multiplies<>());
    const size_t dataOffset = offset + headerLength;
    const size_t itemSize = isDouble ? 8 : 4;
    if (bytes.size() - dataOffset != static_cast<size_t>(count) * itemSize) {
        throw std::runtime_error("'" + path + "' has the wrong data size for its shape");
    }
    array.data.resize(count);
    if (isDouble) {
        for (int64_t i = 0; i < count; ++i) {
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
