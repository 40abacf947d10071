#include "app/cli/Checkpoints.h"

#include <cmath>
#include <iostream>

#include "core/api/Checkpoints.h"
#include "core/api/Errors.h"
#include "core/api/Files.h"
#include "core/api/Names.h"
#include "core/io/JsonWriter.h"
#include "core/media/ImageWriter.h"

namespace flowscope::app {
namespace {

// The PATH of --model checkpoint:PATH; UsageError for any other spec.
std::string checkpointPath(const Arguments& options, const std::string& command) {
    const std::string model = options.text("model", "");
    std::string path;
    if (!core::specHasForm(model, core::SpecForm::Checkpoint, &path) || path.empty()) {
        throw UsageError(command + " needs --model checkpoint:PATH (a FLUX.1 or Stable Diffusion 3 model folder or .safetensors file)");
    }
    return path;
}

std::set<std::string> withText(std::set<std::string> names) {
    names.insert(textOptionNames().begin(), textOptionNames().end());
    return names;
}

void writeTokens(core::JsonWriter& json, const core::PromptTokens& tokens) {
    json.key(tokens.tokenizer);
    json.beginObject();
    json.field("ids", tokens.ids);
    json.field("cut", tokens.cut);
    json.field("prompt_tokens", tokens.promptTokens);
    json.field("kept_tokens", tokens.keptTokens);
    json.field("limit", tokens.limit);
    json.endObject();
}

void printTokens(const core::PromptTokens& tokens, const std::string& prompt) {
    std::cout << tokens.tokenizer << ": " << tokens.keptTokens << "/" << tokens.limit << " tokens";
    if (tokens.cut) {
        std::cout << " (cut: " << tokens.promptTokens - tokens.keptTokens << " dropped from \""
                  << prompt.substr(std::min(tokens.cutByte, prompt.size())) << "\")";
    }
    std::cout << "\n  ids:";
    for (int64_t id : tokens.ids) std::cout << ' ' << id;
    std::cout << "\n";
}

std::string dtypeList(const std::vector<std::string>& dtypes) { return core::joinNames(dtypes, "+"); }

// info --json: the parts, tokenizers, the transformer's sizes, the card's defaults and the memory.
void printInfoJson(const core::CheckpointInfo& info, const core::CheckpointMemory& memory) {
    core::JsonWriter json;
    json.beginObject();
    json.field("family", info.family);
    json.key("parts");
    json.beginObject();
    for (const auto& part : info.parts) {
        json.key(part.name);
        json.beginObject();
        json.field("found", part.found);
        if (part.found) {
            json.field("origin", part.origin);
            json.field("files", part.files);
            json.field("parameters", static_cast<long long>(part.parameters));
            json.field("float8_parameters", static_cast<long long>(part.float8Parameters));
            json.field("dtypes", part.dtypes);
        }
        json.endObject();
    }
    json.endObject();
    json.field("clip_tokenizer", info.clipTokenizer);
    if (info.sd3) json.field("clip_g_tokenizer", info.clipGTokenizer);
    json.field("t5_tokenizer", info.t5Tokenizer);
    json.key("transformer");
    json.beginObject();
    json.field("hidden", static_cast<long long>(info.hidden));
    json.field("heads", static_cast<long long>(info.heads));
    json.field("head_dim", static_cast<long long>(info.headDim));
    json.field("mlp_hidden", static_cast<long long>(info.mlpHidden));
    json.field("context_width", static_cast<long long>(info.contextWidth));
    json.field("pooled_width", static_cast<long long>(info.pooledWidth));
    json.field("qk_norm", info.qkNorm);
    if (info.sd3) {
        json.field("joint_blocks", info.jointBlocks);
        json.field("patch", static_cast<long long>(info.patch));
        json.field("position_grid", static_cast<long long>(info.positionGrid));
        json.field("max_side", static_cast<long long>(info.maxSide));
        json.field("self_attention_blocks", std::vector<int64_t>(info.selfAttentionBlocks.begin(), info.selfAttentionBlocks.end()));
    } else {
        json.field("double_blocks", info.doubleBlocks);
        json.field("single_blocks", info.singleBlocks);
        json.field("guidance_input", info.guidanceInput);
    }
    json.endObject();
    json.field("default_schedule", info.defaultSchedule);
    json.field("default_steps", info.defaultSteps);
    json.field("default_cfg", info.defaultCfg);
    json.field("negative_prompt", info.sd3);
    json.field("t5_tokens", info.t5Tokens);
    json.key("memory");
    json.beginObject();
    json.field("device", std::string(memory.gpu ? "cuda" : "cpu"));
    json.field("machine_bytes", memory.machineBytes);
    json.field("free_bytes", memory.freeBytes);
    json.field("transformer_bytes", memory.transformerBytes);
    json.field("transformer_dtype", memory.transformerDtype);
    json.field("encoder_bytes", memory.encoderBytes);
    json.field("encoders_on_cpu", memory.encodersOnCpu);
    json.field("autoencoder_bytes", memory.autoencoderBytes);
    json.field("peak_bytes", memory.peakBytes);
    json.field("fits", memory.fits);
    json.endObject();
    json.endObject();
    std::cout << json.str() << "\n";
}

// info as text, a line per part and one for the memory.
void printInfoText(const std::string& path, const core::CheckpointInfo& info, const core::CheckpointMemory& memory) {
    std::cout << info.family << " (" << path << ")\n";
    for (const auto& part : info.parts) {
        std::cout << "  " << part.name << ": ";
        if (!part.found) {
            std::cout << (part.name == "t5" && info.sd3 ? "not found (optional: its part of the context is zeros)" : "not found")
                      << "\n";
            continue;
        }
        std::cout << part.parameters << " parameters, " << dtypeList(part.dtypes) << ", from " << part.origin << "\n";
    }
    std::cout << "  tokenizers: " << (info.clipTokenizer.empty() ? "no CLIP" : "CLIP " + info.clipTokenizer) << ", ";
    if (info.sd3) std::cout << (info.clipGTokenizer.empty() ? "CLIP-G from CLIP's" : "CLIP-G " + info.clipGTokenizer) << ", ";
    std::cout << (info.t5Tokenizer.empty() ? "no T5" : "T5 " + info.t5Tokenizer) << "\n";
    if (info.sd3) {
        std::cout << "  MMDiT: width " << info.hidden << ", " << info.heads << " heads of " << info.headDim << ", "
                  << info.jointBlocks << " joint blocks, patch " << info.patch << ", positions " << info.positionGrid << "x"
                  << info.positionGrid << " (up to " << info.maxSide << " pixels a side)" << (info.qkNorm ? ", QK norm" : "");
        if (!info.selfAttentionBlocks.empty()) {
            const int first = info.selfAttentionBlocks.front(), last = info.selfAttentionBlocks.back();
            std::cout << ", MMDiT-X attention in block" << (first == last ? " " + std::to_string(first)
                                                                         : "s " + std::to_string(first) + "-" + std::to_string(last));
        }
        std::cout << "\n";
    } else {
        std::cout << "  transformer: width " << info.hidden << ", " << info.heads << " heads of " << info.headDim << ", "
                  << info.doubleBlocks << " double and " << info.singleBlocks << " single blocks"
                  << (info.guidanceInput ? ", guidance input" : "") << "\n";
    }
    std::cout << "  defaults: --schedule " << info.defaultSchedule << " --steps " << info.defaultSteps;
    if (info.defaultCfg != 1.0) std::cout << " --cfg " << info.defaultCfg;
    std::cout << ", T5 " << info.t5Tokens << " tokens\n";
    std::cout << "  memory: " << memory.summary << "\n";
}

}  // namespace

const std::set<std::string>& textOptionNames() {
    static const std::set<std::string> names{"prompt", "negative-prompt", "width", "height", "flux-guidance",
                                             "clip-l",  "clip-g",          "t5",    "ae",     "tokenizers"};
    return names;
}

core::TextSettings readText(const Arguments& options) {
    core::TextSettings text;
    text.prompt = options.text("prompt", "");
    text.negativePrompt = options.text("negative-prompt", "");
    text.width = static_cast<int>(options.integer("width", 0, 16, 4096));
    text.height = static_cast<int>(options.integer("height", 0, 16, 4096));
    for (const auto& [name, value] : {std::pair{"width", text.width}, std::pair{"height", text.height}}) {
        if (value % 16 != 0) {
            throw UsageError(std::string("--") + name + " must be a multiple of 16 (the networks take 2x2 patches of their "
                             "1/8-size latents); try " + std::to_string((value + 8) / 16 * 16));
        }
    }
    if (options.has("width") != options.has("height") && options.has("resolution")) {
        throw UsageError("give --width and --height, or --resolution R for R x R, not both");
    }
    text.fluxGuidance = options.number("flux-guidance", text.fluxGuidance);
    if (!(text.fluxGuidance >= 0.0) || !std::isfinite(text.fluxGuidance)) {
        throw UsageError("--flux-guidance must be a finite number of at least 0 (FLUX.1 [dev]'s default is 3.5)");
    }
    text.clipL = options.text("clip-l", "");
    text.clipG = options.text("clip-g", "");
    text.t5 = options.text("t5", "");
    text.autoencoder = options.text("ae", "");
    text.tokenizers = options.text("tokenizers", "");
    return text;
}

void applyCheckpointDefaults(const Arguments& options, const std::string& model, std::string* schedule, int* steps,
                             core::GuidanceSettings* guidance) {
    std::string path;
    if (!core::specHasForm(model, core::SpecForm::Checkpoint, &path)) {
        for (const char* name : {"prompt", "negative-prompt", "flux-guidance", "clip-l", "clip-g", "t5", "ae", "tokenizers"}) {
            if (options.has(name)) {
                throw UsageError(std::string("--") + name + " applies to text-to-image checkpoints (--model checkpoint:PATH)");
            }
        }
        return;
    }
    const core::CheckpointInfo info = core::inspectCheckpoint(path, readText(options));
    if (schedule && !options.has("schedule")) *schedule = info.defaultSchedule;
    if (steps && !options.has("steps")) *steps = info.defaultSteps;
    // SD3's card guides with classifier-free guidance at its scale, unless the command line names
    // a scale (--cfg, --cfgs) or a method; the other guidance options keep the card's scale.
    if (guidance && info.defaultCfg != 1.0 && !options.has("cfg") && !options.has("cfgs")) {
        if (!options.has("guidance")) guidance->method = core::GuidanceMethod::Cfg;
        if (guidance->method != core::GuidanceMethod::None) guidance->scale = info.defaultCfg;
    }
}

int runCheckpointInfo(const Arguments& options) {
    const std::string path = checkpointPath(options, "info");
    const core::CheckpointInfo info = core::inspectCheckpoint(path, readText(options));
    const std::string device = options.text("device", "auto");
    if (device != "auto" && device != "cpu" && device != "cuda") {
        throw UsageError("--device must be auto, cpu or cuda; got '" + device + "'");
    }
    const core::CheckpointMemory memory = core::estimateCheckpointMemory(info, 0.0, device);
    if (options.has("json")) {
        printInfoJson(info, memory);
    } else {
        printInfoText(path, info, memory);
    }
    return kExitOk;
}

int runTokenize(const std::vector<std::string>& args) {
    const Arguments options(args, {"tokenizers", "prompt", "t5-length"}, {"json"});
    if (!options.has("tokenizers")) throw UsageError("tokenize needs --tokenizers DIR (a model folder or one holding tokenizer/)");
    if (!options.has("prompt")) throw UsageError("tokenize needs --prompt TEXT");
    const std::string prompt = options.text("prompt", "");
    const int length = static_cast<int>(options.integer("t5-length", 256, 2, 4096));
    const auto tokens = core::tokenizePrompt(options.text("tokenizers", ""), prompt, length);
    if (options.has("json")) {
        core::JsonWriter json;
        json.beginObject();
        for (const auto& entry : tokens) writeTokens(json, entry);
        json.endObject();
        std::cout << json.str() << "\n";
        return kExitOk;
    }
    for (const auto& entry : tokens) printTokens(entry, prompt);
    return kExitOk;
}

int runEncodePrompt(const std::vector<std::string>& args, const std::atomic<bool>& cancel) {
    const Arguments options(args, withText({"model", "out", "device"}), {"json"});
    const std::string path = checkpointPath(options, "encode-prompt");
    const auto out = options.optionalText("out");
    if (!out) throw UsageError("encode-prompt needs --out cond.safetensors");
    if (!options.has("prompt")) throw UsageError("encode-prompt needs --prompt TEXT (\"\" for the empty prompt)");
    checkWritable(out, "out");
    checkExtension(out, "out", {".safetensors"});
    const core::TextSettings text = readText(options);
    const auto result = core::encodePromptToFile(path, text, *out, options.text("device", "auto"), &cancel);
    if (options.has("json")) {
        core::JsonWriter json;
        json.beginObject();
        json.field("out", *out);
        for (const auto& [name, shape] : result.shapes) json.field(name + "_shape", shape);
        json.key("tokens");
        json.beginObject();
        for (const auto& entry : result.tokens) writeTokens(json, entry);
        json.endObject();
        json.field("seconds", result.seconds);
        json.endObject();
        std::cout << json.str() << "\n";
        return kExitOk;
    }
    for (const auto& entry : result.tokens) {
        std::cout << entry.tokenizer << ": " << entry.keptTokens << "/" << entry.limit << " tokens" << (entry.cut ? " (cut)" : "")
                  << "\n";
    }
    std::cout << "wrote " << *out << "\n";
    return kExitOk;
}

int runForward(const std::vector<std::string>& args, const std::atomic<bool>& cancel) {
    const Arguments options(args, withText({"model", "x", "sigma", "cond", "out", "device"}), {});
    const std::string path = checkpointPath(options, "forward");
    for (const char* name : {"x", "sigma", "cond", "out"}) {
        if (!options.has(name)) throw UsageError(std::string("forward needs --") + name);
    }
    const auto out = options.optionalText("out");
    checkWritable(out, "out");
    checkExtension(out, "out", {".npy"});
    const double sigma = options.number("sigma", 1.0);
    if (!(sigma > 0.0 && sigma <= 1.0)) {
        throw UsageError("--sigma must lie in (0, 1]: 1 is pure noise, and the networks are not evaluated at sigma = 0");
    }
    const core::HostArray x = core::readNpyArray(options.text("x", ""));
    const double guidance = options.number("flux-guidance", 3.5);
    const core::HostArray result = core::checkpointForward(path, readText(options), x, sigma,
                                                           options.text("cond", ""), guidance,
                                                           options.text("device", "auto"), &cancel);
    core::writeNpyArray(*out, result);
    return kExitOk;
}

int runDecode(const std::vector<std::string>& args, const std::atomic<bool>& cancel) {
    const Arguments options(args, withText({"model", "latents", "save-decoded", "out", "device"}), {});
    const std::string path = checkpointPath(options, "decode");
    if (!options.has("latents")) throw UsageError("decode needs --latents z.npy");
    const auto saveDecoded = options.optionalText("save-decoded");
    const auto out = options.optionalText("out");
    if (!saveDecoded && !out) throw UsageError("decode needs --save-decoded img.npy and/or --out img.png");
    checkWritable(saveDecoded, "save-decoded");
    checkWritable(out, "out");
    checkExtension(saveDecoded, "save-decoded", {".npy"});
    checkExtension(out, "out", {".png"});
    checkDistinct({{"save-decoded", saveDecoded}, {"out", out}});
    const core::HostArray z = core::readNpyArray(options.text("latents", ""));
    const core::HostArray images = core::decodeCheckpointLatents(path, readText(options), z, options.text("device", "auto"), &cancel);
    if (saveDecoded) core::writeNpyArray(*saveDecoded, images);
    if (out) media::writePng(*out, media::makeImageGrid(images));
    return kExitOk;
}

}  // namespace flowscope::app
