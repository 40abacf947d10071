#pragma once

// What the checkpoint tests (tst_flux, tst_sd3) share: the float64 reference comparison and the
// message of a refusal.

#include <exception>
#include <functional>
#include <string>

#include <torch/torch.h>

#include "tests/TestSupport.h"

namespace flowscope::test {

// The largest difference relative to the reference's largest magnitude.
inline double relativeError(const torch::Tensor& got, const torch::Tensor& expected) {
    return maxAbsDiff(got.to(torch::kFloat64), expected) / expected.abs().max().item<double>();
}

// What `action` threw ("" when it did not throw).
inline std::string messageOf(const std::function<void()>& action) {
    try {
        action();
    } catch (const std::exception& error) {
        return error.what();
    }
    return "";
}

}  // namespace flowscope::test
