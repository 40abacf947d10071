// The safetensors reader on arbitrary bytes: in every accepted file each tensor's bytes lie in the
// data section and match its dtype and shape; every rejected one comes with a message.
#include <cstdint>
#include <string>

#include "core/io/SafeTensorsFile.h"
#include "tests/fuzz/FuzzSupport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace flowscope::core;
    try {
        const SafeTensorsFile file = SafeTensorsFile::parse(std::string(reinterpret_cast<const char*>(data), size));
        for (const auto& entry : file.entries()) {
            uint64_t elements = 1;
            for (int64_t dimension : entry.shape) elements *= static_cast<uint64_t>(dimension);
            if (file.data(entry).size() != elements * safeTensorsDtypeSize(entry.dtype)) std::abort();
        }
    } catch (const SafeTensorsError& error) {
        flowscope::fuzz::requireMessage(error);
    }
    return 0;
}
