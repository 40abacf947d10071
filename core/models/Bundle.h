#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/models/Architecture.h"

namespace flowscope::core {

// A bundle that cannot be used as it is; the message names the file or field and what to do.
class BundleError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// A TorchScript file the user has not said they trust (see TrustList).
class UntrustedModelError : public BundleError {
public:
    using BundleError::BundleError;
};

// A cheap RGB view of a latent (as ComfyUI and InvokeAI preview): rgb = sum_c factors[c] latent_c + bias.
struct LatentRgb {
    std::vector<std::array<double, 3>> factors;  // one row per latent channel
    std::array<double, 3> bias{};
};

// DIR/flowscope.json: a network brought by the user, with what it predicts, the path and time
// convention it was trained with, and the shape of one sample (README, "Bring your own model").
struct BundleManifest {
    std::string directory;
    std::string name;
    std::string format;  // torchscript, or flowscope-net (weights of a network FlowScope trained)
    std::string file;    // relative to the bundle folder
    std::string prediction;
    std::string path;
    std::string timeInput;
    std::vector<int64_t> sampleShape;
    double valueLow = -1.0;
    double valueHigh = 1.0;
    std::string sha256;        // of `file`, when declared
    std::string conditioning;  // a .safetensors file of named tensors passed after time
    std::string decoder;       // a TorchScript module mapping a latent sample to an image in [-1, 1]
    std::string encoder;       // a TorchScript module mapping images in [-1, 1] to latents (their mean)
    std::optional<LatentRgb> latentRgb;
    std::optional<Architecture> architecture;  // flowscope-net only
    // A conditional network's class names, in index order: its forward takes each row's class
    // after time ([B] int64, -1 the null class). Empty: unconditional.
    std::vector<std::string> classes;

    std::string resolve(const std::string& relative) const;  // a file of the bundle, as a path
    bool isLatent() const { return !decoder.empty() || latentRgb.has_value(); }
    // Files holding code that runs when loaded (the model, decoder and encoder), relative names.
    std::vector<std::string> programFiles() const;
};

const std::vector<std::string>& bundleFormats();
const std::vector<std::string>& bundleFields();  // the required ones

// Reads and checks DIR/flowscope.json (not the files it names). Throws BundleError.
BundleManifest readBundleManifest(const std::string& directory);
BundleManifest parseBundleManifest(std::string_view json, const std::string& directory);

}  // namespace flowscope::core
