#include "core/api/Errors.h"

namespace flowscope::core {

std::string joinNames(const std::vector<std::string>& names, std::string_view separator) {
    std::string joined;
    for (const auto& name : names) {
        if (!joined.empty()) joined += separator;
        joined += name;
    }
    return joined;
}

UnknownNameError::UnknownNameError(std::string_view kind, std::string_view given,
                                   const std::vector<std::string>& valid)
    : std::invalid_argument("unknown " + std::string(kind) + " '" + std::string(given) +
                            "'; valid: " + joinNames(valid)) {}

}  // namespace flowscope::core
