#include "core/models/Architecture.h"

#include <sstream>
#include <stdexcept>

namespace flowscope::core {

std::string Architecture::toJson() const {
    std::ostringstream json;
    json << "{\"kind\": \"" << kind << "\", \"width\": " << width << ", \"depth\": " << depth;
    if (classes > 0) json << ", \"classes\": " << classes;
    json << "}";
    return json.str();
}

void Architecture::check() const {
    if (kind != "mlp" && kind != "unet") {
        throw std::invalid_argument("architecture \"kind\" is '" + kind + "'; allowed: mlp, unet");
    }
    if (kind == "mlp" && sampleShape.size() != 1) {
        throw std::invalid_argument("an mlp network needs a [D] sample_shape");
    }
    if (kind == "unet" && sampleShape.size() != 3) {
        throw std::invalid_argument("a unet network needs a [C, H, W] sample_shape");
    }
    if (width < 4 || width > 1024) throw std::invalid_argument("architecture \"width\" must be 4 to 1024");
    if (depth < 0 || depth > 6 || (kind == "unet" && depth < 1)) {
        throw std::invalid_argument("architecture \"depth\" must be 0 to 6 (unet: 1 to 6)");
    }
    if (classes < 0 || classes > kMaxClasses) {
        throw std::invalid_argument("architecture \"classes\" must be 0 (unconditional) to " + std::to_string(kMaxClasses));
    }
}

Architecture Architecture::fromJson(const JsonValue& json) {
    if (!json.isObject()) throw std::invalid_argument("\"architecture\" must be an object {kind, width, depth}");
    Architecture architecture;
    const auto& object = json.object();
    const auto kind = object.find("kind");
    if (kind == object.end() || !kind->second.isString()) {
        throw std::invalid_argument("architecture \"kind\" is missing; allowed: mlp, unet");
    }
    architecture.kind = kind->second.string();
    for (const char* field : {"width", "depth"}) {
        const auto it = object.find(field);
        uint64_t value = 0;
        if (it == object.end() || !it->second.toUnsigned(&value) || value > 1u << 20) {
            throw std::invalid_argument(std::string("architecture \"") + field + "\" must be a whole number");
        }
        (std::string(field) == "width" ? architecture.width : architecture.depth) = static_cast<int64_t>(value);
    }
    if (const auto classes = object.find("classes"); classes != object.end()) {
        uint64_t value = 0;
        if (!classes->second.toUnsigned(&value) || value > static_cast<uint64_t>(kMaxClasses)) {
            throw std::invalid_argument("architecture \"classes\" must be a whole number from 0 to " +
                                        std::to_string(kMaxClasses));
        }
        architecture.classes = static_cast<int64_t>(value);
    }
    return architecture;
}

}  // namespace flowscope::core
