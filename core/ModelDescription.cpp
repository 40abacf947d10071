// Engine::describeModel: what a spec stands for, from the spec and a bundle's manifest, without
// loading a dataset or a network (so the window can ask it on the UI thread).
#include <filesystem>

#include "core/Bundle.h"
#include "core/Engine.h"
#include "core/Errors.h"
#include "core/ModelCatalog.h"
#include "core/ModelSpec.h"
#include "core/ShippedModels.h"

namespace flowscope::core {

ModelDescription Engine::describeModel(const std::string& spec, int resolution) {
    ModelDescription description;
    try {
        const ModelSpec parsed = parseModelSpec(spec);
        description.exact = parsed.kind != ModelSpec::Kind::Bundle;
        switch (parsed.kind) {
            case ModelSpec::Kind::Mixture:
            case ModelSpec::Kind::Points:
                description.sampleShape = {2};
                description.points = true;
                description.referenceData = spec;
                break;
            case ModelSpec::Kind::FashionMnist: {
                const int side = resolution > 0 ? resolution : kFashionMnistSide;
                description.sampleShape = {1, side, side};
                break;
            }
            case ModelSpec::Kind::Folder: {
                std::error_code error;
                if (!std::filesystem::is_directory(parsed.name, error)) {
                    throw InvalidRequestError("'" + parsed.name + "' is not a folder; give folder:PATH with a folder of images");
                }
                const int side = resolution > 0 ? resolution : kDefaultFolderResolution;
                description.sampleShape = {3, side, side};
                break;
            }
            case ModelSpec::Kind::Bundle: {
                const BundleManifest manifest = readBundleManifest(parsed.name);
                description.sampleShape = manifest.sampleShape;
                description.points = manifest.sampleShape == std::vector<int64_t>{2};
                description.latent = manifest.isLatent();
                description.nativePath = manifest.path;
                description.parameterization = manifest.prediction;
                if (description.points) description.referenceData = trainingDatasetOf(parsed.name);
                break;
            }
        }
        description.ok = true;
    } catch (const std::exception& error) {
        description = {};
        description.error = error.what();
    }
    return description;
}

}  // namespace flowscope::core
