#include "core/models/ModelCatalog.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include <torch/torch.h>

#include "core/api/Engine.h"
#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/models/Bundle.h"
#include "core/models/BundleModel.h"
#include "core/models/Checkpoint.h"
#include "core/models/Datasets.h"
#include "core/models/EmpiricalDenoiser.h"
#include "core/models/GaussianMixture.h"
#include "core/models/LabelledDenoiser.h"
#include "core/models/CheckpointModel.h"
#include "core/sampling/Device.h"

namespace flowscope::core {
namespace {

torch::Tensor resizeImages(const torch::Tensor& images, int resolution) {
    if (resolution <= 0 || (images.size(2) == resolution && images.size(3) == resolution)) return images;
    namespace F = torch::nn::functional;
    const bool shrinking = resolution < images.size(2);
    auto options = F::InterpolateFuncOptions().size(std::vector<int64_t>{resolution, resolution});
    options = shrinking ? options.mode(torch::kArea) : options.mode(torch::kBilinear).align_corners(false);
    return F::interpolate(images, options).clamp(-1.0, 1.0).contiguous();
}

// Size and modification time of the manifest and every file it names.
std::string bundleStamp(const std::string& directory) {
    namespace fs = std::filesystem;
    std::ostringstream stamp;
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(directory, error)) {
        std::error_code ignored;
        stamp << entry.path().filename().string() << ':' << fs::file_size(entry.path(), ignored) << ':'
              << fs::last_write_time(entry.path(), ignored).time_since_epoch().count() << ';';
    }
    return stamp.str();
}

}  // namespace

std::vector<std::string> folderClasses(const std::string& folder) {
    namespace fs = std::filesystem;
    std::vector<std::string> classes;
    std::error_code error;
    for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
        const std::string name = it->path().filename().string();
        std::error_code ignored;
        if (name.empty() || name.front() == '.' || !it->is_directory(ignored)) continue;
        // A class needs at least one regular file (the loader says which of them are images).
        bool hasFile = false;
        for (fs::directory_iterator inner(it->path(), ignored), innerEnd; !ignored && inner != innerEnd;
             inner.increment(ignored)) {
            std::error_code kind;
            if (inner->is_regular_file(kind)) {
                hasFile = true;
                break;
            }
        }
        if (hasFile) classes.push_back(name);
    }
    std::sort(classes.begin(), classes.end());
    return classes;
}

std::shared_ptr<Model> ModelCatalog::loadFolder(const std::string& spec, const std::string& folder, int size,
                                                std::vector<std::string>& notes, const std::atomic<bool>* cancel) {
    const std::vector<std::string> classes = folderClasses(folder);
    if (classes.empty()) return std::make_shared<EmpiricalDenoiser>(spec, m_folderLoader(folder, size, notes, cancel));
    // Sub-folders are classes: their images make the dataset, labelled by sub-folder. Notes of
    // each load are kept without repeats (every class would say the same of its own sub-folders).
    std::vector<torch::Tensor> parts;
    std::vector<int64_t> labels;
    std::vector<std::string> names;
    for (const std::string& name : classes) {
        std::vector<std::string> classNotes;
        torch::Tensor images;
        try {
            images = m_folderLoader(folder + "/" + name, size, classNotes, cancel);
        } catch (const CancelledError&) {
            throw;
        } catch (const std::exception& error) {
            notes.push_back("sub-folder '" + name + "' is not a class: " + error.what());
            continue;
        }
        for (auto& note : classNotes) notes.push_back("'" + name + "': " + note);
        labels.insert(labels.end(), static_cast<size_t>(images.size(0)), static_cast<int64_t>(names.size()));
        names.push_back(name);
        parts.push_back(images);
    }
    if (parts.empty()) {
        throw InvalidRequestError("no sub-folder of '" + folder + "' holds an image FlowScope reads (PNG, JPEG, WebP, BMP)");
    }
    notes.push_back("'" + folder + "': " + std::to_string(names.size()) + " classes (its sub-folders), " +
                    std::to_string(labels.size()) + " images; files directly in it are not read");
    return std::make_shared<LabelledDenoiser>(std::make_shared<EmpiricalDenoiser>(spec, torch::cat(parts)), labels, names);
}

ModelCatalog::ModelCatalog(FolderLoader folderLoader) : m_folderLoader(std::move(folderLoader)) {}

std::vector<std::string> ModelCatalog::specNames() { return modelSpecNames(); }

