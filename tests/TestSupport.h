#pragma once

#include <string>
#include <vector>

#include <QString>
#include <torch/types.h>

#include "core/sampling/Model.h"

namespace flowscope::test {

// Whole-file helpers for tests that make or inspect real files.
std::string readBytes(const QString& path);
void writeBytes(const QString& path, const std::string& bytes);

// Largest absolute difference between two tensors, as a double.
double maxAbsDiff(const torch::Tensor& a, const torch::Tensor& b);

// A model that wraps another and counts calls, remembers the noise levels it was asked for,
// and can be told to return NaN at a given call.
class ProbeModel final : public core::Model {
public:
    explicit ProbeModel(core::Model& inner) : m_inner(inner) {}
    std::string name() const override { return "probe:" + m_inner.name(); }
    std::vector<int64_t> sampleShape() const override { return m_inner.sampleShape(); }
    torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) override;
    void prepare(torch::Device device, torch::ScalarType dtype) override { m_inner.prepare(device, dtype); }

    int calls = 0;
    int nanAtCall = -1;
    std::vector<double> sigmas;

private:
    core::Model& m_inner;
};

}  // namespace flowscope::test
