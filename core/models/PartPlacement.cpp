#include "core/models/PartPlacement.h"

#include <vector>

namespace flowscope::core {

std::string PartPlacement::describe() const {
    const std::string compute = bfloat16 ? "bfloat16" : "float32";
    return packFloat8 ? "float8 (computed in " + compute + ")" : compute;
}

PartPlacement placePart(const PartSize& size, double activations, double room, bool gpu) {
    std::vector<PartPlacement> order;
    const auto add = [&](bool bfloat16, bool packed) {
        if (packed && size.float8Parameters <= 0.0) return;
        PartPlacement placement;
        placement.bfloat16 = bfloat16;
        placement.packFloat8 = packed;
        const double wide = bfloat16 ? 2.0 : 4.0;
        const double bytes = packed ? size.float8Parameters : 0.0;
        placement.bytes = wide * (size.parameters - bytes) + bytes + activations;
        order.push_back(placement);
    };
    if (!gpu) {
        add(false, false);
        add(false, true);
    }
    add(true, false);
    add(true, true);
    if (room <= 0.0) return order.front();
    for (const PartPlacement& placement : order) {
        if (placement.bytes <= room) return placement;
    }
    PartPlacement smallest = order.front();
    for (const PartPlacement& placement : order) {
        if (placement.bytes < smallest.bytes) smallest = placement;
    }
    smallest.fits = false;
    return smallest;
}

}  // namespace flowscope::core
