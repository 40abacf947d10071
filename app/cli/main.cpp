// flowscope-cli: the engine without a window. Subcommands `info`, `sample`, `invert`, `sweep`, ...; the
// names of commands, options and output columns are a contract other tooling relies on.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <utility>

#include <unistd.h>

#include <opencv2/imgproc.hpp>

#include "app/cli/Arguments.h"
#include "app/cli/Checkpoints.h"
#include "app/cli/Evaluate.h"
#include "app/cli/Starts.h"
#include "core/api/Checkpoints.h"
#include "core/api/Engine.h"
#include "core/api/Errors.h"
#include "core/api/Files.h"
#include "core/api/Names.h"
#include "core/api/SettingsCodec.h"
#include "core/api/TrainingJob.h"
#include "core/io/AtomicFile.h"
#include "core/io/JsonWriter.h"
#include "core/media/ImageWriter.h"

namespace fs = std::filesystem;
using namespace flowscope;

namespace {

using app::kExitCancelled;
using app::kExitFailure;
using app::kExitOk;
using app::kExitUsage;
using app::checkWritable;
using app::exitCodeFor;

std::atomic<bool> g_cancel{false};

// The first Ctrl+C (or SIGTERM) asks the running job to stop where it can, which loaders, steps
// and writes check; a second one ends the process at once. Files are written through temporary
// files renamed into place, so neither leaves a partial file.
extern "C" void onInterrupt(int) {
    if (g_cancel.exchange(true)) ::_exit(kExitCancelled);
}

const char* kUsage = R"(FlowScope: watch flow-matching and diffusion models turn noise into images.

usage:
  flowscope-cli info [--json]
  flowscope-cli sample --model SPEC [--path P] [--solver S] [--schedule G] [--steps N] [--seed K]
                       [--batch B] [--resolution R] [--device D] [--dtype T] [--t-end T]
                       [--rtol X] [--atol X] [--out grid.png] [--filmstrip strip.png]
                       [--save-final final.npy] [--save-trajectory traj.npy|.safetensors]
                       [--save-decoded images.npy] [--decode-every K] [--trust-model]
                       [--no-cuda-graph] [--json [--per-sample]] [guidance] [start]
  start:               --init-image F.png | --init F.npy  image to image: the data noised to
                       t = 1 - --strength S (0.75; 0 keeps it, 1 is plain sampling) with the
                       seed's noise, then solved to the end; --t-start T instead of --strength;
                       --init-noise noise.npy replaces the seed's noise (invert's --save-noise);
                       --start-grid cut (the rest of the schedule's grid, default) | new
                       (--steps steps from the start)
  flowscope-cli invert --model SPEC --image F.png|--init F.npy [--path P] [--solver S] [--schedule G]
                       [--steps N] [--rtol X --atol X] [guidance] [--save-noise noise.npy]
                       [--roundtrip out.png] [--json]  the ODE backwards from the data to its
                       noise, then forwards again: round-trip RMSE, the noise's statistics, NFE
  flowscope-cli sweep  --model SPEC --paths P1,P2 --solvers S1,S2 --steps 1,2,4,8 [--schedule G]
                       [--seed K] [--batch B] [--resolution R] [--device D] [--t-end T]
                       [--reference-tol X] [--trust-model] [--no-cuda-graph] --csv out.csv [--json]
                       [guidance] [--cfgs 1,2,4: one sweep per scale, a cfg column last in the CSV]
                       [--roundtrip --image F.png|--init F.npy: rmse of each cell's round trip]
  guidance:            --class NAME|INDEX  a conditional model's class (info and the model list
                       name them); --guidance none|cfg|apg|cfg-zero (cfg when --cfg is given)
                       --cfg W (1: the class's own model, 0: unconditional) --cfg-interval LO,HI
                       (noise levels where it applies, 0 noise to 1 data) --cfg-rescale PHI
                       --apg-eta E --apg-momentum B --apg-norm R --cfg-zero-steps K
                       --cond F.safetensors (a bundle's conditioning tensors, instead of its
                       manifest's) --uncond F.safetensors (the unconditional branch's; zeros)
  text:                checkpoint:PATH models (FLUX.1, SD3): --prompt TEXT --negative-prompt TEXT
                       (SD3) --width W --height H (multiples of 16, 1024; --resolution R for R x R)
                       --flux-guidance G ([dev], 3.5) --clip-l FILE --clip-g FILE --t5 FILE --ae FILE
                       --tokenizers DIR (the parts beside a transformer file); without --schedule,
                       --steps and guidance options the family's own (SD3: --cfg 5, 3.5 Large 4.5)
  flowscope-cli info --model checkpoint:PATH [--device auto|cpu|cuda] [--json]
                       family, parts found, parameters, dtypes, and the memory it needs on the device
  flowscope-cli tokenize --tokenizers DIR --prompt TEXT [--t5-length N] [--json]
  flowscope-cli encode-prompt --model checkpoint:PATH --prompt TEXT --out cond.safetensors [--json]
  flowscope-cli forward --model checkpoint:PATH --x x.npy --sigma S --cond cond.safetensors
                       [--flux-guidance G] --out out.npy   the transformer's raw output (eps - x0)
  flowscope-cli decode --model checkpoint:PATH --latents z.npy --save-decoded img.npy [--out img.png]
  flowscope-cli trust DIR       add a bundle's TorchScript files to the trusted list
  flowscope-cli train  --dataset D --objective rectified|diffusion|v --iters N --out DIR
                       [--batch B] [--lr X] [--weight-decay X] [--ema X] [--seed K] [--width W]
                       [--depth L] [--time-sampling uniform|logit-normal] [--resolution R]
                       [--checkpoint-every N] [--name NAME] [--json] [--conditional
                       [--label-dropout P]] trains a network and writes it as a bundle
                       (bundle:DIR); run the same command again to resume an interrupted run;
                       --conditional learns the dataset's classes and a null class (labels
                       dropped with chance P, 0.1) for classifier-free guidance
  flowscope-cli reflow  --model DIR --pairs N --out DIR2 [--steps K] [--iters N] [--cfg W] [training options]
  flowscope-cli distill --model DIR --out DIR3 [--pairs N] [--steps K] [--iters N] [--cfg W] [training options]
                       couplings (noise, sample) from a rectified flow's ODE (K RK4 steps), then a
                       2-rectified flow (reflow) or a one-step map (distill) trained on them;
                       training options: --batch --lr --weight-decay --ema --seed --time-sampling
                       --checkpoint-every --name --json. Both default to --pairs 10000 --steps 32:
                       making the pairs costs 4 K network evaluations per pair (1.28 M), more than
                       a short training, and is done once (kept in DIR2/couplings.safetensors);
                       a conditional source keeps its classes (pair k of class k mod their count),
                       guided with --cfg W (default 1), which the new network bakes in
  flowscope-cli classifier --out FILE [--epochs N] [--batch B] [--lr X] [--seed K] [--json]
                       trains the Fashion-MNIST feature classifier evaluate measures with
  flowscope-cli evaluate --model SPEC [--steps 1,2,4,8] [--solver S] [--adaptive] [--tolerance X]
                       [--samples N] [--batch B] [--path P] [--schedule G] [--seed K]
                       [--classifier FILE] [--trust-model] [--csv out.csv] [--json]
                       [--class C --cfg 1,1.5,2,3,5,8 and the other guidance options]
                       Frechet distance of N samples to the test images in the classifier's
                       features (stands in for FID), straightness S and path length ratio, the
                       samples' diversity and, with --class, how often the classifier names it
  flowscope-cli --version | --help

models:    gmm:8gaussians gmm:rings gmm:checkerboard fashion-mnist[:N] folder:PATH
           points:moons points:spiral points:checkerboard bundle:DIR shipped:NAME checkpoint:PATH
paths:     linear vp cosine ve
solvers:   euler heun midpoint rk4 dpm++2m ddim dopri5 ddpm euler-a
schedules: uniform karras shift:S flux[:L] logsnr
defaults:  --path linear --solver euler --schedule uniform --steps 8 --seed 0 --batch 1 --t-end 1

A bundle's TorchScript file is a program: loading it runs its code. FlowScope loads one only with
--trust-model or when its SHA-256 is in the trusted list (see `flowscope-cli trust`).
)";

