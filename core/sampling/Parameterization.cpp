#include "core/sampling/DeviceTransfer.h"
#include "core/sampling/Parameterization.h"

#include "core/api/Errors.h"
#include "core/api/Names.h"

namespace flowscope::core {

Parameterization parseParameterization(std::string_view name) {
    if (name == "velocity") return Parameterization::Velocity;
    if (name == "epsilon") return Parameterization::Epsilon;
    if (name == "data" || name == "x0") return Parameterization::Data;
    if (name == "v") return Parameterization::V;
    throw UnknownNameError("prediction", name, parameterizationNames());
}

std::string toString(Parameterization parameterization) {
    switch (parameterization) {
        case Parameterization::Velocity: return "velocity";
        case Parameterization::Epsilon: return "epsilon";
        case Parameterization::Data: return "data";
        case Parameterization::V: return "v";
    }
    return "unknown";
}

namespace {

// a X + b Y in two operations (one kernel each on a GPU), for coefficients that are numbers or
// columns with one value per row.
torch::Tensor combine(double a, const torch::Tensor& x, double b, const torch::Tensor& y) {
    return torch::add(x * a, y, b);
}

torch::Tensor combine(const torch::Tensor& a, const torch::Tensor& x, const torch::Tensor& b, const torch::Tensor& y) {
    return torch::addcmul(a * x, b, y);
}

// One formula for a scalar point and for points per row (Point = PathPoint or RowPoints), each a
// combination of the output and x whose coefficients are worked out first.
template <typename Point>
torch::Tensor toData(Parameterization parameterization, const torch::Tensor& output, const torch::Tensor& x,
                     const Point& p) {
    switch (parameterization) {
        case Parameterization::Data: return output;
        case Parameterization::Epsilon: return combine(1.0 / p.alpha, x, -p.sigma / p.alpha, output);
        case Parameterization::Velocity: {
            const auto denominator = p.alphaDot * p.sigma - p.sigmaDot * p.alpha;
            return combine(p.sigma / denominator, output, -p.sigmaDot / denominator, x);
        }
        case Parameterization::V: return combine(p.alpha, x, -p.sigma, output);
    }
    throw InvalidRequestError("unsupported parameterization");
}

// v = alphaDot x̂0 + sigmaDot epŝ with epŝ = (x - alpha x̂0)/sigma.
template <typename Point>
torch::Tensor toVelocity(const torch::Tensor& data, const torch::Tensor& x, const Point& p) {
    return combine(p.alphaDot - p.sigmaDot * p.alpha / p.sigma, data, p.sigmaDot / p.sigma, x);
}

}  // namespace

RowPoints rowPoints(const std::vector<PathPoint>& points, const torch::Tensor& like) {
    std::vector<int64_t> shape(like.dim(), 1);
    shape[0] = static_cast<int64_t>(points.size());
    std::vector<std::vector<double>> columns(4);
    for (const auto& point : points) {
        columns[0].push_back(point.alpha);
        columns[1].push_back(point.sigma);
        columns[2].push_back(point.alphaDot);
        columns[3].push_back(point.sigmaDot);
    }
    // One copy to the device for all four.
    const auto values = deviceColumns(columns, like);
    return {values[0].view(shape), values[1].view(shape), values[2].view(shape), values[3].view(shape)};
}

torch::Tensor predictionToData(Parameterization parameterization, const torch::Tensor& output,
                               const torch::Tensor& x, const PathPoint& p) {
    return toData(parameterization, output, x, p);
}

torch::Tensor predictionToData(Parameterization parameterization, const torch::Tensor& output,
                               const torch::Tensor& x, const RowPoints& p) {
    return toData(parameterization, output, x, p);
}

torch::Tensor velocityFromData(const torch::Tensor& data, const torch::Tensor& x, const RowPoints& p) {
    return toVelocity(data, x, p);
}

torch::Tensor dataToPrediction(Parameterization parameterization, const torch::Tensor& data,
                               const torch::Tensor& x, const PathPoint& p) {
    const torch::Tensor eps = (x - p.alpha * data) / p.sigma;
    switch (parameterization) {
        case Parameterization::Data: return data;
        case Parameterization::Epsilon: return eps;
        case Parameterization::Velocity: return p.alphaDot * data + p.sigmaDot * eps;
        case Parameterization::V: return p.alpha * eps - p.sigma * data;
    }
    throw InvalidRequestError("unsupported parameterization");
}

torch::Tensor velocityFromData(const torch::Tensor& data, const torch::Tensor& x, const PathPoint& p) {
    return toVelocity(data, x, p);
}

}  // namespace flowscope::core
