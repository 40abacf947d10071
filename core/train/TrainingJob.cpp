#include "core/api/TrainingJob.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <unistd.h>

#include <ATen/CPUGeneratorImpl.h>

#include "core/api/Names.h"
#include "core/api/Errors.h"
#include "core/engine/HostArrays.h"
#include "core/io/AtomicFile.h"
#include "core/io/Json.h"
#include "core/io/RegularFile.h"
#include "core/io/SafeTensors.h"
#include "core/models/Bundle.h"
#include "core/models/BundleModel.h"
#include "core/models/ModelSpec.h"
#include "core/models/ShippedModels.h"
#include "core/models/TrustList.h"
#include "core/train/Trainer.h"

namespace flowscope::core {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

void applyOverrides(const TrainRequest& request, TrainSettings& settings) {
    if (request.timeSampling) settings.timeSampling = *request.timeSampling;
    if (request.iterations) settings.iterations = *request.iterations;
    if (request.batch) settings.batch = *request.batch;
    if (request.learningRate) settings.learningRate = *request.learningRate;
    if (request.weightDecay) settings.weightDecay = *request.weightDecay;
    if (request.emaDecay) settings.emaDecay = *request.emaDecay;
    if (request.seed) settings.seed = *request.seed;
    if (settings.iterations < 1) throw InvalidRequestError("iterations must be at least 1");
    if (settings.batch < 1) throw InvalidRequestError("the batch must hold at least 1 sample");
    if (!(settings.learningRate > 0.0)) throw InvalidRequestError("the learning rate must be positive");
    if (!(settings.emaDecay >= 0.0 && settings.emaDecay < 1.0)) throw InvalidRequestError("the EMA decay must be in [0, 1)");
    if (!(settings.weightDecay >= 0.0 && std::isfinite(settings.weightDecay))) {
        throw InvalidRequestError("the weight decay must be 0 or more");
    }
}

// The settings of the rectified flow a reflow or distillation starts from, read from its manifest.
TrainSettings sourceSettings(const BundleManifest& manifest, const std::string& source, const std::string& mode) {
    if (manifest.format != "flowscope-net" || manifest.prediction != "velocity" || manifest.path != "linear") {
        throw InvalidRequestError(mode + " starts from a rectified flow trained by FlowScope (train with the "
                                         "objective rectified); '" + source + "' is not one");
    }
    constexpr uint64_t kMaxManifestBytes = 1 << 20;
    const JsonValue document = parseJson(
        readRegularFile((fs::path(manifest.directory) / "flowscope.json").string(), kMaxManifestBytes, "the manifest"));
    const auto training = document.object().find("training");
    if (training == document.object().end() || !training->second.isObject() ||
        !training->second.object().count("settings")) {
        throw InvalidRequestError("'" + source + "' does not say how it was trained (no \"training\" in flowscope.json)");
    }
    return TrainSettings::fromJson(toJsonText(training->second.object().at("settings")));
}

// The loss log as it stood at `iteration` (the checkpoint's): one header, then one line per
// iteration in order. A crashed run logged past its last checkpoint and a run that failed before
// its first one logged from 1; the resumed run redoes those iterations, so their lines go.
std::string lossLogUpTo(const fs::path& file, int iteration) {
    std::string log = "iteration,loss\n";
    std::error_code ec;
    if (!fs::exists(file, ec)) return log;
    std::istringstream lines(readRegularFile(file.string(), memoryReadLimit(), "the loss log"));
    std::vector<std::pair<int, std::string>> kept;
    for (std::string line; std::getline(lines, line);) {
        int logged = 0;
        const char* const end = line.data() + line.size();
        const auto parsed = std::from_chars(line.data(), end, logged);
        if (parsed.ec != std::errc() || parsed.ptr == end || *parsed.ptr != ',') continue;  // a header, a cut line
        // A run that started again from an earlier iteration replaced what was logged from there on.
        while (!kept.empty() && kept.back().first >= logged) kept.pop_back();
        if (logged >= 1 && logged <= iteration) kept.emplace_back(logged, line);
    }
    for (const auto& [logged, line] : kept) log += line + "\n";
    return log;
}

class Job {
public:
    Job(const TrainRequest& request, const TrainingJob::ProgressCallback& onProgress, const std::atomic<bool>* cancel,
        const std::atomic<bool>* pause, const Engine::FolderLoader& folderLoader)
        : m_request(request), m_onProgress(onProgress), m_cancel(cancel), m_pause(pause), m_folderLoader(folderLoader),
          m_started(Clock::now()) {}