// Columns: up to `count` frames spread evenly over the run, always including the first and last.
std::vector<int64_t> chooseFrames(int64_t frames, int64_t count) {
    std::vector<int64_t> chosen;
    if (frames <= count) {
        for (int64_t i = 0; i < frames; ++i) chosen.push_back(i);
        return chosen;
    }
    for (int64_t i = 0; i < count; ++i) chosen.push_back(i * (frames - 1) / (count - 1));
    return chosen;
}

core::HostArray sliceFrame(const core::HostArray& stacked, int64_t frame) {
    core::HostArray out;
    out.shape.assign(stacked.shape.begin() + 1, stacked.shape.end());
    const int64_t size = out.count();
    out.values.assign(stacked.values.begin() + frame * size, stacked.values.begin() + (frame + 1) * size);
    return out;
}

// The filmstrip: the first kFilmstripSamples samples (two rows each: x_t above x̂0), in up to
// kFilmstripColumns columns from the start state to the end, spread evenly over the run.
constexpr int64_t kFilmstripColumns = 10;
constexpr int64_t kFilmstripSamples = 8;

cv::Mat filmstrip(const core::SampleResult& result) {
    const int64_t frames = result.trajectory.shape.at(0);
    const auto columns = chooseFrames(frames, kFilmstripColumns);
    std::vector<std::vector<cv::Mat>> rows;
    if (result.sampleShape.size() == 3) {
        const bool previews = !result.trajectoryImages.shape.empty();
        const core::HostArray& states = previews ? result.trajectoryImages : result.trajectory;
        const core::HostArray& predictions = previews ? result.predictionImages : result.predictions;
        const int64_t samples = std::min<int64_t>(states.shape.at(1), kFilmstripSamples);
        const int scale = states.shape.at(3) < 64 ? 3 : 1;
        for (int64_t b = 0; b < samples; ++b) {
            std::vector<cv::Mat> stateCells, predictionCells;
            for (int64_t frame : columns) {
                cv::Mat state = media::sampleToImage(sliceFrame(states, frame), b);
                cv::Mat prediction = media::sampleToImage(sliceFrame(predictions, frame), b);
                cv::resize(state, state, cv::Size(), scale, scale, cv::INTER_NEAREST);
                cv::resize(prediction, prediction, cv::Size(), scale, scale, cv::INTER_NEAREST);
                stateCells.push_back(state);
                predictionCells.push_back(prediction);
            }
            rows.push_back(stateCells);
            rows.push_back(predictionCells);
        }
    } else {
        std::vector<cv::Mat> cells;
        for (int64_t frame : columns) {
            cells.push_back(media::renderScatter(sliceFrame(result.trajectory, frame), nullptr, nullptr, 200));
        }
        rows.push_back(cells);
    }
    return media::tileImages(rows, 4);
}

