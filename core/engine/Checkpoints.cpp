// core/api/Checkpoints.h: a checkpoint's sub-steps, one part at a time.
#include "core/api/Checkpoints.h"

#include <chrono>

#include <torch/torch.h>

#include "core/engine/HostArrays.h"
#include "core/io/SafeTensors.h"
#include "core/models/Checkpoint.h"
#include "core/models/flux/FluxModel.h"
#include "core/sampling/Device.h"

namespace flowscope::core {
namespace {

PromptTokens tokensOf(const std::string& name, const TokenizedPrompt& tokens, int limit) {
    PromptTokens out;
    out.tokenizer = name;
    out.ids = tokens.ids;
    out.cut = tokens.cut;
    out.promptTokens = tokens.promptTokens;
    out.keptTokens = tokens.keptTokens;
    out.limit = limit;
    out.cutByte = tokens.cutByte;
    return out;
}

// The checkpoint's model on the request's device, found with the parts named beside it.
std::unique_ptr<flux::FluxModel> openModel(const std::string& path, const TextSettings& text, const std::string& device) {
    auto model = std::make_unique<flux::FluxModel>(findCheckpoint(path, text));
    model->prepare(resolveDevice(device), torch::kFloat32);
    return model;
}

// Every tokenizer under `directory` (tokenizePrompt without its error translation).
std::vector<PromptTokens> tokenizeIn(const std::string& directory, const std::string& prompt, int t5Length);

}  // namespace

void setCheckpointLoadObserver(CheckpointLoadObserver observer) { setLoadObserver(std::move(observer)); }

CheckpointInfo inspectCheckpoint(const std::string& path, const TextSettings& named) {
    const CheckpointLayout layout = findCheckpoint(path, named);
    CheckpointInfo info;
    info.family = layout.familyName();
    const std::pair<const char*, const CheckpointPart*> parts[] = {
        {"transformer", &layout.transformer}, {"autoencoder", &layout.autoencoder}, {"clip_l", &layout.clipL}, {"t5", &layout.t5}};
    for (const auto& [name, part] : parts) {
        CheckpointInfo::Part entry;
        entry.name = name;
        entry.found = part->found();
        if (entry.found) {
            const Weights weights(part->files, part->prefix, torch::kFloat32, torch::kCPU);
            entry.origin = part->origin;
            entry.files = part->files->paths();
            entry.parameters = weights.parameters();
            entry.dtypes = weights.storedDtypes();
        }
        info.parts.push_back(std::move(entry));
    }
    info.clipTokenizer = layout.clipVocab.empty() ? "" : layout.clipVocab.substr(0, layout.clipVocab.rfind('/'));
    info.t5Tokenizer = layout.t5Model;
    const auto config = flux::FluxConfig::infer(Weights(layout.transformer.files, layout.transformer.prefix, torch::kFloat32, torch::kCPU));
    info.hidden = config.hidden;
    info.heads = config.heads;
    info.headDim = config.headDim;
    info.mlpHidden = config.mlpHidden;
    info.contextWidth = config.contextIn;
    info.pooledWidth = config.vectorIn;
    info.doubleBlocks = config.doubleBlocks;
    info.singleBlocks = config.singleBlocks;
    info.guidanceInput = config.guidance;
    const bool dev = layout.family == CheckpointLayout::Family::Flux1Dev;
    info.defaultSchedule = dev ? "flux" : "shift:1";
    info.defaultSteps = dev ? 28 : 4;
    info.t5Tokens = dev ? 512 : 256;
    return info;
}

std::vector<PromptTokens> tokenizePrompt(const std::string& directory, const std::string& prompt, int t5Length) {
    try {
        return tokenizeIn(directory, prompt, t5Length);
    } catch (const TokenizerError& error) {
        throw CheckpointError(error.what());  // a tokenizer file that cannot be used: a refused request
    }
}

namespace {

std::vector<PromptTokens> tokenizeIn(const std::string& directory, const std::string& prompt, int t5Length) {
    CheckpointLayout layout;
    layout.path = directory;
    findTokenizers(directory, layout);
    std::vector<PromptTokens> out;
    if (!layout.clipVocab.empty()) {
        out.push_back(tokensOf("clip_l", ClipTokenizer::load(layout.clipVocab, layout.clipMerges).encode(prompt, 77), 75));
    }
    if (!layout.t5Model.empty()) {
        out.push_back(tokensOf("t5", T5Tokenizer::load(layout.t5Model).encode(prompt, t5Length), t5Length - 1));
    }
    if (out.empty()) {
        throw CheckpointError("'" + directory + "' holds no tokenizer: expected tokenizer/vocab.json with tokenizer/merges.txt "
                              "(CLIP) and/or tokenizer_2/spiece.model (T5)");
    }
    return out;
}

}  // namespace

EncodePromptResult encodePromptToFile(const std::string& path, const TextSettings& text, const std::string& outPath,
                                      const std::string& device, const std::atomic<bool>* cancel) {
    c10::InferenceMode inference;
    const auto started = std::chrono::steady_clock::now();
    const auto model = openModel(path, text, device);
    const auto encoded = model->encodePrompt(text.prompt, cancel);
    writeSafeTensors(outPath, {{"txt", encoded.txt.contiguous()},
                               {"vec", encoded.vec.contiguous()},
                               {"clip_l_ids", encoded.clipIds},
                               {"t5_ids", encoded.t5Ids}},
                     {{"prompt", text.prompt}, {"family", model->name()}});
    EncodePromptResult result;
    result.tokens = {tokensOf("clip_l", encoded.clip, 75), tokensOf("t5", encoded.t5, model->t5Length() - 1)};
    result.txtShape = encoded.txt.sizes().vec();
    result.vecShape = encoded.vec.sizes().vec();
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return result;
}

HostArray checkpointForward(const std::string& path, const TextSettings& text, const HostArray& x, double sigma,
                            const std::string& condPath, double guidance, const std::string& device,
                            const std::atomic<bool>* cancel) {
    c10::InferenceMode inference;
    if (!(sigma > 0.0 && sigma <= 1.0)) {
        throw InvalidRequestError("--sigma must lie in (0, 1]: FLUX.1 is not evaluated at sigma = 0 (DESIGN.md section 7)");
    }
    if (x.shape.size() != 4) throw InvalidRequestError("--x must hold latents [B, 16, h, w]; it is " + describeShape(x.shape));
    SafeTensorsFile cond;
    try {
        cond = SafeTensorsFile::read(condPath);
    } catch (const SafeTensorsError& error) {
        throw InvalidRequestError(std::string("--cond: ") + error.what());
    }
    for (const char* name : {"txt", "vec"}) {
        if (!cond.contains(name)) {
            throw InvalidRequestError("--cond '" + condPath + "' has no tensor '" + name + "'; write it with encode-prompt");
        }
    }
    const auto model = openModel(path, text, device);
    const torch::Tensor latents = fromHostArray(x);
    const torch::Tensor sigmas = torch::full({latents.size(0)}, sigma, torch::kFloat32);
    return toHostArray(model->forwardRaw(latents, sigmas, cond.tensor("txt").to(torch::kFloat32),
                                         cond.tensor("vec").to(torch::kFloat32), guidance, cancel));
}

HostArray decodeCheckpointLatents(const std::string& path, const TextSettings& text, const HostArray& z, const std::string& device,
                                  const std::atomic<bool>* cancel) {
    c10::InferenceMode inference;
    if (z.shape.size() != 4) throw InvalidRequestError("--latents must hold [B, 16, h, w]; it is " + describeShape(z.shape));
    const auto model = openModel(path, text, device);
    return toHostArray(model->decodeLatents(fromHostArray(z), cancel));
}

}  // namespace flowscope::core
