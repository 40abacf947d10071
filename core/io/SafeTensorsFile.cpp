#include "core/io/SafeTensorsFile.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <iterator>
#include <tuple>

#include "core/io/Json.h"
#include "core/io/RegularFile.h"

namespace flowscope::core {
namespace {

bool multiplyChecked(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

}  // namespace

uint64_t safeTensorsDtypeSize(const std::string& dtype) {
    static const std::map<std::string, uint64_t> sizes{{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1},
                                                       {"F8_E5M2", 1}, {"I64", 8},  {"I32", 4}, {"I16", 2},  {"I8", 1},
                                                       {"U8", 1},  {"BOOL", 1}};
    const auto it = sizes.find(dtype);
    return it == sizes.end() ? 0 : it->second;
}

namespace {

// The JSON header of a file's bytes, and its length.
JsonValue::Object parseHeader(std::string_view bytes, uint64_t* headerLength) {
    if (bytes.size() < 8) throw SafeTensorsError("safetensors: the file is shorter than its 8-byte header length");
    uint64_t length = 0;
    for (int i = 7; i >= 0; --i) length = (length << 8) | uint8_t(bytes[i]);
    if (length > kSafeTensorsMaxHeader) {
        throw SafeTensorsError("safetensors: the header declares " + std::to_string(length) +
                               " bytes, more than the 100 MB allowed");
    }
    if (length > bytes.size() - 8) {
        throw SafeTensorsError("safetensors: the header length " + std::to_string(length) + " runs past the end of the file");
    }
    const std::string_view header(bytes.data() + 8, length);
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
    *headerLength = length;
    return json.object();
}

// The shape of tensor `name`, with the bytes it needs in `dtype`.
std::vector<int64_t> parseShape(const std::string& name, const JsonValue& shape, const std::string& dtype,
                                uint64_t* byteSize) {
    if (!shape.isArray()) throw SafeTensorsError("safetensors: tensor '" + name + "' has a malformed shape");
    std::vector<int64_t> sizes;
    uint64_t elements = 1;
    for (const auto& dim : shape.array()) {
        uint64_t size = 0;
        if (!dim.toUnsigned(&size) || size > uint64_t(INT64_MAX)) {
            throw SafeTensorsError("safetensors: tensor '" + name + "' has a malformed shape");
        }
        if (!multiplyChecked(elements, size, &elements)) {
            throw SafeTensorsError("safetensors: tensor '" + name + "' overflows when its shape is multiplied out");
        }
        sizes.push_back(int64_t(size));
    }
    if (!multiplyChecked(elements, safeTensorsDtypeSize(dtype), byteSize)) {
        throw SafeTensorsError("safetensors: tensor '" + name + "' overflows when its shape is multiplied out");
    }
    return sizes;
}

SafeTensorsFile::Entry parseEntry(const std::string& name, const JsonValue& value) {
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
    SafeTensorsFile::Entry entry;
    entry.name = name;
    entry.dtype = dtype->second.string();
    uint64_t byteSize = 0;
    entry.shape = parseShape(name, shape->second, entry.dtype, &byteSize);
    if (!offsets->second.isArray() || offsets->second.array().size() != 2 ||
        !offsets->second.array()[0].toUnsigned(&entry.begin) || !offsets->second.array()[1].toUnsigned(&entry.end)) {
        throw SafeTensorsError("safetensors: tensor '" + name + "' has malformed data_offsets");
    }
    if (entry.end < entry.begin || entry.end - entry.begin != byteSize) {
        throw SafeTensorsError("safetensors: tensor '" + name + "' has " +
                               std::to_string(entry.end >= entry.begin ? entry.end - entry.begin : 0) +
                               " bytes of data, but its dtype and shape need " + std::to_string(byteSize));
    }
    return entry;
}

// Sorts the entries by offset and checks that they tile the data section exactly.
void checkTiling(std::vector<SafeTensorsFile::Entry>& entries, uint64_t dataLength) {
    std::sort(entries.begin(), entries.end(), [](const SafeTensorsFile::Entry& a, const SafeTensorsFile::Entry& b) {
        return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
    });
    uint64_t expected = 0;
    for (const SafeTensorsFile::Entry& entry : entries) {
        if (entry.begin != expected) {
            throw SafeTensorsError("safetensors: tensor '" + entry.name + "' starts at byte " + std::to_string(entry.begin) +
                                   " where " + std::to_string(expected) +
                                   " was expected (offsets must be contiguous from 0, without gaps or overlaps)");
        }
        expected = entry.end;
    }
    if (expected != dataLength) {
        throw SafeTensorsError("safetensors: the tensors cover " + std::to_string(expected) + " bytes but the data section has " +
                               std::to_string(dataLength));
    }
}

}  // namespace

SafeTensorsFile SafeTensorsFile::parse(std::string bytes) {
    SafeTensorsFile file;
    file.m_bytes = std::move(bytes);
    file.parseBytes();
    return file;
}

void SafeTensorsFile::parseBytes() {
    uint64_t headerLength = 0;
    const std::string_view view = bytes();
    for (const auto& [name, value] : parseHeader(view, &headerLength)) {
        if (name != "__metadata__") {
            m_entries.push_back(parseEntry(name, value));
            continue;
        }
        if (!value.isObject()) throw SafeTensorsError("safetensors: __metadata__ is not an object");
        for (const auto& [key, text] : value.object()) {
            if (!text.isString()) throw SafeTensorsError("safetensors: __metadata__ value '" + key + "' is not a string");
            m_metadata[key] = text.string();
        }
    }
    checkTiling(m_entries, view.size() - 8 - headerLength);
    m_dataStart = 8 + headerLength;
}

struct SafeTensorsFile::Mapping {
    void* address = nullptr;
    size_t size = 0;
    ~Mapping() {
        if (address) ::munmap(address, size);
    }
};

SafeTensorsFile SafeTensorsFile::map(const std::string& path) {
    uint64_t size = 0;
    try {
        size = checkRegularFile(path, std::numeric_limits<uint64_t>::max(), "the safetensors file");
    } catch (const FileReadError& failure) {
        throw SafeTensorsError(failure.what());
    }
    if (size < 8) throw SafeTensorsError("'" + path + "': safetensors: the file is shorter than its 8-byte header length");
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw SafeTensorsError("'" + path + "': cannot open the file: " + std::strerror(errno));
    struct stat status {};
    if (::fstat(fd, &status) != 0 || !S_ISREG(status.st_mode) || uint64_t(status.st_size) != size) {
        ::close(fd);
        throw SafeTensorsError("'" + path + "': the file changed while it was opened; try again");
    }
    void* address = ::mmap(nullptr, size_t(size), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (address == MAP_FAILED) throw SafeTensorsError("'" + path + "': cannot map the file: " + std::strerror(errno));
    SafeTensorsFile file;
    file.m_mapping = std::make_shared<Mapping>();
    file.m_mapping->address = address;
    file.m_mapping->size = size_t(size);
    try {
        file.parseBytes();
    } catch (const SafeTensorsError& error) {
        throw SafeTensorsError("'" + path + "': " + error.what());
    }
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

std::string_view SafeTensorsFile::bytes() const {
    if (m_mapping) return std::string_view(static_cast<const char*>(m_mapping->address), m_mapping->size);
    return m_bytes;
}

bool SafeTensorsFile::contains(const std::string& name) const { return find(name) != nullptr; }

const SafeTensorsFile::Entry* SafeTensorsFile::find(const std::string& name) const {
    const auto it = std::find_if(m_entries.begin(), m_entries.end(), [&](const Entry& e) { return e.name == name; });
    return it == m_entries.end() ? nullptr : &*it;
}

std::string_view SafeTensorsFile::data(const Entry& entry) const {
    return bytes().substr(m_dataStart + entry.begin, entry.end - entry.begin);
}

}  // namespace flowscope::core
