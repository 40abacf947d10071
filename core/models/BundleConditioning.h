#pragma once

// The conditioning tensors a TorchScript bundle's network takes as named arguments after
// (x, time[, class]): those of the manifest's "conditioning" file or of a run's --cond file, and
// for the unconditional half of guidance those of --uncond (or zeros).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "core/models/Bundle.h"

namespace flowscope::core {

class BundleConditioning {
public:
    // One argument of the network's forward after (x, time[, class]).
    struct Argument {
        std::string name;
        bool optional = false;  // it has a default value
    };
    using Tensors = std::vector<std::pair<std::string, torch::Tensor>>;

    BundleConditioning() = default;
    // Loads the manifest's file, if it names one, and checks it against `arguments`. `network`
    // names the network's file in messages. Throws BundleError.
    BundleConditioning(const BundleManifest& manifest, std::vector<Argument> arguments, std::string network);

    // The files of the runs that follow: `conditioning` in place of the manifest's, and
    // `unconditioning` for the null rows; empty: the manifest's and none. A file is read again
    // only when its path, size or time changes. Throws InvalidRequestError, naming the file and
    // what to do; the tensors in use then stay as they were.
    void setFiles(const std::string& conditioning, const std::string& unconditioning);

    bool empty() const { return m_conditional.empty(); }
    bool hasUnconditional() const { return !m_unconditional.empty(); }
    void to(torch::Device device);

    // The tensors for a batch of `rows` rows in `dtype`, each broadcast to [rows, ...]: row b gets
    // the unconditional tensors where nullRows[b] (nullRows empty: no row), which are --uncond's,
    // or zeros where `zerosForNull` and there is no --uncond, or else the conditional ones.
    Tensors batch(int64_t rows, const std::vector<bool>& nullRows, bool zerosForNull, torch::ScalarType dtype) const;

private:
    struct Loaded {
        std::string stamp;  // path, size and time of the file the tensors came from
        Tensors tensors;
    };
    Loaded load(const std::string& path, const std::string& option) const;
    void checkNames(const Tensors& tensors, const std::string& file) const;
    void checkRequired(const Tensors& tensors, const std::string& source) const;

    std::string m_manifestName;
    std::string m_network;
    std::vector<Argument> m_arguments;
    Tensors m_manifestTensors;
    Loaded m_runConditional;    // --cond's, when given
    Loaded m_runUnconditional;  // --uncond's, when given
    Tensors m_conditional;      // in use
    Tensors m_unconditional;    // in use (empty: none)
    torch::Device m_device = torch::kCPU;
};

}  // namespace flowscope::core
