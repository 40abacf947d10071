#include "core/models/ShippedModels.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/io/Json.h"
#include "core/io/RegularFile.h"
#include "core/models/Bundle.h"

namespace flowscope::core {
namespace fs = std::filesystem;

std::string shippedModelsDirectory() {
    if (const char* configured = std::getenv("FLOWSCOPE_MODELS_DIR"); configured && *configured) {
        std::error_code ec;
        return fs::is_directory(configured, ec) ? std::string(configured) : std::string();
    }
    std::error_code ec;
    const fs::path executable = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return {};
    const fs::path candidate = executable.parent_path().parent_path() / "share" / "flowscope" / "models";
    return fs::is_directory(candidate, ec) ? candidate.string() : std::string();
}

std::vector<std::string> shippedModelNames() {
    std::vector<std::string> names;
    const std::string directory = shippedModelsDirectory();
    if (directory.empty()) return names;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(directory, ec)) {
        if (entry.is_directory(ec) && fs::exists(entry.path() / "flowscope.json", ec)) {
            names.push_back(entry.path().filename().string());
        }
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::string trainingDatasetOf(const std::string& bundleDirectory) {
    try {
        const JsonValue document =
            parseJson(readRegularFile((fs::path(bundleDirectory) / "flowscope.json").string(), 1 << 20, "the manifest"));
        if (!document.isObject()) return {};
        const auto training = document.object().find("training");
        if (training == document.object().end() || !training->second.isObject()) return {};
        const auto settings = training->second.object().find("settings");
        if (settings == training->second.object().end() || !settings->second.isObject()) return {};
        const auto dataset = settings->second.object().find("dataset");
        if (dataset == settings->second.object().end() || !dataset->second.isString()) return {};
        return dataset->second.string();
    } catch (const std::exception&) {
        return {};
    }
}

std::vector<ShippedModel> shippedModels() {
    std::vector<ShippedModel> models;
    const std::string directory = shippedModelsDirectory();
    if (directory.empty()) return models;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(directory, ec)) {
        if (!entry.is_directory(ec) || !fs::exists(entry.path() / "flowscope.json", ec)) continue;
        try {
            const BundleManifest manifest = readBundleManifest(entry.path().string());
            ShippedModel model;
            model.name = manifest.name;
            model.directory = entry.path().string();
            model.path = manifest.path;
            model.sampleShape.assign(manifest.sampleShape.begin(), manifest.sampleShape.end());
            models.push_back(std::move(model));
        } catch (const BundleError&) {
            // A damaged shipped model is left out of the list rather than breaking it.
        }
    }
    std::sort(models.begin(), models.end(),
              [](const ShippedModel& a, const ShippedModel& b) { return a.directory < b.directory; });
    return models;
}

std::string shippedClassifierPath() {
    const std::string directory = shippedModelsDirectory();
    if (directory.empty()) return {};
    const fs::path file = fs::path(directory) / "fashion-classifier.safetensors";
    std::error_code ec;
    return fs::is_regular_file(file, ec) ? file.string() : std::string();
}

}  // namespace flowscope::core