void printProgress(const core::StepFrame& frame) {
    if (frame.final) {
        std::fprintf(stderr, "\r%*s\r", 60, "");
        return;
    }
    if (frame.plannedSteps > 0) {
        std::fprintf(stderr, "\rstep %d/%d  t=%.4f  NFE %d", frame.index + 1, frame.plannedSteps, frame.t, frame.nfe);
    } else {
        std::fprintf(stderr, "\rstep %d  t=%.4f  NFE %d", frame.index + 1, frame.t, frame.nfe);
    }
    std::fflush(stderr);
}

// The NAMEs of the shipped:NAME models.
std::vector<std::string> shippedModelNames() {
    std::vector<std::string> names;
    for (const core::ModelEntry& entry : core::Engine::modelMenu()) {
        std::string name;
        if (entry.shipped && core::specHasForm(entry.spec, core::SpecForm::Shipped, &name)) names.push_back(name);
    }
    return names;
}

int runInfo(const std::vector<std::string>& args) {
    std::set<std::string> valued{"model", "device"};
    valued.insert(app::textOptionNames().begin(), app::textOptionNames().end());
    const app::Arguments options(args, valued, {"json"});
    if (options.has("model")) return app::runCheckpointInfo(options);
    if (options.has("device")) throw app::UsageError("info takes --device only with --model (the memory estimate's device)");
    const core::EngineInfo info = core::Engine::info();
    if (options.has("json")) {
        core::JsonWriter json;
        json.beginObject();
        json.field("version", info.version);
        json.field("libtorch", info.libtorchVersion);
        json.field("cuda", info.cudaAvailable);
        json.field("device", info.defaultDevice);
        json.field("threads", info.threads);
        json.field("models", info.models);
        json.field("paths", info.paths);
        json.field("solvers", info.solvers);
        json.field("schedules", info.schedules);
        json.field("schedule_forms", info.scheduleForms);
        json.field("parameterizations", info.parameterizations);
        json.field("devices", info.devices);
        json.field("fashion_mnist_dir", info.fashionMnistDirectory);
        json.field("fashion_mnist_installed", info.fashionMnistInstalled);
        json.field("shipped_models", shippedModelNames());
        json.endObject();
        std::cout << json.str() << "\n";
        return kExitOk;
    }
    std::cout << "FlowScope " << info.version << " (LibTorch " << info.libtorchVersion << ")\n"
              << "device:     " << info.defaultDevice << (info.cudaAvailable ? "" : " (no CUDA in this build or machine)")
              << "\n"
              << "models:     " << core::joinNames(info.models, " ") << "\n"
              << "paths:      " << core::joinNames(info.paths, " ") << "\n"
              << "solvers:    " << core::joinNames(info.solvers, " ") << "\n"
              << "schedules:  " << core::joinNames(info.scheduleForms, " ") << "\n"
              << "shipped:    " << core::joinNames(shippedModelNames(), " ") << "\n"
              << "fashion-mnist: " << info.fashionMnistDirectory
              << (info.fashionMnistInstalled ? "" : " (missing: install dataset-fashion-mnist)") << "\n";
    return kExitOk;
}

// A command's valued options with the guidance and text (prompt, size, parts) options added.
std::set<std::string> withGuidance(std::set<std::string> names) {
    names.insert(app::guidanceOptionNames().begin(), app::guidanceOptionNames().end());
    names.insert(app::textOptionNames().begin(), app::textOptionNames().end());
    names.insert(app::conditioningOptionNames().begin(), app::conditioningOptionNames().end());
    return names;
}