// Lanes may run different checkpoints, so a few stay open; their parts are gigabytes, so while
// their weights would not fit together in memory, the others' loaded weights are let go first
// (their encoded prompts stay). A changed set of parts is a new model; the files are found (and
// their headers read) again on every new load, so that a changed folder is seen.
std::shared_ptr<Model> ModelCatalog::loadCheckpoint(const std::string& spec, const std::string& path,
                                                    const TextSettings& text) {
    constexpr size_t kMaxOpen = 4;
    const std::string key = spec + "\n" + checkpointPartsKey(text);
    std::vector<std::string> others;
    for (const auto& [cachedKey, model] : m_cache) {
        if (cachedKey != key && cachedKey.rfind(specPrefix(SpecForm::Checkpoint), 0) == 0) others.push_back(cachedKey);
    }
    auto found = m_cache.find(key);
    if (found == m_cache.end()) {
        if (others.size() + 1 > kMaxOpen) {
            for (const std::string& other : others) m_cache.erase(other);
            others.clear();
        }
        found = m_cache.emplace(key, makeCheckpointModel(findCheckpoint(path, text))).first;
    }
    auto* current = static_cast<CheckpointModel*>(found->second.get());
    double together = current->weightBytes();
    for (const std::string& other : others) together += static_cast<CheckpointModel*>(m_cache[other].get())->weightBytes();
    const double memory = machineMemoryBytes();
    if (memory > 0.0 && together > 0.8 * memory) {
        for (const std::string& other : others) static_cast<CheckpointModel*>(m_cache[other].get())->releaseWeights();
    }
    return found->second;
}

std::shared_ptr<Model> ModelCatalog::load(const std::string& spec, int resolution, std::vector<std::string>& notes,
                                          bool trustModel, const std::atomic<bool>* cancel, const TextSettings& text) {
    if (resolution < 0 || resolution > kMaxResolution) {
        throw InvalidRequestError("--resolution must be between 1 and " + std::to_string(kMaxResolution) +
                                  " (or 0 for the dataset's own)");
    }
    const ModelSpec parsed = parseModelSpec(spec);
    if (parsed.kind == ModelSpec::Kind::Bundle) {
        const std::string& directory = parsed.name;
        const std::string stamp = bundleStamp(directory);
        auto cached = m_cache.find(spec);
        if (cached == m_cache.end() || m_bundleStamps[spec] != stamp) {
            const BundleManifest manifest = readBundleManifest(directory);
            m_cache[spec] = loadBundleModel(manifest, trustModel, TrustList());
            m_bundleStamps[spec] = stamp;
            cached = m_cache.find(spec);
        }
        const auto shape = cached->second->sampleShape();
        if (resolution > 0 && (shape.size() != 3 || shape[1] != resolution || shape[2] != resolution)) {
            throw InvalidRequestError("--resolution does not apply to '" + spec +
                                      "': its sample shape is fixed by its manifest; leave it at 0");
        }
        return cached->second;
    }
    if (parsed.kind == ModelSpec::Kind::Checkpoint) return loadCheckpoint(spec, parsed.name, text);
    const std::string key = spec + "@" + std::to_string(resolution);
    if (auto it = m_cache.find(key); it != m_cache.end()) return it->second;

    std::shared_ptr<Model> model;
    switch (parsed.kind) {
        case ModelSpec::Kind::Mixture:
            model = GaussianMixture::named(parsed.name);
            break;
        case ModelSpec::Kind::Points:
            model = std::make_shared<EmpiricalDenoiser>(spec, makePointCloud(parsed.name));
            break;
        case ModelSpec::Kind::FashionMnist: {
            // The full decoded set is shared by every limit and resolution.
            static const std::string kFullKey = "fashion-mnist#full";
            torch::Tensor images;
            if (auto it = m_cache.find(kFullKey); it != m_cache.end()) {
                images = static_cast<EmpiricalDenoiser&>(*it->second).data();
            } else {
                images = loadFashionMnist(true, 0);
                m_cache[kFullKey] = std::make_shared<EmpiricalDenoiser>("fashion-mnist", images);
            }
            if (parsed.limit > 0 && parsed.limit < images.size(0)) images = images.narrow(0, 0, parsed.limit);
            if (resolution > 0) {
                // Resizing makes two float32 copies (interpolation, then clamping), and bf16 a third.
                const double bytes = double(images.size(0)) * double(images.size(1)) * resolution * resolution *
                                     (parsed.bfloat16 ? 10.0 : 8.0);
                checkFitsInMemory(bytes, 0.5,
                                  "'" + spec + "' at " + std::to_string(resolution) + "x" + std::to_string(resolution) +
                                      " (" + std::to_string(images.size(0)) + " images)",
                                  "use a smaller --resolution, or fewer images (fashion-mnist:N)");
            }
            const auto all = std::make_shared<EmpiricalDenoiser>(
                spec, resizeImages(images, resolution),
                parsed.bfloat16 ? EmpiricalDenoiser::Storage::BFloat16 : EmpiricalDenoiser::Storage::Float32);
            const torch::Tensor labels = loadFashionMnistLabels(true, images.size(0)).contiguous();
            model = std::make_shared<LabelledDenoiser>(
                all, std::vector<int64_t>(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel()),
                fashionMnistClassNames());
            break;
        }
        case ModelSpec::Kind::Folder: {
            if (!m_folderLoader) {
                throw InvalidRequestError("'folder:' models need FlowScope built with OpenCV (FLOWSCOPE_WITH_OPENCV=ON)");
            }
            const int size = resolution > 0 ? resolution : kDefaultFolderResolution;
            model = loadFolder(spec, parsed.name, size, notes, cancel);
            break;
        }
        case ModelSpec::Kind::Bundle:
        case ModelSpec::Kind::Checkpoint:
            break;  // returned above
    }
    m_cache[key] = model;
    return model;
}

}  // namespace flowscope::core
