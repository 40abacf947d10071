#include "core/models/ModelSpec.h"

#include <algorithm>
#include <charconv>
#include <filesystem>

#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/models/ShippedModels.h"

namespace flowscope::core {

std::vector<std::string> modelSpecNames() {
    std::vector<std::string> names;
    for (const auto& n : mixtureNames()) names.push_back(makeSpec(SpecForm::Mixture, n));
    for (const char* form : {"fashion-mnist", "fashion-mnist:N", "fashion-mnist:bf16", "fashion-mnist:N:bf16",
                             "folder:PATH"}) {
        names.emplace_back(form);
    }
    for (const auto& n : pointCloudNames()) names.push_back(makeSpec(SpecForm::Points, n));
    names.push_back(makeSpec(SpecForm::Bundle, "DIR"));
    names.push_back(makeSpec(SpecForm::Shipped, "NAME"));
    return names;
}

ModelSpec parseModelSpec(const std::string& spec) {
    ModelSpec parsed;
    auto known = [&](const std::string& name, const std::vector<std::string>& names) {
        if (std::find(names.begin(), names.end(), name) == names.end()) {
            throw UnknownNameError("model", spec, modelSpecNames());
        }
        return name;
    };
    std::string rest;
    if (specHasForm(spec, SpecForm::Mixture, &rest)) {
        parsed.kind = ModelSpec::Kind::Mixture;
        parsed.name = known(rest, mixtureNames());
    } else if (specHasForm(spec, SpecForm::Points, &rest)) {
        parsed.kind = ModelSpec::Kind::Points;
        parsed.name = known(rest, pointCloudNames());
    } else if (specHasForm(spec, SpecForm::FashionMnist)) {
        parsed.kind = ModelSpec::Kind::FashionMnist;
        // What follows the name: nothing, ":N", ":bf16" or ":N:bf16".
        rest = spec.substr(specPrefix(SpecForm::FashionMnist).size());
        if (rest.ends_with(":bf16")) {
            parsed.bfloat16 = true;
            rest.resize(rest.size() - 5);
        }
        if (!rest.empty()) {
            const std::string count = rest.substr(1);
            const auto [ptr, ec] = std::from_chars(count.data(), count.data() + count.size(), parsed.limit);
            if (count.empty() || ec != std::errc() || ptr != count.data() + count.size() || parsed.limit < 1) {
                throw InvalidRequestError("'" + spec + "': after 'fashion-mnist:' give a number of images and/or "
                                          "bf16, e.g. fashion-mnist:1000 or fashion-mnist:1000:bf16");
            }
            if (parsed.limit > 60000) {
                throw InvalidRequestError("'" + spec + "': Fashion-MNIST has 60000 training images; ask for 1 to 60000");
            }
        }
    } else if (specHasForm(spec, SpecForm::Folder, &rest)) {
        parsed.kind = ModelSpec::Kind::Folder;
        parsed.name = rest;
        if (parsed.name.empty()) throw InvalidRequestError("give a folder after 'folder:', e.g. folder:~/Pictures/faces");
    } else if (specHasForm(spec, SpecForm::Bundle, &rest)) {
        parsed.kind = ModelSpec::Kind::Bundle;
        parsed.name = rest;
        if (parsed.name.empty()) throw InvalidRequestError("give a folder after 'bundle:', e.g. bundle:~/models/my-flow");
    } else if (specHasForm(spec, SpecForm::Checkpoint, &rest)) {
        parsed.kind = ModelSpec::Kind::Checkpoint;
        parsed.name = rest;
        if (parsed.name.empty()) {
            throw InvalidRequestError("give a model folder or .safetensors file after 'checkpoint:', e.g. "
                                      "checkpoint:~/models/FLUX.1-schnell");
        }
    } else if (specHasForm(spec, SpecForm::Shipped, &rest)) {
        // A network FlowScope ships: the bundle folder of that name among the shipped models.
        const std::string name = rest;
        if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
            throw InvalidRequestError("give the name of a shipped model after 'shipped:', e.g. shipped:moons-reflow");
        }
        const std::string directory = shippedModelsDirectory();
        if (directory.empty()) {
            throw InvalidRequestError("'" + spec + "': no shipped models are installed (they belong in "
                                      "share/flowscope/models beside the program, or in $FLOWSCOPE_MODELS_DIR)");
        }
        const std::vector<std::string> names = shippedModelNames();
        if (std::find(names.begin(), names.end(), name) == names.end()) {
            throw UnknownNameError("shipped model", name, names);
        }
        parsed.kind = ModelSpec::Kind::Bundle;
        parsed.name = (std::filesystem::path(directory) / name).string();
    } else {
        throw UnknownNameError("model", spec, modelSpecNames());
    }
    return parsed;
}

std::string bundleDirectoryOf(const std::string& spec) {
    if (!specHasForm(spec, SpecForm::Bundle) && !specHasForm(spec, SpecForm::Shipped)) return {};
    return parseModelSpec(spec).name;
}

}  // namespace flowscope::core
