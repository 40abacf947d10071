#include "core/Names.h"

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

}  // namespace flowscope::core