    TrainOutcome run() {
        const auto& modes = TrainingJob::modes();
        if (std::find(modes.begin(), modes.end(), m_request.mode) == modes.end()) {
            throw UnknownNameError("training mode", m_request.mode, modes);
        }
        std::error_code ec;
        const bool existed = fs::exists(m_request.outDirectory, ec);
        const fs::path folder = outputFolder();
        // A request refused before anything was written leaves no empty folder behind.
        struct RemoveIfLeftEmpty {
            fs::path folder;
            bool created;
            ~RemoveIfLeftEmpty() {
                std::error_code ignored;
                if (created && fs::is_empty(folder, ignored)) fs::remove(folder, ignored);
            }
        } cleanup{folder, !existed};
        TrainSettings settings;
        std::optional<BundleManifest> source;
        if (m_request.mode == "train") {
            settings = trainSettings();
        } else {
            source = readBundleManifest(sourceDirectory());
            settings = couplingSettings(*source);
        }
        applyOverrides(m_request, settings);

        std::vector<int64_t> shape;
        std::vector<std::string> classes;
        const DataSampler data = datasetSampler(settings.dataset, settings.resolution, &shape,
                                                [this](const std::string& images, int resolution) {
                                                    if (!m_folderLoader) {
                                                        throw InvalidRequestError("this build reads no image folders");
                                                    }
                                                    return fromHostArray(m_folderLoader(images, resolution, m_outcome.notes, m_cancel));
                                                },
                                                &classes);
        if (m_request.mode == "train" && m_request.conditional) {
            if (classes.empty()) {
                throw InvalidRequestError("'" + settings.dataset + "' has no labels, so a conditional network has no "
                                          "classes to learn: train it on fashion-mnist, gmm:*, or a folder whose "
                                          "sub-folders are the classes");
            }
            settings.classes = classes;
            settings.labelDropout = m_request.labelDropout;
        }
        m_outcome.classes = settings.classes;
        Trainer trainer(settings, shape, data);
        if (source) {
            trainer.initializeFrom(*loadFlowNet(*source));
            useCouplings(trainer, *source, folder, settings);
        }
        train(trainer, folder);
        return m_outcome;
    }

    TrainOutcome& outcome() { return m_outcome; }

private:
    // A new network's settings, before the request's overrides.
    TrainSettings trainSettings() const {
        TrainSettings settings;
        if (m_request.dataset.empty()) throw InvalidRequestError("say what to train on: a dataset such as points:moons");
        settings.dataset = m_request.dataset;
        settings.objective = m_request.objective;
        settings.iterations = 2000;
        settings.batch = 128;
        settings.learningRate = 1e-3;
        settings.width = m_request.width;
        settings.depth = m_request.depth;
        settings.resolution = m_request.resolution;
        return settings;
    }

    // The folder of the bundle a reflow or distillation starts from.
    std::string sourceDirectory() const {
        if (m_request.source.empty()) {
            throw InvalidRequestError(m_request.mode + " needs the rectified flow to start from (a bundle FlowScope trained)");
        }
        const std::string bundle = bundleDirectoryOf(m_request.source);
        return bundle.empty() ? m_request.source : bundle;
    }

    // A reflow's or distillation's settings: its source's, for couplings, before the overrides.
    TrainSettings couplingSettings(const BundleManifest& source) {
        m_sourceName = source.name;
        TrainSettings settings = sourceSettings(source, m_request.source, m_request.mode);
        settings.couplings = m_request.mode;
        // As given (a shipped name or the folder, not this machine's absolute path): bundles get shared.
        settings.source = specHasForm(m_request.source, SpecForm::Shipped) ? m_request.source
                                                                    : fs::path(source.directory).lexically_normal().string();
        settings.iterations = 2000;
        settings.emaDecay = 0.999;
        settings.couplingCfg = m_request.couplingCfg;
        if (!std::isfinite(m_request.couplingCfg) || m_request.couplingCfg < 0.0) {
            throw InvalidRequestError("--cfg must be a finite scale of at least 0 (1: the class's own model)");
        }
        if (!settings.conditional() && m_request.couplingCfg != 1.0) {
            throw InvalidRequestError("--cfg bakes guidance into the couplings of a conditional flow; '" +
                                      m_request.source + "' is unconditional");
        }
        if (m_request.conditional) {
            throw InvalidRequestError("--conditional is for train: " + m_request.mode +
                                      " keeps its source's condition (a conditional source makes a conditional network)");
        }
        if (m_request.pairs < 1) throw InvalidRequestError("reflow and distillation need at least one pair");
        if (m_request.couplingSteps < 1) throw InvalidRequestError("the couplings need at least one ODE step");
        return settings;
    }