int runSample(const std::vector<std::string>& args) {
    const app::Arguments options(
        args,
        withGuidance({"model", "path", "solver", "schedule", "steps", "seed", "batch", "resolution", "device", "dtype",
                      "t-end", "rtol", "atol", "out", "filmstrip", "save-final", "save-trajectory", "save-decoded",
                      "decode-every", "init-image", "init", "strength", "t-start", "init-noise", "start-grid"}),
        {"json", "per-sample", "trust-model", "no-cuda-graph"});
    if (!options.has("model")) throw app::UsageError("sample needs --model SPEC (for example --model fashion-mnist)");
    core::SampleRequest request;
    request.model = options.text("model", request.model);
    request.path = options.text("path", request.path);
    request.solver = options.text("solver", request.solver);
    request.schedule = options.text("schedule", request.schedule);
    request.steps = static_cast<int>(options.integer("steps", request.steps, 1, core::kMaxSteps));
    request.seed = options.seed(0);
    request.batch = static_cast<int>(options.integer("batch", request.batch, 1, core::kMaxBatch));
    request.resolution = static_cast<int>(options.integer("resolution", 0, 0, core::kMaxResolution));
    request.device = options.text("device", request.device);
    request.dtype = options.text("dtype", request.dtype);
    request.tEnd = options.number("t-end", 1.0);
    request.rtol = options.number("rtol", request.rtol);
    request.atol = options.number("atol", request.atol);
    if ((options.has("rtol") || options.has("atol")) && !core::Engine::solverIsAdaptive(request.solver)) {
        throw app::UsageError("--rtol and --atol set an adaptive solver's tolerance; '" + request.solver +
                              "' takes the fixed steps --steps gives: leave them out");
    }
    request.trustModel = options.has("trust-model");
    request.cudaGraphs = !options.has("no-cuda-graph");
    request.decodeEvery = static_cast<int>(options.integer("decode-every", 0, 0, core::kMaxSteps));
    request.condition = options.text("class", "");
    request.guidance = app::readGuidance(options);
    request.text = app::readText(options);
    app::readConditioningFiles(options, &request.text);
    app::applyCheckpointDefaults(options, request.model, &request.schedule, &request.steps, &request.guidance);
    app::readStart(options, request, &g_cancel);
    const auto out = options.optionalText("out");
    const auto strip = options.optionalText("filmstrip");
    const auto saveFinal = options.optionalText("save-final");
    const auto saveTrajectory = options.optionalText("save-trajectory");
    const auto saveDecoded = options.optionalText("save-decoded");
    checkWritable(out, "out");
    checkWritable(saveDecoded, "save-decoded");
    // A spec the engine cannot describe is refused by the run itself, with its reasons.
    const core::ModelDescription described = core::Engine::describeModel(request.model, request.resolution);
    const bool directImages = described.ok && !described.latent;
    if (request.decodeEvery > 0 && directImages) {
        throw app::UsageError("--decode-every decodes a latent model's steps; '" + request.model +
                              "' samples images directly, and every step is already an image");
    }
    if (saveDecoded && directImages) {
        throw app::UsageError("--save-decoded needs a latent model (a bundle with a decoder or latent_rgb); '" +
                              request.model + "' samples images directly: use --save-final");
    }
    checkWritable(strip, "filmstrip");
    checkWritable(saveFinal, "save-final");
    checkWritable(saveTrajectory, "save-trajectory");
    app::checkExtension(out, "out", {".png"});
    app::checkExtension(strip, "filmstrip", {".png"});
    app::checkExtension(saveFinal, "save-final", {".npy", ".safetensors"});
    app::checkExtension(saveTrajectory, "save-trajectory", {".npy", ".safetensors"});
    app::checkExtension(saveDecoded, "save-decoded", {".npy", ".safetensors"});
    app::checkDistinct({{"out", out},
                        {"filmstrip", strip},
                        {"save-final", saveFinal},
                        {"save-trajectory", saveTrajectory},
                        {"save-decoded", saveDecoded}});
    request.recordTrajectory = strip || saveTrajectory || out;

    core::Engine engine(app::imageFolderLoader());
    const bool showProgress = ::isatty(STDERR_FILENO) && !options.has("json");
    const core::SampleResult result =
        engine.sample(request, showProgress ? core::Engine::FrameCallback(printProgress) : core::Engine::FrameCallback{},
                      &g_cancel);
    if (!result.ok()) {
        std::cerr << "flowscope-cli: " << result.error << "\n";
        return exitCodeFor(result.failure);
    }

    std::vector<std::string> written;
    const bool image = result.sampleShape.size() == 3;
    // Latent models (and other value ranges) are shown through their decoder or preview.
    const core::HostArray& finalImage = result.finalImage.shape.empty() ? result.final : result.finalImage;
    if (saveDecoded && result.finalImage.shape.empty()) {
        throw app::UsageError("--save-decoded needs a latent model (a bundle with a decoder or latent_rgb); '" +
                              request.model + "' samples images directly: use --save-final");
    }
    // Every output is staged first and all are renamed into place together: a failed write or a
    // Ctrl+C between them leaves none of the new files (and no partial one).
    core::FileTransaction outputs;
    auto stopIfCancelled = [] {
        if (g_cancel.load()) throw core::CancelledError();
    };
    if (out) {
        const cv::Mat picture =
            media::runPicture(request.model, image ? finalImage : core::HostArray{}, result.final, result.trajectory);
        outputs.add(*out, media::encodePng(picture, core::settingsChunks(request, result.nfe, result.sampleShape)));
        written.push_back(*out);
    }
    std::vector<std::string> notes = result.notes;
    if (strip) {
        if (image && request.batch > kFilmstripSamples) {
            notes.push_back("the filmstrip shows the first " + std::to_string(kFilmstripSamples) + " of the " +
                            std::to_string(request.batch) + " samples");
        }
        stopIfCancelled();
        outputs.add(*strip, media::encodePng(filmstrip(result), core::settingsChunks(request, result.nfe, result.sampleShape)));
        written.push_back(*strip);
    }
    // .npy by default; .safetensors with the run's settings and times in its metadata.
    auto saveArray = [&](const std::string& file, const std::string& name, const core::HostArray& array) {
        stopIfCancelled();
        if (app::lowerExtension(file) == ".safetensors") {
            core::JsonWriter times;
            times.beginArray();
            for (double t : result.times) times.value(t);
            times.endArray();
            outputs.add(file, core::encodeSafeTensorsArray(name, array,
                                                           {{std::string(core::kSettingsChunk), core::settingsToJson(request)},
                                                            {"times", times.str()},
                                                            {"format", "flowscope"}}));
        } else {
            outputs.add(file, core::encodeNpyArray(array));
        }
        written.push_back(file);
    };
    if (saveFinal) saveArray(*saveFinal, "final", result.final);
    if (saveTrajectory) saveArray(*saveTrajectory, "trajectory", result.trajectory);
    if (saveDecoded) saveArray(*saveDecoded, "decoded", result.finalImage);
    stopIfCancelled();
    outputs.commit();

    if (options.has("json")) {
        core::JsonWriter json;
        json.beginObject();
        json.members(core::settingsToJson(request));
        json.field("steps_run", result.steps);
        json.field("sample_shape", result.sampleShape);
        if (!result.finalImage.shape.empty()) json.field("image_shape", result.finalImage.shape);
        json.field("device_used", result.device);
        json.field("nfe", result.nfe);
        json.field("forward_passes", result.forwardPasses);
        json.field("seconds", result.seconds);
        json.field("path_length_ratio", result.pathLengthRatio);
        json.field("straightness", result.straightness);
        // Two numbers per sample: thousands for a large batch, so only when asked for.
        if (options.has("per-sample")) {
            json.field("path_length_ratios", result.pathLengthRatios);
            json.field("straightnesses", result.straightnesses);
        }
        json.field("t_start", result.times.front());
        json.field("t_end", result.times.back());
        json.field("outputs", written);
        json.field("notes", notes);
        json.endObject();
        std::cout << json.str() << "\n";
    } else {
        std::printf("%s on %s, %s, %s schedule: %d steps, NFE %d, %.3f s on %s\n", request.model.c_str(),
                    request.path.c_str(), request.solver.c_str(), request.schedule.c_str(), result.steps, result.nfe,
                    result.seconds, result.device.c_str());
        if (!request.condition.empty()) {
            std::printf("class %s, guidance %s, scale %g: %d forward passes\n", request.condition.c_str(),
                        core::toString(request.guidance.method).c_str(), request.guidance.scale, result.forwardPasses);
        }
        std::printf("path length ratio %.4f (1 = straight), straightness %.4g\n", result.pathLengthRatio,
                    result.straightness);
        for (const auto& note : notes) std::printf("note: %s\n", note.c_str());
        for (const auto& file : written) std::printf("wrote %s\n", file.c_str());
    }
    return kExitOk;
}

