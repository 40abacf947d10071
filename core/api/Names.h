#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace flowscope::core {

// The names users type for the engine's conventions, in one place without LibTorch, so the
// parsers of manifests and model specs (and their fuzz targets) need nothing else.
const std::vector<std::string>& parameterizationNames();  // velocity epsilon data v
const std::vector<std::string>& timeInputNames();         // t sigma timestep1000
const std::vector<std::string>& mixtureNames();           // gmm:NAME
const std::vector<std::string>& pointCloudNames();        // points:NAME
// The adaptive solver (references are solved with it).
inline constexpr std::string_view kAdaptiveSolver = "dopri5";
const std::vector<std::string>& solverNames();            // euler heun ... dopri5 ddpm euler-a
const std::vector<std::string>& deviceNames();            // auto cpu cuda
const std::vector<std::string>& dtypeNames();             // float32 float64 bfloat16


// The forms of a model spec, each by its prefix: fashion-mnist[:N][:bf16], gmm:NAME, points:NAME,
// folder:PATH, bundle:DIR, shipped:NAME (core/models/ModelSpec.h parses them whole).
enum class SpecForm { FashionMnist, Mixture, Points, Folder, Bundle, Shipped, Checkpoint };
// "fashion-mnist", "gmm:", "points:", "folder:", "bundle:" or "shipped:".
std::string_view specPrefix(SpecForm form);
// The spec of `name` in `form` (for fashion-mnist, `name` holds its options: "" or "1000:bf16").
std::string makeSpec(SpecForm form, std::string_view name);
// Whether `spec` is of `form`; `name` (when given) receives what follows the prefix.
bool specHasForm(std::string_view spec, SpecForm form, std::string* name = nullptr);

}  // namespace flowscope::core
