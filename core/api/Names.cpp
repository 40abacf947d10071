#include "core/api/Names.h"

namespace flowscope::core {

const std::vector<std::string>& parameterizationNames() {
    static const std::vector<std::string> names{"velocity", "epsilon", "data", "v"};
    return names;
}

const std::vector<std::string>& timeInputNames() {
    static const std::vector<std::string> names{"t", "sigma", "timestep1000"};
    return names;
}

const std::vector<std::string>& mixtureNames() {
    static const std::vector<std::string> names{"8gaussians", "rings", "checkerboard"};
    return names;
}

const std::vector<std::string>& pointCloudNames() {
    static const std::vector<std::string> names{"moons", "spiral", "checkerboard"};
    return names;
}

const std::vector<std::string>& solverNames() {
    static const std::vector<std::string> names{"euler", "heun",   "midpoint", "rk4",    "dpm++2m",
                                                "ddim",  "dopri5", "ddpm",     "euler-a"};
    return names;
}

const std::vector<std::string>& deviceNames() {
    static const std::vector<std::string> names{"auto", "cpu", "cuda"};
    return names;
}

const std::vector<std::string>& dtypeNames() {
    static const std::vector<std::string> names{"float32", "float64", "bfloat16"};
    return names;
}

std::string_view specPrefix(SpecForm form) {
    switch (form) {
        case SpecForm::FashionMnist: return "fashion-mnist";
        case SpecForm::Mixture: return "gmm:";
        case SpecForm::Points: return "points:";
        case SpecForm::Folder: return "folder:";
        case SpecForm::Bundle: return "bundle:";
        case SpecForm::Shipped: return "shipped:";
        case SpecForm::Checkpoint: return "checkpoint:";
    }
    return {};
}

std::string makeSpec(SpecForm form, std::string_view name) {
    std::string spec(specPrefix(form));
    if (form == SpecForm::FashionMnist && !name.empty()) spec += ':';
    return spec.append(name);
}

bool specHasForm(std::string_view spec, SpecForm form, std::string* name) {
    const std::string_view prefix = specPrefix(form);
    if (!spec.starts_with(prefix)) return false;
    std::string_view rest = spec.substr(prefix.size());
    if (form == SpecForm::FashionMnist) {
        if (!rest.empty() && rest.front() != ':') return false;
        if (!rest.empty()) rest.remove_prefix(1);
    }
    if (name) *name = std::string(rest);
    return true;
}

}  // namespace flowscope::core