int runSweep(const std::vector<std::string>& args) {
    const app::Arguments options(args,
                                 withGuidance({"model", "paths", "solvers", "schedule", "steps", "seed", "batch",
                                               "resolution", "device", "t-end", "csv", "reference-tol", "cfgs",
                                               "image", "init"}),
                                 {"json", "trust-model", "no-cuda-graph", "roundtrip"});
    if (!options.has("model")) throw app::UsageError("sweep needs --model SPEC");
    const auto csv = options.optionalText("csv");
    if (!csv) throw app::UsageError("sweep needs --csv out.csv");
    checkWritable(csv, "csv");
    app::checkExtension(csv, "csv", {".csv"});
    core::SweepRequest request;
    request.model = options.text("model", "");
    request.paths = options.list("paths", "linear");
    request.solvers = options.list("solvers", "euler");
    request.schedules = options.list("schedule", "uniform");
    request.steps = options.integerList("steps", "1,2,4,8", 1, core::kMaxSteps);
    request.seed = options.seed(0);
    request.batch = static_cast<int>(options.integer("batch", request.batch, 1, core::kMaxBatch));
    request.resolution = static_cast<int>(options.integer("resolution", 0, 0, core::kMaxResolution));
    request.device = options.text("device", request.device);
    request.tEnd = options.number("t-end", 1.0);
    request.referenceTolerance = options.number("reference-tol", request.referenceTolerance);
    if (!(request.referenceTolerance > 0.0)) {
        throw app::UsageError("--reference-tol is the reference solve's dopri5 tolerance and must be above 0 (try 1e-6)");
    }
    request.trustModel = options.has("trust-model");
    request.cudaGraphs = !options.has("no-cuda-graph");
    request.condition = options.text("class", "");
    request.text = app::readText(options);
    app::readConditioningFiles(options, &request.text);
    request.guidance = app::readGuidance(options);
    {
        std::string schedule = request.schedules.front();
        app::applyCheckpointDefaults(options, request.model, &schedule, nullptr, &request.guidance);
        if (!options.has("schedule")) request.schedules = {schedule};
    }
    request.cfgs = options.numberList("cfgs");
    if (!request.cfgs.empty() && options.has("cfg")) {
        throw app::UsageError("--cfgs lists the scales a sweep runs; leave out --cfg");
    }
    if (!request.cfgs.empty() && request.guidance.method == core::GuidanceMethod::None) {
        if (options.has("guidance")) throw app::UsageError("--cfgs sweeps a guidance scale: --guidance none has none");
        request.guidance.method = core::GuidanceMethod::Cfg;
    }
    if (!request.cfgs.empty() && request.condition.empty() && !core::specHasForm(request.model, core::SpecForm::Checkpoint) &&
        !core::specHasForm(request.model, core::SpecForm::Bundle)) {
        throw app::UsageError("--cfgs sweeps the guidance towards a class: give --class NAME|INDEX");
    }
    const bool cfgColumn = !request.cfgs.empty();
    if (options.has("roundtrip")) {
        if (!options.has("image") && !options.has("init")) {
            throw app::UsageError("sweep --roundtrip inverts data and solves forwards again: give --image F.png or --init F.npy");
        }
        const core::ModelDescription model = core::Engine::describeModel(request.model, request.resolution);
        request.roundtripImages = app::readStartImages(options, model, "image", &request.roundtripIsData, &g_cancel);
    } else if (options.has("image") || options.has("init")) {
        throw app::UsageError("--image and --init give a round-trip sweep its data: add --roundtrip");
    }

    core::Engine engine(app::imageFolderLoader());
    const bool json = options.has("json");
    // The header comes with the first row: a sweep refused before it runs prints no table.
    bool header = false;
    const auto result = engine.sweep(
        request,
        [&](const core::SweepRow& row) {
            if (json) return;
            if (!std::exchange(header, true)) {
                std::printf("%-8s %-9s %-10s %6s %6s %12s %8s%s\n", "path", "solver", "schedule", "steps", "nfe", "rmse",
                            "seconds", cfgColumn ? "    cfg" : "");
            }
            std::printf("%-8s %-9s %-10s %6d %6d %12.4e %8.3f", row.path.c_str(), row.solver.c_str(),
                        row.schedule.c_str(), row.steps, row.nfe, row.rmse, row.seconds);
            if (cfgColumn) std::printf(" %6g", row.cfg);
            std::printf("\n");
            std::fflush(stdout);
        },
        &g_cancel);
    if (!result.ok()) {
        std::cerr << "flowscope-cli: " << result.error << "\n";
        return exitCodeFor(result.failure);
    }
    std::ostringstream table;
    // --cfgs adds its column last: tools that read the first six keep working.
    table << "path,solver,schedule,steps,nfe,rmse" << (cfgColumn ? ",cfg" : "") << "\n";
    table.precision(9);
    for (const auto& row : result.rows) {
        table << row.path << "," << row.solver << "," << row.schedule << "," << row.steps << "," << row.nfe << ","
              << row.rmse;
        if (cfgColumn) table << "," << row.cfg;
        table << "\n";
    }
    if (g_cancel.load()) throw core::CancelledError();
    core::writeFileAtomically(*csv, table.str());
    if (json) {
        core::JsonWriter writer;
        writer.beginObject();
        writer.key("rows");
        writer.beginArray();
        for (const auto& row : result.rows) {
            writer.beginObject();
            writer.field("path", row.path);
            writer.field("solver", row.solver);
            writer.field("schedule", row.schedule);
            writer.field("steps", row.steps);
            writer.field("nfe", row.nfe);
            writer.field("rmse", row.rmse);
            writer.field("seconds", row.seconds);
            // A round trip's rows measure the round trip; the run's path has no single geometry.
            if (!options.has("roundtrip")) {
                writer.field("path_length_ratio", row.pathLengthRatio);
                writer.field("straightness", row.straightness);
            }
            if (!request.condition.empty()) writer.field("cfg", row.cfg);
            writer.endObject();
        }
        writer.endArray();
        writer.field("csv", *csv);
        writer.field("notes", result.notes);
        writer.endObject();
        std::cout << writer.str() << "\n";
    } else {
        for (const auto& note : result.notes) std::printf("note: %s\n", note.c_str());
        std::printf("wrote %s\n", csv->c_str());
    }
    return kExitOk;
}

