// The model spec parser (--model SPEC, the app's model box).
#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/models/ModelSpec.h"
#include "tests/fuzz/FuzzSupport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const auto spec = flowscope::core::parseModelSpec(std::string(reinterpret_cast<const char*>(data), size));
        if (spec.limit < 0) std::abort();
    } catch (const std::invalid_argument& error) {
        flowscope::fuzz::requireMessage(error);
    }
    return 0;
}
