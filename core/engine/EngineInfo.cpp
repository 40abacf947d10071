// The facade's descriptions of itself and of bundles: names, limits, versions, trust. None of
// these run a model.
#include <algorithm>
#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/version.h>

#include "core/api/Names.h"
#include "core/engine/EngineImpl.h"
#include "core/engine/HostArrays.h"
#include "core/io/Sha256.h"
#include "core/models/Bundle.h"
#include "core/models/Datasets.h"
#include "core/models/GaussianMixture.h"
#include "core/models/TrustList.h"
#include "core/sampling/Parameterization.h"
#include "core/sampling/Sampler.h"
#include "core/sampling/Schedule.h"

namespace flowscope::core {

bool BundleInfo::needsTrust() const {
    for (const auto& program : programs) {
        if (!program.trusted) return true;
    }
    return false;
}

BundleInfo Engine::inspectBundle(const std::string& directory) {
    BundleInfo info;
    try {
        const BundleManifest manifest = readBundleManifest(directory);
        info.name = manifest.name;
        info.format = manifest.format;
        info.sampleShape = manifest.sampleShape;
        info.latent = manifest.isLatent();
        const TrustList trust;
        for (const auto& file : manifest.programFiles()) {
            BundleInfo::Program program;
            program.file = file;
            program.path = manifest.resolve(file);
            std::error_code error;
            if (!std::filesystem::is_regular_file(program.path, error)) {
                throw BundleError("bundle '" + manifest.name + "' names '" + file + "', which is not a file in " + directory);
            }
            program.sha256 = sha256OfFile(program.path);
            program.trusted = trust.contains(program.sha256);
            info.programs.push_back(program);
        }
        info.ok = true;
    } catch (const std::exception& error) {
        info.error = error.what();
    }
    return info;
}

bool Engine::trustProgram(const BundleInfo::Program& program, std::string* error) {
    try {
        TrustList().add(program.sha256, program.path);
        return true;
    } catch (const std::exception& failure) {
        if (error) *error = "cannot remember the trusted model in " + TrustList::defaultPath() + ": " + failure.what();
        return false;
    }
}

HostArray Engine::referenceSamples(const std::string& spec, int count, const std::string& condition) {
    c10::InferenceMode inference;
    try {
        std::string name;
        if (specHasForm(spec, SpecForm::Points, &name)) return toHostArray(makePointCloud(name));
        if (specHasForm(spec, SpecForm::Mixture, &name)) {
            const auto mixture = GaussianMixture::named(name);
            at::Generator generator = at::detail::createCPUGenerator(7);
            torch::Tensor weights = mixture->weights();
            if (!condition.empty()) {
                // The class's components only: the others get no weight.
                const int64_t c = classIndexOf(*mixture, condition, spec);
                const auto& classes = mixture->componentClasses();
                weights = weights.clone();
                for (size_t k = 0; k < classes.size(); ++k) {
                    if (classes[k] != c) weights[static_cast<int64_t>(k)] = 0.0;
                }
            }
            const auto component = torch::multinomial(weights, count, true, generator);
            const auto means = mixture->means().index_select(0, component);
            const auto stds = mixture->stds().index_select(0, component).unsqueeze(1);
            return toHostArray(means + stds * torch::randn(means.sizes(), generator, torch::kFloat64));
        }
    } catch (const std::exception&) {
        // An unknown spec simply has no reference points; sampling reports the error itself.
    }
    return {};
}

bool Engine::solverIsAdaptive(const std::string& solver) { return makeSolver(solver, {})->isAdaptive(); }

EngineInfo Engine::info() {
    configureThreads();
    EngineInfo info;
    info.version = version();
    info.libtorchVersion = TORCH_VERSION;
    info.cudaAvailable = cudaAvailable();
    info.defaultDevice = describeDevice(resolveDevice("auto"));
    info.threads = at::get_num_threads();
    info.models = ModelCatalog::specNames();
    info.paths = pathNames();
    info.solvers = solverNames();
    info.schedules = scheduleNames();
    info.scheduleForms = scheduleForms();
    info.parameterizations = parameterizationNames();
    info.devices = deviceNames();
    info.fashionMnistDirectory = fashionMnistDirectory();
    std::error_code ec;
    info.fashionMnistInstalled =
        std::filesystem::exists(std::filesystem::path(info.fashionMnistDirectory) / "train-images-idx3-ubyte.gz", ec);
    return info;
}

}  // namespace flowscope::core
