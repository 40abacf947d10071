#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/io/Json.h"

namespace flowscope::core {

// The shape of a network FlowScope trains, as stored in a "flowscope-net" bundle's manifest
// ("architecture"), so the bundle can be rebuilt without any code from the user.
struct Architecture {
    std::string kind = "mlp";          // mlp (2-D points) or unet (images [C, H, W])
    std::vector<int64_t> sampleShape;  // [D] for mlp, [C, H, W] for unet
    int64_t width = 256;               // mlp: hidden units; unet: channels at full resolution
    int64_t depth = 3;                 // mlp: hidden layers; unet: downsamplings
    // A conditional network's class count (0: unconditional): a learned embedding per class and
    // one for the null class, added to the time embedding.
    int64_t classes = 0;

    static constexpr int64_t kMaxClasses = 1000;

    std::string toJson() const;  // "classes" only for a conditional network
    // Throws std::invalid_argument naming the field and the allowed values.
    static Architecture fromJson(const JsonValue& json);
    void check() const;
};

}  // namespace flowscope::core
