// The safetensors reader on arbitrary bytes: every accepted file must yield each tensor with the
// declared shape; every rejected one a message.
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "core/SafeTensors.h"
#include "tests/fuzz/FuzzSupport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace flowscope::core;
    try {
        const SafeTensorsFile file = SafeTensorsFile::parse(std::string(reinterpret_cast<const char*>(data), size));
        for (const auto& entry : file.entries()) {
            const torch::Tensor tensor = file.tensor(entry.name);
            if (tensor.sizes().vec() != entry.shape) std::abort();
        }
    } catch (const SafeTensorsError& error) {
        flowscope::fuzz::requireMessage(error);
    }
    return 0;
}
