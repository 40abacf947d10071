#pragma once

#include <string>
#include <vector>

namespace flowscope::core {

// The names users type for the engine's conventions, in one place without LibTorch, so the
// parsers of manifests and model specs (and their fuzz targets) need nothing else.
const std::vector<std::string>& parameterizationNames();  // velocity epsilon data v
const std::vector<std::string>& timeInputNames();         // t sigma timestep1000
const std::vector<std::string>& mixtureNames();           // gmm:NAME
const std::vector<std::string>& pointCloudNames();        // points:NAME
const std::vector<std::string>& solverNames();            // euler heun ... dopri5 ddpm euler-a
const std::vector<std::string>& deviceNames();            // auto cpu cuda

}  // namespace flowscope::core