    fs::path outputFolder() {
        if (m_request.outDirectory.empty()) throw InvalidRequestError("say where to write the trained model (an output folder)");
        const fs::path folder(m_request.outDirectory);
        std::error_code ec;
        fs::create_directories(folder, ec);
        if (ec || !fs::is_directory(folder)) {
            throw InvalidRequestError("cannot create the output folder '" + m_request.outDirectory + "'" +
                                      (ec ? ": " + ec.message() : std::string()));
        }
        if (::access(folder.c_str(), W_OK) != 0) {
            throw InvalidRequestError("the output folder '" + m_request.outDirectory + "' is not writable");
        }
        // A bundle made elsewhere (its manifest, no checkpoint of a training here) is not replaced.
        if (fs::exists(folder / "flowscope.json", ec) && !fs::exists(folder / "checkpoint.safetensors", ec)) {
            throw InvalidRequestError("the output folder '" + m_request.outDirectory +
                                      "' holds a model bundle but no checkpoint.safetensors to resume from (it was not "
                                      "trained there, or its checkpoint was removed): write the new model to another "
                                      "folder, or empty this one first");
        }
        m_outcome.directory = folder.string();
        return folder;
    }

    // The couplings are kept beside the checkpoint, so a resumed run trains on the same ones.
    void useCouplings(Trainer& trainer, const BundleManifest& source, const fs::path& folder, const TrainSettings& settings) {
        const std::string pairsFile = (folder / "couplings.safetensors").string();
        Couplings couplings;
        if (fs::exists(pairsFile)) {
            const auto file = SafeTensorsFile::read(pairsFile);
            couplings.noise = file.tensor("noise");
            couplings.samples = file.tensor("samples");
            if (file.contains("labels")) couplings.labels = file.tensor("labels");
        } else {
            const auto started = Clock::now();
            const auto model = loadBundleModel(source, false, TrustList());
            couplings = makeCouplings(
                model, m_request.pairs, m_request.couplingSteps, settings.seed ^ 0x9e3779b97f4a7c15ull,
                [&](int64_t done) {
                    waitWhilePaused();
                    TrainProgress progress;
                    progress.phase = TrainProgress::Phase::Couplings;
                    progress.done = done;
                    progress.total = m_request.pairs;
                    progress.seconds = elapsed();
                    report(progress);
                },
                m_cancel, settings.couplingCfg);
            std::vector<std::pair<std::string, torch::Tensor>> tensors{{"noise", couplings.noise},
                                                                       {"samples", couplings.samples}};
            if (couplings.labels.defined()) tensors.emplace_back("labels", couplings.labels);
            writeSafeTensors(pairsFile, tensors,
                             {{"source", settings.source},
                              {"steps", std::to_string(m_request.couplingSteps)},
                              {"solver", "rk4"},
                              {"cfg", std::to_string(settings.couplingCfg)}});
            m_outcome.couplingSeconds = std::chrono::duration<double>(Clock::now() - started).count();
        }
        trainer.useCouplings(couplings.noise, couplings.samples, couplings.labels);
    }

