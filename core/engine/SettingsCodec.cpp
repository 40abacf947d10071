// The settings codec (core/api/SettingsCodec.h): torch-free, so the window's code and the
// settings fuzz target link it without the engine.
#include "core/api/SettingsCodec.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/io/Json.h"
#include "core/io/JsonWriter.h"

namespace flowscope::core {
namespace {

using Object = JsonValue::Object;

// Why a settings object cannot be read; caught at the codec's edge and returned as text.
struct SettingsError {
    std::string message;
};

const JsonValue* find(const Object& object, const std::string& key) {
    const auto it = object.find(key);
    return it == object.end() ? nullptr : &it->second;
}

std::string text(const Object& object, const std::string& key, const std::string* fallback = nullptr) {
    const JsonValue* value = find(object, key);
    if (!value && fallback) return *fallback;
    if (!value || !value->isString()) throw SettingsError{"the settings have no '" + key + "' (a string)"};
    return value->string();
}

int64_t integer(const Object& object, const std::string& key, int64_t low, int64_t high, const int64_t* fallback = nullptr) {
    const JsonValue* value = find(object, key);
    if (!value && fallback) return *fallback;
    uint64_t number = 0;
    // Whole numbers as JSON numbers; a decimal string as well (how seeds were once stored).
    const bool read = value && (value->isNumber()   ? value->toUnsigned(&number)
                                : value->isString() ? JsonValue{JsonValue::Number{value->string()}}.toUnsigned(&number)
                                                    : false);
    if (!read || number < static_cast<uint64_t>(low) || number > static_cast<uint64_t>(high)) {
        throw SettingsError{"the settings' '" + key + "' must be a whole number from " + std::to_string(low) + " to " +
                            std::to_string(high)};
    }
    return static_cast<int64_t>(number);
}

// A number in [low, high] (or (0, high] when low is 0: tolerances and times are positive).
double real(const Object& object, const std::string& key, double low, double high, double fallback) {
    const JsonValue* value = find(object, key);
    if (!value) return fallback;
    double number = 0.0;
    const bool inRange = value->isNumber() && value->toDouble(&number) && number <= high &&
                         (low > 0.0 ? number >= low : number > 0.0);
    if (!inRange) {
        std::ostringstream range;
        range << "the settings' '" << key << "' must be a number " << (low > 0.0 ? "from " : "above ") << low
              << (low > 0.0 ? " to " : " and at most ") << high;
        throw SettingsError{range.str()};
    }
    return number;
}

void checkName(NameKind kind, const std::string& name) {
    const std::string why = Engine::checkName(kind, name);
    if (!why.empty()) throw SettingsError{why};
}

// The "guidance" object settingsToJson writes (every field optional, as its default).
GuidanceSettings parseGuidance(const JsonValue& value) {
    if (!value.isObject()) throw SettingsError{"the settings' 'guidance' must be an object"};
    const Object& object = value.object();
    GuidanceSettings settings;
    const std::string none = toString(GuidanceMethod::None);
    const std::string method = text(object, "method", &none);
    try {
        settings.method = parseGuidanceMethod(method);
    } catch (const std::exception& error) {
        throw SettingsError{std::string("the settings' guidance: ") + error.what()};
    }
    const auto number = [&](const std::string& key, double fallback) {
        const JsonValue* field = find(object, key);
        double result = fallback;
        if (field && !(field->isNumber() && field->toDouble(&result))) {
            throw SettingsError{"the settings' guidance '" + key + "' must be a number"};
        }
        return result;
    };
    settings.scale = number("scale", settings.scale);
    if (const JsonValue* interval = find(object, "interval")) {
        const bool pair = interval->isArray() && interval->array().size() == 2 && interval->array()[0].isNumber() &&
                          interval->array()[1].isNumber() && interval->array()[0].toDouble(&settings.intervalLow) &&
                          interval->array()[1].toDouble(&settings.intervalHigh);
        if (!pair) throw SettingsError{"the settings' guidance 'interval' must be [LO, HI]"};
    }
    settings.rescale = number("rescale", settings.rescale);
    settings.apgEta = number("apg_eta", settings.apgEta);
    settings.apgMomentum = number("apg_momentum", settings.apgMomentum);
    settings.apgNorm = number("apg_norm", settings.apgNorm);
    const double steps = number("cfg_zero_steps", 0.0);
    if (!(steps >= 0.0 && steps <= kMaxSteps && steps == std::floor(steps))) {
        throw SettingsError{"the settings' guidance 'cfg_zero_steps' must be a whole number from 0 to " +
                            std::to_string(kMaxSteps)};
    }
    settings.cfgZeroSteps = static_cast<int>(steps);
    try {
        checkGuidance(settings);
    } catch (const std::exception& error) {
        throw SettingsError{std::string("the settings' guidance: ") + error.what()};
    }
    return settings;
}

constexpr std::string_view startKindName(RunStart::Kind kind) {
    switch (kind) {
        case RunStart::Kind::Noise: return "noise";
        case RunStart::Kind::Image: return "image";
        case RunStart::Kind::State: return "state";
    }
    return "noise";
}

// The "text" object settingsToJson writes: a checkpoint's prompt, size and the parts named
// beside its file, or a bundle's conditioning files.
TextSettings parseText(const JsonValue& value) {
    if (!value.isObject()) throw SettingsError{"the settings' 'text' must be an object"};
    const Object& object = value.object();
    const TextSettings defaults;
    TextSettings settings;
    settings.prompt = text(object, "prompt", &defaults.prompt);
    settings.negativePrompt = text(object, "negative_prompt", &defaults.negativePrompt);
    const int64_t none = 0;
    settings.width = static_cast<int>(integer(object, "width", 0, 4096, &none));
    settings.height = static_cast<int>(integer(object, "height", 0, 4096, &none));
    if (settings.width % 16 != 0 || settings.height % 16 != 0) {
        throw SettingsError{"the settings' text 'width' and 'height' must be multiples of 16"};
    }
    settings.fluxGuidance = real(object, "flux_guidance", 0.0, 100.0, defaults.fluxGuidance);
    settings.clipL = text(object, "clip_l", &defaults.clipL);
    settings.clipG = text(object, "clip_g", &defaults.clipG);
    settings.t5 = text(object, "t5", &defaults.t5);
    settings.autoencoder = text(object, "ae", &defaults.autoencoder);
    settings.tokenizers = text(object, "tokenizers", &defaults.tokenizers);
    settings.conditioning = text(object, "cond", &defaults.conditioning);
    settings.unconditioning = text(object, "uncond", &defaults.unconditioning);
    return settings;
}

// The "start" object settingsToJson writes: where the run began, without the arrays.
RunStart parseStart(const JsonValue& value, double tEnd) {
    if (!value.isObject()) throw SettingsError{"the settings' 'start' must be an object"};
    const Object& object = value.object();
    RunStart start;
    const std::string kind = text(object, "kind");
    if (kind == "image") {
        start.kind = RunStart::Kind::Image;
    } else if (kind == "state") {
        start.kind = RunStart::Kind::State;
    } else if (kind != "noise") {
        throw SettingsError{"the settings' start 'kind' must be noise, image or state, not '" + kind + "'"};
    }
    start.time = real(object, "t_start", 0.0, tEnd, 0.0);
    const std::string cut = "cut";
    const std::string grid = text(object, "grid", &cut);
    if (grid != "cut" && grid != "new") throw SettingsError{"the settings' start 'grid' must be cut or new, not '" + grid + "'"};
    start.newGrid = grid == "new";
    return start;
}

SampleRequest parse(std::string_view text_, SampleRequest request) {
    JsonValue document;
    try {
        document = parseJson(text_, 8);
    } catch (const std::exception& error) {
        throw SettingsError{std::string("the settings are not JSON: ") + error.what()};
    }
    if (!document.isObject()) throw SettingsError{"the settings are not a JSON object"};
    const Object& object = document.object();
    const SampleRequest defaults;
    request.model = text(object, "model");
    if (request.model.empty()) throw SettingsError{"the settings' 'model' is empty"};
    request.path = text(object, "path");
    request.solver = text(object, "solver");
    request.schedule = text(object, "schedule");
    request.steps = static_cast<int>(integer(object, "steps", 1, kMaxSteps));
    request.seed = static_cast<uint64_t>(integer(object, "seed", 0, static_cast<int64_t>(kMaxSeed)));
    request.batch = static_cast<int>(integer(object, "batch", 1, kMaxBatch));
    const int64_t ownResolution = 0;
    request.resolution = static_cast<int>(integer(object, "resolution", 0, kMaxResolution, &ownResolution));
    request.device = text(object, "device", &defaults.device);
    request.dtype = text(object, "dtype", &defaults.dtype);
    request.tEnd = real(object, "t_end", kMinTEnd, 1.0, defaults.tEnd);
    request.rtol = real(object, "rtol", 0.0, 1.0, defaults.rtol);
    request.atol = real(object, "atol", 0.0, 1.0, defaults.atol);
    request.condition = text(object, "condition", &defaults.condition);
    request.guidance = defaults.guidance;
    if (const JsonValue* guidance = find(object, "guidance")) request.guidance = parseGuidance(*guidance);
    request.start = {};
    if (const JsonValue* start = find(object, "start")) request.start = parseStart(*start, request.tEnd);
    request.text = {};
    if (const JsonValue* textObject = find(object, "text")) request.text = parseText(*textObject);
    checkName(NameKind::Path, request.path);
    checkName(NameKind::Solver, request.solver);
    checkName(NameKind::Schedule, request.schedule);
    checkName(NameKind::Device, request.device);
    if (std::find(dtypeNames().begin(), dtypeNames().end(), request.dtype) == dtypeNames().end()) {
        throw SettingsError{UnknownNameError("dtype", request.dtype, dtypeNames()).what()};
    }
    return request;
}

}  // namespace

std::string settingsToJson(const SampleRequest& request) {
    JsonWriter json;
    json.beginObject();
    json.field("model", request.model);
    json.field("path", request.path);
    json.field("solver", request.solver);
    json.field("schedule", request.schedule);
    json.field("steps", request.steps);
    json.field("seed", static_cast<long long>(request.seed));
    json.field("batch", request.batch);
    json.field("resolution", request.resolution);
    json.field("device", request.device);
    json.field("dtype", request.dtype);
    json.field("t_end", request.tEnd);
    json.field("rtol", request.rtol);
    json.field("atol", request.atol);
    // Only where set, so that unconditional runs keep the chunk earlier versions wrote.
    if (!request.condition.empty()) json.field("condition", request.condition);
    const GuidanceSettings& guidance = request.guidance;
    if (guidance.method != GuidanceMethod::None) {
        json.key("guidance");
        json.beginObject();
        json.field("method", toString(guidance.method));
        json.field("scale", guidance.scale);
        json.key("interval");
        json.beginArray();
        json.value(guidance.intervalLow);
        json.value(guidance.intervalHigh);
        json.endArray();
        if (guidance.method == GuidanceMethod::Cfg) json.field("rescale", guidance.rescale);
        if (guidance.method == GuidanceMethod::Apg) {
            json.field("apg_eta", guidance.apgEta);
            json.field("apg_momentum", guidance.apgMomentum);
            // No threshold (infinity, which JSON cannot hold) is the field's absence.
            if (std::isfinite(guidance.apgNorm)) json.field("apg_norm", guidance.apgNorm);
        }
        if (guidance.method == GuidanceMethod::CfgZero) json.field("cfg_zero_steps", guidance.cfgZeroSteps);
        json.endObject();
    }
    // Only for runs that do not start from the seed's noise at the grid's start; the arrays a
    // start holds (an image, a state, a noise) are files of their own, not settings.
    const RunStart& start = request.start;
    if (start.kind != RunStart::Kind::Noise || start.time != 0.0 || start.newGrid) {
        json.key("start");
        json.beginObject();
        json.field("kind", std::string(startKindName(start.kind)));
        json.field("t_start", start.time);
        json.field("grid", std::string(start.newGrid ? "new" : "cut"));
        json.endObject();
    }
    // Only for text-to-image checkpoints (or where anything of it is set).
    const TextSettings& textSettings = request.text;
    if (!(textSettings == TextSettings{}) || specHasForm(request.model, SpecForm::Checkpoint)) {
        json.key("text");
        json.beginObject();
        json.field("prompt", textSettings.prompt);
        if (!textSettings.negativePrompt.empty()) json.field("negative_prompt", textSettings.negativePrompt);
        json.field("width", textSettings.width);
        json.field("height", textSettings.height);
        json.field("flux_guidance", textSettings.fluxGuidance);
        for (const auto& [name, value] : {std::pair{"clip_l", &textSettings.clipL}, std::pair{"clip_g", &textSettings.clipG},
                                          std::pair{"t5", &textSettings.t5},
                                          std::pair{"ae", &textSettings.autoencoder},
                                          std::pair{"tokenizers", &textSettings.tokenizers},
                                          std::pair{"cond", &textSettings.conditioning},
                                          std::pair{"uncond", &textSettings.unconditioning}}) {
            if (!value->empty()) json.field(name, *value);
        }
        json.endObject();
    }
    json.endObject();
    return json.str();
}

bool settingsFromJson(std::string_view text, SampleRequest* request, std::string* error) {
    try {
        *request = parse(text, *request);
        return true;
    } catch (const SettingsError& failure) {
        *error = failure.message;
        return false;
    }
}

std::string parametersLine(const SampleRequest& request, int nfe, const std::vector<int64_t>& sampleShape) {
    std::ostringstream line;
    const bool checkpoint = specHasForm(request.model, SpecForm::Checkpoint);
    // AUTOMATIC1111's parameters begin with the prompt, on a line of its own.
    if (checkpoint) line << request.text.prompt << "\n";
    if (checkpoint && !request.text.negativePrompt.empty()) line << "Negative prompt: " << request.text.negativePrompt << "\n";
    line << "Steps: " << request.steps << ", Sampler: " << request.solver << ", Schedule type: " << request.schedule;
    // AUTOMATIC1111 writes the scale after the schedule; FlowScope only for a conditional run
    // (a class, a checkpoint guided towards its prompt, a bundle guided towards its tensors).
    const bool byInput = checkpoint || specHasForm(request.model, SpecForm::Bundle);
    if (!request.condition.empty() || (byInput && request.guidance.method != GuidanceMethod::None)) {
        const double scale = request.guidance.method == GuidanceMethod::None ? 1.0 : request.guidance.scale;
        line << ", CFG scale: " << scale;
        if (request.guidance.method != GuidanceMethod::None && request.guidance.method != GuidanceMethod::Cfg) {
            line << ", Guidance: " << toString(request.guidance.method);
        }
    }
    line << ", Seed: " << request.seed << ", Batch: " << request.batch << ", Model: " << request.model;
    if (!request.condition.empty()) line << ", Class: " << request.condition;
    line << ", Path: " << request.path << ", NFE: " << nfe << ", Version: FlowScope " << Engine::version();
    if (checkpoint && sampleShape.size() == 3) {
        // The image's size: 8 pixels a latent pixel.
        line << ", Size: " << 8 * sampleShape[2] << "x" << 8 * sampleShape[1];
        if (request.text.fluxGuidance != TextSettings{}.fluxGuidance) line << ", Distilled CFG Scale: " << request.text.fluxGuidance;
    } else if (sampleShape.size() == 3) {
        line << ", Size: " << sampleShape[2] << "x" << sampleShape[1];
    }
    // AUTOMATIC1111's name for how much of an image-to-image run is redone.
    if (request.start.kind == RunStart::Kind::Image) line << ", Denoising strength: " << 1.0 - request.start.time;
    return line.str();
}

TextChunks settingsChunks(const SampleRequest& request, int nfe, const std::vector<int64_t>& sampleShape) {
    return {{std::string(kParametersChunk), parametersLine(request, nfe, sampleShape)},
            {std::string(kSettingsChunk), settingsToJson(request)}};
}

}  // namespace flowscope::core
