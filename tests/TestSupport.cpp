#include "tests/TestSupport.h"

#include <limits>

#include <torch/torch.h>

namespace flowscope::test {

double maxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
    return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

torch::Tensor ProbeModel::denoise(const torch::Tensor& x, double alpha, double sigma) {
    sigmas.push_back(sigma);
    torch::Tensor out = m_inner.denoise(x, alpha, sigma);
    if (calls++ == nanAtCall) out = out.clone().fill_(std::numeric_limits<double>::quiet_NaN());
    return out;
}

}  // namespace flowscope::test
