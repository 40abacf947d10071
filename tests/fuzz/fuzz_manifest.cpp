// The bundle manifest (flowscope.json) parser on arbitrary text.
#include <cstdint>
#include <string_view>

#include "core/models/Bundle.h"
#include "tests/fuzz/FuzzSupport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace flowscope::core;
    try {
        const BundleManifest manifest =
            parseBundleManifest(std::string_view(reinterpret_cast<const char*>(data), size), "bundle");
        // What the rest of the engine relies on once a manifest is accepted.
        if (manifest.name.empty() || manifest.file.empty() || manifest.sampleShape.empty()) std::abort();
        if (!(manifest.valueLow < manifest.valueHigh)) std::abort();
        if (manifest.latentRgb && manifest.latentRgb->factors.size() != size_t(manifest.sampleShape[0])) std::abort();
    } catch (const BundleError& error) {
        flowscope::fuzz::requireMessage(error);
    }
    return 0;
}
