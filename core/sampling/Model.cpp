#include "core/sampling/Model.h"

#include <map>
#include <utility>

#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/sampling/DeviceTransfer.h"

namespace flowscope::core {

torch::Tensor Model::denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                                 const std::vector<double>& sigma) {
    TORCH_CHECK(static_cast<int64_t>(alpha.size()) == x.size(0) && alpha.size() == sigma.size(),
                "internal: one noise level per row");
    std::map<std::pair<double, double>, std::vector<int64_t>> rowsByLevel;
    for (size_t b = 0; b < alpha.size(); ++b) rowsByLevel[{alpha[b], sigma[b]}].push_back(static_cast<int64_t>(b));
    if (rowsByLevel.size() == 1) return denoise(x, alpha.front(), sigma.front());
    torch::Tensor out = torch::empty_like(x);
    for (const auto& [level, rows] : rowsByLevel) {
        const torch::Tensor index = deviceIndex(rows, x.device());
        out.index_copy_(0, index, denoise(x.index_select(0, index), level.first, level.second));
    }
    return out;
}

void Model::setConditioningFiles(const std::string& conditioning, const std::string& unconditioning) {
    if (conditioning.empty() && unconditioning.empty()) return;
    throw InvalidRequestError("--cond and --uncond give the conditioning tensors of a TorchScript bundle's network; '" +
                              name() + "' takes none (a class model takes --class, a checkpoint --prompt)");
}

void Model::setRowClasses(std::vector<int64_t> classes) {
    TORCH_CHECK(classes.empty(), "internal: model '", name(), "' is unconditional and was given classes");
}

std::pair<std::vector<double>, std::vector<double>> Model::levelsOf(const std::vector<PathPoint>& points) {
    std::pair<std::vector<double>, std::vector<double>> levels;
    for (const PathPoint& p : points) {
        levels.first.push_back(p.alpha);
        levels.second.push_back(p.sigma);
    }
    return levels;
}

Model::Prediction Model::predictRows(const torch::Tensor& x, const std::vector<PathPoint>& points) {
    const auto [alpha, sigma] = levelsOf(points);
    return {denoiseRows(x, alpha, sigma), {}};
}

}  // namespace flowscope::core