// The options every training command shares; unset ones keep the job's defaults.
void readTrainingOptions(const app::Arguments& options, core::TrainRequest& request) {
    if (options.has("time-sampling")) request.timeSampling = options.text("time-sampling", "uniform");
    if (options.has("iters")) request.iterations = static_cast<int>(options.integer("iters", 0, 1, 10'000'000));
    if (options.has("batch")) request.batch = static_cast<int>(options.integer("batch", 0, 1, 65536));
    if (options.has("lr")) request.learningRate = options.number("lr", 0.0);
    if (options.has("weight-decay")) request.weightDecay = options.number("weight-decay", 0.0);
    if (options.has("ema")) request.emaDecay = options.number("ema", 0.0);
    if (options.has("seed")) {
        request.seed = options.seed(0);
    }
    request.checkpointEvery = static_cast<int>(options.integer("checkpoint-every", 500, 1, 10'000'000));
    request.name = options.text("name", "");
}

// The output folder, or the folder it will be made in (as for any output: a missing parent is a
// typo more often than a wish). The job makes it, and removes it again if it refuses the request.
void checkTrainingFolder(const std::string& out) {
    const fs::path folder(out);
    std::error_code ec;
    if (fs::exists(folder, ec)) {
        if (!fs::is_directory(folder, ec)) throw app::UsageError("--out: '" + out + "' is a file, not a folder");
        if (::access(folder.c_str(), W_OK) != 0) throw app::UsageError("--out: the folder '" + out + "' is not writable");
        return;
    }
    app::checkWritable(folder.lexically_normal().has_filename() ? folder.lexically_normal().string()
                                                                : folder.lexically_normal().parent_path().string(),
                       "out");
}

