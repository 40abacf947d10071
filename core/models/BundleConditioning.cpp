#include "core/models/BundleConditioning.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/io/SafeTensors.h"
#include "core/io/SafeTensorsFile.h"
#include "core/sampling/DeviceTransfer.h"

namespace flowscope::core {
namespace {

// The manifest's file is part of the bundle (BundleError); a run's files are part of the request.
[[noreturn]] void fail(bool manifest, const std::string& message) {
    if (manifest) throw BundleError(message);
    throw InvalidRequestError(message);
}

}  // namespace

BundleConditioning::BundleConditioning(const BundleManifest& manifest, std::vector<Argument> arguments,
                                       std::string network)
    : m_manifestName(manifest.name), m_network(std::move(network)), m_arguments(std::move(arguments)) {
    if (manifest.conditioning.empty()) return;
    const std::string path = manifest.resolve(manifest.conditioning);
    std::error_code error;
    if (!std::filesystem::is_regular_file(path, error)) {
        throw BundleError("the \"conditioning\" of bundle '" + manifest.name + "' names '" + manifest.conditioning +
                          "', which is not a file in " + manifest.directory);
    }
    SafeTensorsFile file;
    try {
        file = SafeTensorsFile::read(path);
    } catch (const std::exception& failure) {
        throw BundleError("the conditioning file " + path + " cannot be used: " + failure.what());
    }
    for (const auto& entry : file.entries()) m_manifestTensors.emplace_back(entry.name, file.tensor(entry.name));
    checkNames(m_manifestTensors, path);
    // The bundle's own file must supply what forward needs: a fault of the bundle, found at load.
    try {
        checkRequired(m_manifestTensors, "the conditioning file has no tensor of that name");
    } catch (const InvalidRequestError& incomplete) {
        throw BundleError(incomplete.what());
    }
    m_conditional = m_manifestTensors;
}

BundleConditioning::Loaded BundleConditioning::load(const std::string& path, const std::string& option) const {
    namespace fs = std::filesystem;
    std::error_code error;
    const auto status = fs::status(path, error);
    if (!fs::is_regular_file(status)) {
        std::vector<std::string> names;
        for (const Argument& argument : m_arguments) names.push_back(argument.name);
        throw InvalidRequestError(option + " '" + path + "' is not a file; give a .safetensors file of the tensors the network of '" +
                                  m_manifestName + "' takes after (x, time)" +
                                  (names.empty() ? std::string(" (it takes none)") : ": " + joinNames(names)));
    }
    const auto size = fs::file_size(path, error);
    const auto time = fs::last_write_time(path, error).time_since_epoch().count();
    Loaded loaded;
    loaded.stamp = path + '\n' + std::to_string(size) + '\n' + std::to_string(time);
    if (loaded.stamp == m_runConditional.stamp) return m_runConditional;
    if (loaded.stamp == m_runUnconditional.stamp) return m_runUnconditional;
    SafeTensorsFile file;
    try {
        file = SafeTensorsFile::read(path);
    } catch (const std::exception& failure) {
        throw InvalidRequestError(option + ": " + failure.what());
    }
    for (const auto& entry : file.entries()) loaded.tensors.emplace_back(entry.name, file.tensor(entry.name).to(m_device));
    if (loaded.tensors.empty()) throw InvalidRequestError(option + " '" + path + "' holds no tensor");
    return loaded;
}

void BundleConditioning::checkNames(const Tensors& tensors, const std::string& file) const {
    const bool manifest = &tensors == &m_manifestTensors;
    for (const auto& [name, tensor] : tensors) {
        const bool known = std::any_of(m_arguments.begin(), m_arguments.end(),
                                       [&](const Argument& argument) { return argument.name == name; });
        if (!known) {
            std::vector<std::string> names;
            for (const Argument& argument : m_arguments) names.push_back(argument.name);
            fail(manifest, "the conditioning tensor '" + name + "' in " + file +
                               " has no argument of that name in the network's forward (it takes: x, time" +
                               (names.empty() ? std::string() : ", " + joinNames(names)) + ")");
        }
    }
}

void BundleConditioning::checkRequired(const Tensors& tensors, const std::string& source) const {
    for (const Argument& argument : m_arguments) {
        const bool provided = std::any_of(tensors.begin(), tensors.end(),
                                          [&](const auto& entry) { return entry.first == argument.name; });
        if (!provided && !argument.optional) {
            throw InvalidRequestError("the network's forward in '" + m_network + "' needs the argument '" + argument.name +
                                      "' after (x, time), and " + source);
        }
    }
}

void BundleConditioning::setFiles(const std::string& conditioning, const std::string& unconditioning) {
    Loaded runConditional;
    Loaded runUnconditional;
    if (!conditioning.empty()) {
        runConditional = load(conditioning, "--cond");
        checkNames(runConditional.tensors, "--cond '" + conditioning + "'");
    }
    const Tensors& conditional = conditioning.empty() ? m_manifestTensors : runConditional.tensors;
    checkRequired(conditional, conditioning.empty()
                                   ? (m_manifestTensors.empty()
                                          ? std::string("the manifest names no \"conditioning\" file to supply it: give "
                                                        "--cond FILE with it, or add one to the manifest")
                                          : "the conditioning file has no tensor of that name")
                                   : "the --cond file '" + conditioning + "' has no tensor of that name");
    if (!unconditioning.empty()) {
        if (conditional.empty()) {
            throw InvalidRequestError("--uncond gives the unconditional half of the conditioning tensors, and '" +
                                      m_manifestName + "' runs without any: give --cond FILE as well");
        }
        runUnconditional = load(unconditioning, "--uncond");
        const Tensors& unconditional = runUnconditional.tensors;
        for (const auto& [name, tensor] : conditional) {
            const auto match = std::find_if(unconditional.begin(), unconditional.end(),
                                            [&](const auto& entry) { return entry.first == name; });
            if (match == unconditional.end()) {
                throw InvalidRequestError("--uncond '" + unconditioning + "' has no tensor '" + name +
                                          "': it needs every tensor of the conditional side, with the same shapes");
            }
            if (match->second.sizes() != tensor.sizes()) {
                throw InvalidRequestError("--uncond '" + unconditioning + "': '" + name + "' has shape " +
                                          c10::str(match->second.sizes()) + ", the conditional one " +
                                          c10::str(tensor.sizes()) + "; they must match");
            }
        }
        if (unconditional.size() != conditional.size()) {
            throw InvalidRequestError("--uncond '" + unconditioning + "' holds tensors the conditional side lacks: it must "
                                      "hold the same names as " + (conditioning.empty() ? std::string("the manifest's file")
                                                                                         : "--cond '" + conditioning + "'"));
        }
    }
    // Everything checked: the files take effect.
    m_runConditional = std::move(runConditional);
    m_runUnconditional = std::move(runUnconditional);
    m_conditional = conditioning.empty() ? m_manifestTensors : m_runConditional.tensors;
    m_unconditional = m_runUnconditional.tensors;
}

void BundleConditioning::to(torch::Device device) {
    for (Tensors* tensors : {&m_manifestTensors, &m_runConditional.tensors, &m_runUnconditional.tensors,
                             &m_conditional, &m_unconditional}) {
        for (auto& entry : *tensors) entry.second = entry.second.to(device);
    }
    m_device = device;
}

BundleConditioning::Tensors BundleConditioning::batch(int64_t rows, const std::vector<bool>& nullRows,
                                                      bool zerosForNull, torch::ScalarType dtype) const {
    const auto nulls = std::count(nullRows.begin(), nullRows.end(), true);
    const bool separate = nulls > 0 && (!m_unconditional.empty() || zerosForNull);
    std::vector<int64_t> side;  // per row: 0 conditional, 1 unconditional
    if (separate && nulls < rows) {
        TORCH_CHECK(static_cast<int64_t>(nullRows.size()) == rows, "internal: one class per row");
        for (const bool null : nullRows) side.push_back(null ? 1 : 0);
    }
    Tensors out;
    for (size_t k = 0; k < m_conditional.size(); ++k) {
        const auto& [name, stored] = m_conditional[k];
        const auto as = [&](const torch::Tensor& t) { return t.is_floating_point() ? t.to(dtype) : t; };
        const torch::Tensor conditional = as(stored);
        std::vector<int64_t> shape{rows};
        shape.insert(shape.end(), conditional.sizes().begin(), conditional.sizes().end());
        if (!separate) {
            out.emplace_back(name, conditional.unsqueeze(0).expand(shape));
            continue;
        }
        const auto match = std::find_if(m_unconditional.begin(), m_unconditional.end(),
                                        [&](const auto& entry) { return entry.first == name; });
        const torch::Tensor unconditional =
            match != m_unconditional.end() ? as(match->second) : torch::zeros_like(conditional);
        if (side.empty()) {  // every row unconditional
            out.emplace_back(name, unconditional.unsqueeze(0).expand(shape));
        } else {
            out.emplace_back(name, torch::stack({conditional, unconditional})
                                       .index_select(0, deviceIndex(side, conditional.device())));
        }
    }
    return out;
}

}  // namespace flowscope::core
