#include "tests/TestSupport.h"

#include <fstream>
#include <iterator>
#include <limits>

#include <torch/torch.h>

namespace flowscope::test {

std::string readBytes(const QString& path) {
    std::ifstream in(path.toStdString(), std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void writeBytes(const QString& path, const std::string& bytes) {
    std::ofstream out(path.toStdString(), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

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