// Runs a training job with a progress bar; it resumes from OUT/checkpoint.safetensors when
// there is one, saves the checkpoint and the bundle every --checkpoint-every iterations, on
// Ctrl+C and at the end, and logs every loss to OUT/loss.csv.
int runTrainingJob(const core::TrainRequest& request, bool json) {
    checkTrainingFolder(request.outDirectory);
    const bool showProgress = ::isatty(STDERR_FILENO) && !json;
    bool announced = false;
    const core::TrainOutcome outcome = core::TrainingJob::run(
        request,
        [&](const core::TrainProgress& progress) {
            if (progress.phase == core::TrainProgress::Phase::Couplings) {
                if (showProgress) {
                    std::fprintf(stderr, "\rcouplings %lld/%lld", static_cast<long long>(progress.done),
                                 static_cast<long long>(progress.total));
                    if (progress.done == progress.total) std::fprintf(stderr, "\n");
                }
                return;
            }
            if (!announced && progress.resumedFrom > 0 && !json) {
                std::fprintf(stderr, "resuming at iteration %d of %lld\n", progress.resumedFrom,
                             static_cast<long long>(progress.total));
            }
            announced = true;
            if (showProgress && (progress.done % 10 == 0 || progress.done == progress.total)) {
                const int width = 30;
                const int filled = static_cast<int>(width * progress.done / std::max<int64_t>(progress.total, 1));
                const double rate = (progress.done - progress.resumedFrom) / std::max(progress.seconds, 1e-9);
                // %.4g: a reflow of a flow that barely left the noise has losses near 1e-6, which
                // a fixed four decimals would show as a perfect 0.0000.
                std::fprintf(stderr, "\r[%s%s] %lld/%lld  loss %.4g  %.1f it/s  ETA %.0f s   ",
                             std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                             static_cast<long long>(progress.done), static_cast<long long>(progress.total),
                             progress.smoothedLoss, rate, progress.etaSeconds);
                std::fflush(stderr);
            }
        },
        &g_cancel, nullptr, app::imageFolderLoader());
    if (showProgress && announced) std::fprintf(stderr, "\n");
    if (!outcome.ok()) {
        std::cerr << "flowscope-cli: " << outcome.error << "\n";
        if (outcome.failure == core::Failure::Cancelled && outcome.iterations > 0) {
            std::cerr << "flowscope-cli: run the same command to resume\n";
        }
        return exitCodeFor(outcome.failure);
    }
    const std::string& folder = outcome.directory;
    if (json) {
        core::JsonWriter writer;
        writer.beginObject();
        writer.field("dataset", outcome.dataset);
        writer.field("objective", outcome.objective);
        writer.field("couplings", outcome.couplings);
        writer.field("iterations", outcome.iterations);
        writer.field("resumed_from", outcome.resumedFrom);
        writer.field("loss", outcome.loss);
        writer.field("seconds", outcome.seconds);
        writer.field("coupling_seconds", outcome.couplingSeconds);
        writer.field("parameters", static_cast<double>(outcome.parameters));
        writer.field("classes", outcome.classes);
        writer.field("bundle", core::makeSpec(core::SpecForm::Bundle, folder));
        writer.field("notes", outcome.notes);
        writer.endObject();
        std::cout << writer.str() << "\n";
    } else if (outcome.iterations == outcome.resumedFrom) {
        // The folder's checkpoint had already reached --iters: nothing was trained, no loss measured.
        std::printf("%s already holds %d iterations of this training: nothing to do (a larger --iters continues it)\n",
                    folder.c_str(), outcome.iterations);
    } else {
        if (outcome.couplingSeconds > 0.0) {
            std::printf("made %lld couplings in %.1f s\n", static_cast<long long>(request.pairs),
                        outcome.couplingSeconds);
        }
        std::printf("trained %s (%s%s, %lld parameters) for %d iterations in %.1f s; loss %.4g\n",
                    outcome.dataset.c_str(), outcome.objective.c_str(),
                    outcome.couplings.empty() ? "" : (", " + outcome.couplings).c_str(),
                    static_cast<long long>(outcome.parameters), outcome.iterations - outcome.resumedFrom,
                    outcome.seconds - outcome.couplingSeconds, outcome.loss);
        if (!outcome.classes.empty()) {
            std::printf("conditional on %zu classes (%s): sample one with --class NAME|INDEX [--cfg W]\n",
                        outcome.classes.size(), core::joinNames(outcome.classes).c_str());
        }
        for (const auto& note : outcome.notes) std::printf("note: %s\n", note.c_str());
        std::printf("wrote %s: sample it with --model bundle:%s\n", folder.c_str(), folder.c_str());
    }
    return kExitOk;
}

int runTrain(const std::vector<std::string>& args) {
    const app::Arguments options(args,
                                 {"dataset", "objective", "iters", "out", "batch", "lr", "ema", "seed", "width", "depth",
                                  "time-sampling", "resolution", "checkpoint-every", "name", "weight-decay",
                                  "label-dropout"},
                                 {"json", "conditional"});
    if (!options.has("dataset")) throw app::UsageError("train needs --dataset (for example --dataset points:moons)");
    const auto out = options.optionalText("out");
    if (!out) throw app::UsageError("train needs --out DIR, the bundle folder to write");
    core::TrainRequest request;
    request.mode = "train";
    request.dataset = options.text("dataset", "");
    request.objective = options.text("objective", "rectified");
    request.outDirectory = *out;
    readTrainingOptions(options, request);
    // Unset: the architecture's default for the data (0 asks for it too, as the app's "auto").
    request.width = options.has("width") ? options.integer("width", 0, 1, 1024) : 0;
    request.depth = options.has("depth") ? options.integer("depth", 0, 1, 6) : 0;
    request.resolution = static_cast<int>(options.integer("resolution", 0, 0, 256));
    request.conditional = options.has("conditional");
    if (options.has("label-dropout") && !request.conditional) {
        throw app::UsageError("--label-dropout trains a conditional network's null class: add --conditional");
    }
    request.labelDropout = options.number("label-dropout", request.labelDropout);
    if (!(request.labelDropout >= 0.0 && request.labelDropout < 1.0)) {
        throw app::UsageError("--label-dropout is the share of labels trained as the null class, in [0, 1) (0.1 is usual)");
    }
    return runTrainingJob(request, options.has("json"));
}

// reflow and distill: couplings from a trained rectified flow, then a new network trained on them,
// starting from the source's weights.
int runCouplingTraining(const std::vector<std::string>& args, const std::string& mode) {
    const app::Arguments options(args,
                                 {"model", "pairs", "steps", "iters", "out", "batch", "lr", "ema", "seed",
                                  "time-sampling", "checkpoint-every", "name", "weight-decay", "cfg"},
                                 {"json"});
    const auto model = options.optionalText("model");
    const auto out = options.optionalText("out");
    if (!model || !out) throw app::UsageError(mode + " needs --model DIR (a rectified flow FlowScope trained) and --out DIR");
    core::TrainRequest request;
    request.mode = mode;
    request.source = *model;
    request.outDirectory = *out;
    request.pairs = options.integer("pairs", 10000, 1, 10'000'000);
    request.couplingSteps = static_cast<int>(options.integer("steps", 32, 1, 1000));
    request.couplingCfg = options.number("cfg", 1.0);
    readTrainingOptions(options, request);
    return runTrainingJob(request, options.has("json"));
}

