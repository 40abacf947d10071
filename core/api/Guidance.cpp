#include "core/api/Guidance.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/api/Errors.h"

namespace flowscope::core {
namespace {

std::string number(double value) {
    std::ostringstream out;
    out << value;
    return out.str();
}

}  // namespace

bool GuidanceSettings::guides() const {
    if (method == GuidanceMethod::None) return false;
    if (method == GuidanceMethod::CfgZero && cfgZeroSteps > 0) return true;
    return scale != 1.0 && intervalLow < intervalHigh;
}

const std::vector<std::string>& guidanceMethodNames() {
    static const std::vector<std::string> names{"none", "cfg", "apg", "cfg-zero"};
    return names;
}

GuidanceMethod parseGuidanceMethod(std::string_view name) {
    const auto& names = guidanceMethodNames();
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) throw UnknownNameError("guidance method", name, names);
    return static_cast<GuidanceMethod>(it - names.begin());
}

std::string toString(GuidanceMethod method) { return guidanceMethodNames().at(static_cast<size_t>(method)); }

void checkGuidance(const GuidanceSettings& s) {
    if (!std::isfinite(s.scale) || s.scale < 0.0) {
        throw InvalidRequestError("--cfg: the guidance scale must be a finite number of at least 0 (got " +
                                  number(s.scale) + "); 1 is the conditional model, 0 the unconditional one");
    }
    if (!(s.intervalLow >= 0.0 && s.intervalLow <= s.intervalHigh && s.intervalHigh <= 1.0)) {
        throw InvalidRequestError("--cfg-interval LO,HI must lie in [0, 1] with LO <= HI (got " + number(s.intervalLow) +
                                  "," + number(s.intervalHigh) + "); 0 is noise, 1 is data");
    }
    if (!(s.rescale >= 0.0 && s.rescale <= 1.0)) {
        throw InvalidRequestError("--cfg-rescale must be in [0, 1] (got " + number(s.rescale) + "); 0.7 is usual");
    }
    if (!std::isfinite(s.apgEta)) throw InvalidRequestError("--apg-eta must be a finite number (got " + number(s.apgEta) + ")");
    if (!(s.apgMomentum >= 0.0 && s.apgMomentum < 1.0)) {
        throw InvalidRequestError("--apg-momentum must be in [0, 1) (got " + number(s.apgMomentum) + ")");
    }
    if (!(s.apgNorm > 0.0)) {
        throw InvalidRequestError("--apg-norm must be above 0 (got " + number(s.apgNorm) + "); leave it out for no threshold");
    }
    if (s.cfgZeroSteps < 0) throw InvalidRequestError("--cfg-zero-steps must be at least 0 (got " + std::to_string(s.cfgZeroSteps) + ")");
    if (s.method != GuidanceMethod::Cfg && s.rescale != 0.0) {
        throw InvalidRequestError("--cfg-rescale applies to --guidance cfg only (got --guidance " + toString(s.method) + ")");
    }
    if (s.method != GuidanceMethod::Apg && (s.apgEta != 0.0 || s.apgMomentum != 0.0 || std::isfinite(s.apgNorm))) {
        throw InvalidRequestError("--apg-eta, --apg-momentum and --apg-norm apply to --guidance apg only (got --guidance " +
                                  toString(s.method) + ")");
    }
    if (s.method != GuidanceMethod::CfgZero && s.cfgZeroSteps != 0) {
        throw InvalidRequestError("--cfg-zero-steps applies to --guidance cfg-zero only (got --guidance " + toString(s.method) + ")");
    }
}

}  // namespace flowscope::core
