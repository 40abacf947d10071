#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flowscope::core {

// A model spec taken apart, without loading anything (names checked, numbers parsed).
struct ModelSpec {
    enum class Kind { Mixture, Points, FashionMnist, Folder, Bundle, Checkpoint };
    Kind kind = Kind::Mixture;
    std::string name;   // mixture or point-cloud name, folder, bundle or checkpoint path
    int64_t limit = 0;      // fashion-mnist:N, 0 = all
    bool bfloat16 = false;  // fashion-mnist[:N]:bf16, the dataset kept in bfloat16
};
// Throws UnknownNameError or InvalidRequestError with a message naming the valid forms.
ModelSpec parseModelSpec(const std::string& spec);

// The bundle folder of a `bundle:DIR` or `shipped:NAME` spec; "" for other specs. Throws as
// parseModelSpec does for a shipped name that does not exist.
std::string bundleDirectoryOf(const std::string& spec);

// Every spec form, for messages and `flowscope-cli info`.
std::vector<std::string> modelSpecNames();

}  // namespace flowscope::core
