#pragma once

// The safetensors reader without LibTorch (the tensors themselves come from SafeTensors.h), so
// that the validation can be fuzzed and used anywhere.

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace flowscope::core {

// A file that is not valid safetensors; the message names the rule it breaks.
class SafeTensorsError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The safetensors format: an 8-byte little-endian header length, a JSON header mapping names to
// {dtype, shape, data_offsets} (plus an optional "__metadata__" of strings), then the data.
// Validation follows the reference implementation: header at most 100 MB and inside the file,
// offsets sorted, contiguous and non-overlapping from 0, shape x dtype size computed with overflow
// checks and equal to each byte range, and the data ending exactly at the end of the file.
class SafeTensorsFile {
public:
    struct Entry {
        std::string name;
        std::string dtype;  // F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL
        std::vector<int64_t> shape;
        uint64_t begin = 0;
        uint64_t end = 0;
    };

    static SafeTensorsFile parse(std::string bytes);  // throws SafeTensorsError
    static SafeTensorsFile read(const std::string& path);
    // The file memory-mapped (read-only, private) instead of read: checkpoints of many gigabytes
    // cost address space, and only the pages a load touches are read. Validated as `parse` does;
    // the mapping lives as long as any copy of the object.
    static SafeTensorsFile map(const std::string& path);
    uint64_t fileSize() const { return bytes().size(); }

    const std::map<std::string, std::string>& metadata() const { return m_metadata; }
    const std::vector<Entry>& entries() const { return m_entries; }  // in data order
    bool contains(const std::string& name) const;
    // The raw little-endian bytes of an entry.
    std::string_view data(const Entry& entry) const;
    // A CPU tensor holding a copy of the named tensor's data (defined with LibTorch, SafeTensors.h).
    // F8 entries come as float32 (LibTorch 1.13 has no 8-bit float type).
    at::Tensor tensor(const std::string& name) const;
    const Entry* find(const std::string& name) const;

private:
    void parseBytes();
    // The file's bytes: the mapping's, or those read.
    std::string_view bytes() const;
    struct Mapping;
    std::string m_bytes;
    std::shared_ptr<Mapping> m_mapping;
    size_t m_dataStart = 0;
    std::vector<Entry> m_entries;
    std::map<std::string, std::string> m_metadata;
};

constexpr uint64_t kSafeTensorsMaxHeader = 100'000'000;

// Bytes per element of a safetensors dtype name; 0 for a name FlowScope does not know.
uint64_t safeTensorsDtypeSize(const std::string& dtype);

}  // namespace flowscope::core