    void train(Trainer& trainer, const fs::path& folder) {
        const TrainSettings& settings = trainer.settings();
        const std::string name = !m_request.name.empty() ? m_request.name
                                 : settings.couplings.empty() ? settings.dataset + " " + settings.objective
                                 : m_sourceName + (settings.couplings == "reflow" ? ", reflowed" : ", distilled");
        const std::string checkpoint = (folder / "checkpoint.safetensors").string();
        if (fs::exists(checkpoint)) trainer.loadCheckpoint(checkpoint);
        const int startIteration = trainer.iteration();
        m_outcome.dataset = settings.dataset;
        m_outcome.objective = settings.objective;
        m_outcome.couplings = settings.couplings;
        m_outcome.resumedFrom = startIteration;
        m_outcome.parameters = trainer.network().parameterCount();

        const fs::path lossFile = folder / "loss.csv";
        writeFileAtomically(lossFile.string(), lossLogUpTo(lossFile, startIteration));
        std::ofstream lossLog(lossFile, std::ios::app);
        torch::Tensor previewNoise;
        if (m_request.previewEvery > 0) {
            const auto shape = trainer.network().architecture().sampleShape;
            const int64_t count = m_request.previewCount > 0 ? m_request.previewCount : (shape.size() == 1 ? 1000 : 16);
            std::vector<int64_t> full{count};
            full.insert(full.end(), shape.begin(), shape.end());
            at::Generator generator = at::detail::createCPUGenerator(12345);
            previewNoise = torch::randn(full, generator, torch::kFloat32);
        }
        const auto trainingStarted = Clock::now();
        double smoothed = 0.0;
        int count = 0;
        // The log first, so that it always reaches the checkpoint's iteration.
        auto save = [&] {
            lossLog.flush();
            trainer.saveCheckpoint(checkpoint);
            trainer.exportBundle(folder.string(), name);
        };
        try {
            trainer.run(
                [&](const TrainStep& step) {
                    lossLog << step.iteration << "," << step.loss << "\n";
                    smoothed = count == 0 ? step.loss : 0.98 * smoothed + 0.02 * step.loss;
                    ++count;
                    m_outcome.iterations = step.iteration;
                    m_outcome.loss = smoothed;
                    if (step.iteration % m_request.checkpointEvery == 0) save();
                    TrainProgress progress;
                    progress.done = step.iteration;
                    progress.total = settings.iterations;
                    progress.resumedFrom = startIteration;
                    progress.loss = step.loss;
                    progress.smoothedLoss = smoothed;
                    progress.seconds = elapsed();
                    const double trainingSeconds = std::chrono::duration<double>(Clock::now() - trainingStarted).count();
                    const double rate = (step.iteration - startIteration) / std::max(trainingSeconds, 1e-9);
                    progress.etaSeconds = (settings.iterations - step.iteration) / std::max(rate, 1e-9);
                    if (previewNoise.defined() &&
                        (step.iteration % m_request.previewEvery == 0 || step.iteration == settings.iterations)) {
                        progress.preview = toHostArray(trainer.previewSamples(previewNoise, m_request.previewSteps));
                    }
                    report(progress);
                    waitWhilePaused();
                },
                m_cancel);
        } catch (const CancelledError&) {
            save();
            m_outcome.iterations = trainer.iteration();
            m_outcome.seconds = elapsed();
            m_outcome.failure = Failure::Cancelled;
            m_outcome.error = "stopped at iteration " + std::to_string(trainer.iteration()) +
                              "; the checkpoint and the bundle are saved: the same training resumes from there";
            return;
        }
        save();
        m_outcome.iterations = trainer.iteration();
        m_outcome.seconds = elapsed();
    }

    void report(const TrainProgress& progress) {
        if (m_onProgress) m_onProgress(progress);
    }

    void waitWhilePaused() {
        while (m_pause && m_pause->load() && !(m_cancel && m_cancel->load())) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }

    double elapsed() const { return std::chrono::duration<double>(Clock::now() - m_started).count(); }

    const TrainRequest& m_request;
    const TrainingJob::ProgressCallback& m_onProgress;
    const std::atomic<bool>* m_cancel;
    const std::atomic<bool>* m_pause;
    const Engine::FolderLoader& m_folderLoader;
    Clock::time_point m_started;
    std::string m_sourceName;
    TrainOutcome m_outcome;
};

}  // namespace

const std::vector<std::string>& TrainingJob::modes() {
    static const std::vector<std::string> names{"train", "reflow", "distill"};
    return names;
}

TrainOutcome TrainingJob::run(const TrainRequest& request, const ProgressCallback& onProgress,
                              const std::atomic<bool>* cancel, const std::atomic<bool>* pause,
                              const Engine::FolderLoader& folderLoader) {
    Job job(request, onProgress, cancel, pause, folderLoader);
    try {
        return job.run();
    } catch (const CancelledError&) {  // while making couplings: nothing to save yet
        TrainOutcome& outcome = job.outcome();
        outcome.failure = Failure::Cancelled;
        outcome.error = "stopped before training began; nothing was saved";
        return outcome;
    } catch (const std::invalid_argument& error) {  // bad names, values, sources: the request's fault
        TrainOutcome& outcome = job.outcome();
        outcome.failure = Failure::InvalidRequest;
        outcome.error = error.what();
        return outcome;
    } catch (const std::exception& error) {
        TrainOutcome& outcome = job.outcome();
        outcome.failure = Failure::Runtime;
        outcome.error = error.what();
        return outcome;
    }
}

}  // namespace flowscope::core
