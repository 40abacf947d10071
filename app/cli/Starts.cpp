#include "app/cli/Starts.h"

#include <cmath>
#include <cstdio>
#include <iostream>

#include <unistd.h>

#include "app/cli/Checkpoints.h"
#include "core/api/Errors.h"
#include "core/api/Files.h"
#include "core/api/SettingsCodec.h"
#include "core/io/AtomicFile.h"
#include "core/io/JsonWriter.h"
#include "core/media/ImageFolderLoader.h"
#include "core/media/ImageWriter.h"

namespace flowscope::app {
namespace {

// A .npy file as a host array; UsageError naming the option when it cannot be read.
core::HostArray readArray(const std::string& path, const std::string& option) {
    try {
        return core::readNpyArray(path);
    } catch (const std::exception& error) {
        throw UsageError("--" + option + ": " + error.what());
    }
}

std::string sizeText(int64_t width, int64_t height) { return std::to_string(width) + "x" + std::to_string(height); }

// Image-to-image's default strength, as AUTOMATIC1111's img2img tab and diffusers use.
constexpr double kDefaultStrength = 0.75;

}  // namespace

const std::set<std::string>& startOptionNames() {
    static const std::set<std::string> names{"init-image", "init", "strength", "t-start", "init-noise", "start-grid"};
    return names;
}

core::HostArray readStartImages(const Arguments& options, const core::ModelDescription& model,
                                const std::string& imageOption, bool* imageIsData, const std::atomic<bool>* cancel) {
    if (options.has(imageOption) && options.has("init")) {
        throw UsageError("--" + imageOption + " and --init both give the starting data: give one");
    }
    if (options.has("init")) {
        *imageIsData = true;
        core::HostArray array = readArray(options.text("init", ""), "init");
        // [B, C, H, W] pictures in [-1, 1] for an image model are its samples as they are; a latent
        // model's .npy holds latents (the engine checks the shape against the model's).
        return array;
    }
    *imageIsData = false;
    const std::string file = options.text(imageOption, "");
    if (!model.ok) throw UsageError(model.error);
    if (model.points) {
        throw UsageError("--" + imageOption + ": the model makes 2-D points, not images; give its points as --init F.npy ([B, 2])");
    }
    if (model.latent && !model.encodesImages) {
        throw UsageError("--" + imageOption + ": the model makes latents and its bundle has no \"encoder\"; give its latents "
                         "as --init F.npy, or add an encoder to the bundle's manifest");
    }
    const int channels = model.latent ? 3 : static_cast<int>(model.sampleShape.at(0));
    core::HostArray image;
    try {
        image = media::readImageFile(file, channels, cancel);
    } catch (const std::invalid_argument& error) {
        throw UsageError("--" + imageOption + ": " + error.what());
    }
    if (!model.latent) {
        const int64_t height = model.sampleShape.at(1), width = model.sampleShape.at(2);
        if (image.shape[2] != height || image.shape[3] != width) {
            throw UsageError("--" + imageOption + ": '" + file + "' is " + sizeText(image.shape[3], image.shape[2]) +
                             " pixels, but the model makes " + sizeText(width, height) +
                             " images: resize it, or give --resolution " + std::to_string(image.shape[3]) +
                             (image.shape[2] == image.shape[3] ? "" : " with a square image"));
        }
    }
    return image;
}

void readStart(const Arguments& options, core::SampleRequest& request, const std::atomic<bool>* cancel) {
    core::RunStart& start = request.start;
    const bool image = options.has("init-image") || options.has("init");
    if (options.has("strength") && options.has("t-start")) {
        throw UsageError("--strength S and --t-start T say the same (T = 1 - S): give one");
    }
    if (options.has("strength") && !image) {
        throw UsageError("--strength is how much of a starting image is redone: give --init-image F.png or --init F.npy");
    }
    if (image) {
        const core::ModelDescription model = core::Engine::describeModel(request.model, request.resolution);
        start.kind = core::RunStart::Kind::Image;
        start.image = readStartImages(options, model, "init-image", &start.imageIsData, cancel);
        const double strength = options.number("strength", kDefaultStrength);
        if (!(strength >= 0.0 && strength <= 1.0)) {
            throw UsageError("--strength must be between 0 (the image as it is) and 1 (all new from the seed's noise); got " +
                             options.text("strength", ""));
        }
        start.time = 1.0 - strength;
    }
    if (options.has("t-start")) {
        start.time = options.number("t-start", 0.0);
        if (!(start.time >= 0.0 && start.time < request.tEnd)) {
            throw UsageError("--t-start must lie in [0, t-end) = [0, " + options.text("t-end", "1") + "); got " +
                             options.text("t-start", ""));
        }
    }
    if (options.has("init-noise")) start.noise = readArray(options.text("init-noise", ""), "init-noise");
    const std::string grid = options.text("start-grid", "cut");
    if (grid != "cut" && grid != "new") {
        throw UsageError("--start-grid is cut (the rest of the schedule's own grid) or new (--steps steps from the "
                         "start); got '" + grid + "'");
    }
    start.newGrid = grid == "new";
}

int runInvert(const std::vector<std::string>& args, const std::atomic<bool>& cancel) {
    std::set<std::string> valued{"model", "path", "solver", "schedule", "steps", "resolution", "device", "dtype", "rtol",
                                 "atol", "image", "init", "save-noise", "roundtrip"};
    valued.insert(guidanceOptionNames().begin(), guidanceOptionNames().end());
    valued.insert(textOptionNames().begin(), textOptionNames().end());
    valued.insert(conditioningOptionNames().begin(), conditioningOptionNames().end());
    const Arguments options(args, valued, {"json", "trust-model", "no-cuda-graph"});
    if (!options.has("model")) throw UsageError("invert needs --model SPEC");
    if (!options.has("image") && !options.has("init")) {
        throw UsageError("invert needs the data to invert: --image F.png, or --init F.npy");
    }
    core::InvertRequest request;
    core::SampleRequest& settings = request.settings;
    settings.model = options.text("model", "");
    settings.path = options.text("path", settings.path);
    settings.solver = options.text("solver", settings.solver);
    settings.schedule = options.text("schedule", settings.schedule);
    settings.steps = static_cast<int>(options.integer("steps", settings.steps, 1, core::kMaxSteps));
    settings.resolution = static_cast<int>(options.integer("resolution", 0, 0, core::kMaxResolution));
    settings.device = options.text("device", settings.device);
    settings.dtype = options.text("dtype", settings.dtype);
    settings.rtol = options.number("rtol", settings.rtol);
    settings.atol = options.number("atol", settings.atol);
    settings.trustModel = options.has("trust-model");
    settings.cudaGraphs = !options.has("no-cuda-graph");
    settings.condition = options.text("class", "");
    settings.guidance = readGuidance(options);
    settings.text = readText(options);
    readConditioningFiles(options, &settings.text);
    applyCheckpointDefaults(options, settings.model, &settings.schedule, &settings.steps, &settings.guidance);
    const auto saveNoise = options.optionalText("save-noise");
    const auto roundtrip = options.optionalText("roundtrip");
    checkWritable(saveNoise, "save-noise");
    checkWritable(roundtrip, "roundtrip");
    checkExtension(saveNoise, "save-noise", {".npy"});
    checkExtension(roundtrip, "roundtrip", {".png"});
    checkDistinct({{"save-noise", saveNoise}, {"roundtrip", roundtrip}});
    const core::ModelDescription model = core::Engine::describeModel(settings.model, settings.resolution);
    request.images = readStartImages(options, model, "image", &request.imageIsData, &cancel);

    core::Engine engine(imageFolderLoader());
    const core::InvertResult result = engine.invert(request, {}, &cancel);
    if (!result.ok()) {
        std::cerr << "flowscope-cli: " << result.error << "\n";
        return exitCodeFor(result.failure);
    }
    core::FileTransaction outputs;
    std::vector<std::string> written;
    if (saveNoise) {
        outputs.add(*saveNoise, core::encodeNpyArray(result.noise));
        written.push_back(*saveNoise);
    }
    if (roundtrip) {
        const bool picture = result.sampleShape.size() == 3;
        const core::HostArray& shown = result.roundtripImage.shape.empty() ? result.roundtrip : result.roundtripImage;
        const cv::Mat rendered = media::runPicture(settings.model, picture ? shown : core::HostArray{}, result.roundtrip, {});
        outputs.add(*roundtrip, media::encodePng(rendered, core::settingsChunks(settings, result.roundtripNfe, result.sampleShape)));
        written.push_back(*roundtrip);
    }
    if (cancel.load()) throw core::CancelledError();
    outputs.commit();

    if (options.has("json")) {
        core::JsonWriter json;
        json.beginObject();
        json.members(core::settingsToJson(settings));
        json.field("sample_shape", result.sampleShape);
        json.field("device_used", result.device);
        json.field("steps_run", result.steps);
        json.field("nfe", result.nfe);
        json.field("roundtrip_nfe", result.roundtripNfe);
        json.field("roundtrip_rmse", result.roundtripRmse);
        json.field("roundtrip_rmses", result.roundtripRmses);
        json.field("noise_mean", result.noiseMean);
        json.field("noise_std", result.noiseStd);
        json.field("noise_skewness", result.noiseSkewness);
        json.field("noise_excess_kurtosis", result.noiseKurtosis);
        json.field("noise_ks_distance", result.normalityDistance);
        json.field("noise_ks_p", result.normalityP);
        json.field("seconds", result.seconds);
        json.field("outputs", written);
        json.field("notes", result.notes);
        json.endObject();
        std::cout << json.str() << "\n";
    } else {
        std::printf("%s inverted on %s with %s, %s schedule: %d steps, NFE %d (round trip NFE %d), %.3f s on %s\n",
                    settings.model.c_str(), settings.path.c_str(), settings.solver.c_str(), settings.schedule.c_str(),
                    result.steps, result.nfe, result.roundtripNfe, result.seconds, result.device.c_str());
        std::printf("round trip RMSE %.4e per element\n", result.roundtripRmse);
        std::printf("noise: mean %.4f, std %.4f, skewness %.3f, excess kurtosis %.3f, KS distance to N(0, 1) %.4f "
                    "(p = %.3g)\n",
                    result.noiseMean, result.noiseStd, result.noiseSkewness, result.noiseKurtosis,
                    result.normalityDistance, result.normalityP);
        for (const auto& note : result.notes) std::printf("note: %s\n", note.c_str());
        for (const auto& file : written) std::printf("wrote %s\n", file.c_str());
    }
    return kExitOk;
}

}  // namespace flowscope::app
