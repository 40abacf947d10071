// Engine::describeModel: what a spec stands for, from the spec and a bundle's manifest, without
// loading a dataset or a network (so the window can ask it on the UI thread).
#include <filesystem>

#include "core/api/Engine.h"
#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/io/NpyFile.h"
#include "core/models/Bundle.h"
#include "core/models/Checkpoint.h"
#include "core/models/CheckpointModel.h"
#include "core/models/Datasets.h"
#include "core/models/GaussianMixture.h"
#include "core/models/ModelCatalog.h"
#include "core/models/ModelSpec.h"
#include "core/models/ShippedModels.h"

namespace flowscope::core {

ModelDescription Engine::describeModel(const std::string& spec, int resolution) {
    ModelDescription description;
    try {
        const ModelSpec parsed = parseModelSpec(spec);
        description.exact = parsed.kind != ModelSpec::Kind::Bundle && parsed.kind != ModelSpec::Kind::Checkpoint;
        switch (parsed.kind) {
            case ModelSpec::Kind::Mixture:
                description.classes = GaussianMixture::named(parsed.name)->classNames();
                [[fallthrough]];
            case ModelSpec::Kind::Points:
                description.sampleShape = {2};
                description.points = true;
                description.referenceData = spec;
                break;
            case ModelSpec::Kind::FashionMnist: {
                const int side = resolution > 0 ? resolution : kFashionMnistSide;
                description.sampleShape = {1, side, side};
                description.classes = fashionMnistClassNames();
                description.encodesImages = true;
                break;
            }
            case ModelSpec::Kind::Folder: {
                std::error_code error;
                if (!std::filesystem::is_directory(parsed.name, error)) {
                    throw InvalidRequestError("'" + parsed.name + "' is not a folder; give folder:PATH with a folder of images");
                }
                const int side = resolution > 0 ? resolution : kDefaultFolderResolution;
                description.sampleShape = {3, side, side};
                description.classes = folderClasses(parsed.name);
                description.encodesImages = true;
                break;
            }
            case ModelSpec::Kind::Checkpoint: {
                // The headers only: the family and which parts are there.
                const CheckpointLayout layout = findCheckpoint(parsed.name, {});
                const int side = resolution > 0 ? resolution : CheckpointModel::kDefaultSide;
                description.sampleShape = {16, side / 8, side / 8};
                description.latent = true;
                description.nativePath = "linear";
                description.parameterization = "velocity";
                description.family = layout.familyName();
                description.takesText = true;
                description.negativePrompt = layout.isSd3();
                const CheckpointLayout::Defaults defaults = layout.defaults();
                description.defaultSchedule = defaults.schedule;
                description.defaultSteps = defaults.steps;
                description.defaultCfg = defaults.cfg;
                description.encodesImages = layout.autoencoder.found();
                break;
            }
            case ModelSpec::Kind::Bundle: {
                const BundleManifest manifest = readBundleManifest(parsed.name);
                description.sampleShape = manifest.sampleShape;
                description.points = manifest.sampleShape == std::vector<int64_t>{2};
                description.latent = manifest.isLatent();
                description.nativePath = manifest.path;
                description.parameterization = manifest.prediction;
                description.classes = manifest.classes;
                description.takesConditioning = manifest.format == "torchscript" && !manifest.conditioning.empty();
                description.encodesImages =
                    manifest.sampleShape.size() == 3 && (!description.latent || !manifest.encoder.empty());
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

std::vector<ModelEntry> Engine::modelMenu() {
    std::vector<ModelEntry> menu{
        {makeSpec(SpecForm::FashionMnist, ""), "", "", false},
        {makeSpec(SpecForm::FashionMnist, "1000"), "", "", false},
        {makeSpec(SpecForm::FashionMnist, "bf16"),
         "The exact denoiser with the images kept in bfloat16: about half the memory traffic, faster "
         "steps on the CPU at small batches; slightly different results",
         "", false},
    };
    for (const std::string& name : mixtureNames()) menu.push_back({makeSpec(SpecForm::Mixture, name), "", "", false});
    for (const std::string& name : pointCloudNames()) menu.push_back({makeSpec(SpecForm::Points, name), "", "", false});
    for (const ShippedModel& shipped : shippedModels()) {
        const std::string folder = std::filesystem::path(shipped.directory).filename().string();
        menu.push_back({makeSpec(SpecForm::Shipped, folder), shipped.name, shipped.path, true});
    }
    return menu;
}

std::vector<std::string> Engine::datasetMenu() {
    return {makeSpec(SpecForm::Points, "moons"),        makeSpec(SpecForm::Mixture, "8gaussians"),
            makeSpec(SpecForm::Points, "spiral"),       makeSpec(SpecForm::Points, "checkerboard"),
            makeSpec(SpecForm::Mixture, "rings"),       makeSpec(SpecForm::Mixture, "checkerboard"),
            makeSpec(SpecForm::FashionMnist, ""),       makeSpec(SpecForm::FashionMnist, "10000")};
}

}  // namespace flowscope::core
