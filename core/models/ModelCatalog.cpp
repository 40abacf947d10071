#include "core/models/ModelCatalog.h"

#include <filesystem>
#include <sstream>

#include <torch/torch.h>

#include "core/api/Engine.h"
#include "core/api/Errors.h"
#include "core/models/Bundle.h"
#include "core/models/BundleModel.h"
#include "core/models/Datasets.h"
#include "core/models/EmpiricalDenoiser.h"
#include "core/models/GaussianMixture.h"
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

ModelCatalog::ModelCatalog(FolderLoader folderLoader) : m_folderLoader(std::move(folderLoader)) {}

std::vector<std::string> ModelCatalog::specNames() { return modelSpecNames(); }

std::shared_ptr<Model> ModelCatalog::load(const std::string& spec, int resolution, std::vector<std::string>& notes,
                                          bool trustModel, const std::atomic<bool>* cancel) {
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
            model = std::make_shared<EmpiricalDenoiser>(spec, resizeImages(images, resolution),
                                                        parsed.bfloat16 ? EmpiricalDenoiser::Storage::BFloat16
                                                                        : EmpiricalDenoiser::Storage::Float32);
            break;
        }
        case ModelSpec::Kind::Folder: {
            if (!m_folderLoader) {
                throw InvalidRequestError("'folder:' models need FlowScope built with OpenCV (FLOWSCOPE_WITH_OPENCV=ON)");
            }
            const int size = resolution > 0 ? resolution : kDefaultFolderResolution;
            model = std::make_shared<EmpiricalDenoiser>(spec, m_folderLoader(parsed.name, size, notes, cancel));
            break;
        }
        case ModelSpec::Kind::Bundle:
            break;  // returned above
    }
    m_cache[key] = model;
    return model;
}

}  // namespace flowscope::core