// Shows what a bundle's program files are and adds their hashes to the trusted list.
int runTrust(const std::vector<std::string>& args) {
    if (args.size() != 1 || args[0].starts_with("--")) {
        throw app::UsageError("trust takes one bundle folder: flowscope-cli trust DIR");
    }
    const std::string directory = core::bundleFolder(args[0]);
    const core::BundleInfo info = core::Engine::inspectBundle(directory);
    if (!info.ok) {
        std::cerr << "flowscope-cli: " << info.error << "\n";
        return kExitUsage;
    }
    if (info.programs.empty()) {
        std::cout << "'" << info.name << "' holds no program files; it loads without trust\n";
        return kExitOk;
    }
    for (const auto& program : info.programs) {
        std::string error;
        if (!program.trusted && !core::Engine::trustProgram(program, &error)) {
            std::cerr << "flowscope-cli: " << error << "\n";
            return kExitFailure;
        }
        std::cout << program.sha256 << "  " << program.path << (program.trusted ? "  (already trusted)" : "  trusted")
                  << "\n";
    }
    return kExitOk;
}

// One command's lines of the usage (reflow and distill share theirs), then the names and
// defaults; the whole usage for a command it does not know.
std::string commandUsage(const std::string& command) {
    const std::string usage(kUsage);
    const std::string first = command == "distill" ? "reflow" : command;
    const std::string start = "\n  flowscope-cli " + first + " ";
    const size_t begin = usage.find(start);
    if (begin == std::string::npos) return usage;
    // The block runs to the next command's line, past distill's for the shared description.
    size_t end = usage.find("\n  flowscope-cli ", begin + start.size());
    if (first == "reflow" && end != std::string::npos) end = usage.find("\n  flowscope-cli ", end + 1);
    const size_t names = usage.find("\nmodels:");
    return "usage:" + usage.substr(begin, end - begin) + "\n" + usage.substr(names);
}

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGINT, onInterrupt);
    std::signal(SIGTERM, onInterrupt);
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) {  // a usage error: the help goes to stderr
        std::cerr << kUsage;
        return kExitUsage;
    }
    if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
        std::cout << kUsage;
        return kExitOk;
    }
    if (args[0] == "--version") {
        std::cout << "flowscope-cli " << core::Engine::info().version << "\n";
        return kExitOk;
    }
    const std::string command = args[0];
    args.erase(args.begin());
    // `flowscope-cli train --help` and friends: that command's part of the usage.
    if (std::find(args.begin(), args.end(), "--help") != args.end() ||
        std::find(args.begin(), args.end(), "-h") != args.end()) {
        std::cout << commandUsage(command);
        return kExitOk;
    }
    // A checkpoint's parts take a while to read: say how far, on a terminal.
    if (::isatty(STDERR_FILENO)) {
        core::setCheckpointLoadObserver([](const std::string& part, uint64_t done, uint64_t total) {
            const bool gigabytes = total >= 1000000000;
            const double unit = gigabytes ? 1e9 : 1e6;
            std::fprintf(stderr, "\rloading %s: %.2f of %.2f %s%s", part.c_str(), double(done) / unit, double(total) / unit,
                         gigabytes ? "GB" : "MB", done >= total ? "\n" : "   ");
            std::fflush(stderr);
        });
    }
    try {
        if (command == "info") return runInfo(args);
        if (command == "sample") return runSample(args);
        if (command == "sweep") return runSweep(args);
        if (command == "invert") return app::runInvert(args, g_cancel);
        if (command == "trust") return runTrust(args);
        if (command == "train") return runTrain(args);
        if (command == "reflow" || command == "distill") return runCouplingTraining(args, command);
        if (command == "classifier") return app::runClassifier(args, g_cancel);
        if (command == "evaluate") return app::runEvaluate(args, g_cancel);
        if (command == "tokenize") return app::runTokenize(args);
        if (command == "encode-prompt") return app::runEncodePrompt(args, g_cancel);
        if (command == "forward") return app::runForward(args, g_cancel);
        if (command == "decode") return app::runDecode(args, g_cancel);
        std::cerr << "flowscope-cli: unknown command '" << command
                  << "'; valid: info, sample, sweep, invert, trust, train, reflow, distill, classifier, evaluate, "
                     "tokenize, encode-prompt, forward, decode\n\n"
                  << kUsage;
        return kExitUsage;
    } catch (const app::UsageError& error) {
        std::cerr << "flowscope-cli: " << error.what() << "\n(see flowscope-cli --help)\n";
        return kExitUsage;
    } catch (const std::invalid_argument& error) {  // an unknown name or a value out of range
        std::cerr << "flowscope-cli: " << error.what() << "\n";
        return kExitUsage;
    } catch (const core::CancelledError&) {
        std::cerr << "flowscope-cli: interrupted; no output was written\n";
        return kExitCancelled;
    } catch (const std::exception& error) {
        std::cerr << "flowscope-cli: " << error.what() << "\n";
        return kExitFailure;
    }
}
