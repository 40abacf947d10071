// core/api/Checkpoints.h: a checkpoint's sub-steps, one part at a time.
#include "core/api/Checkpoints.h"

#include <algorithm>
#include <chrono>

#include <torch/torch.h>

#include "core/engine/HostArrays.h"
#include "core/io/RegularFile.h"
#include "core/io/SafeTensors.h"
#include "core/models/Checkpoint.h"
#include "core/models/CheckpointModel.h"
#include "core/models/flux/FluxModel.h"
#include "core/models/mmdit/Sd3Model.h"
#include "core/models/text/ClipTokenizer.h"
#include "core/models/text/T5Tokenizer.h"
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
std::unique_ptr<CheckpointModel> openModel(const std::string& path, const TextSettings& text, const std::string& device) {
    auto model = makeCheckpointModel(findCheckpoint(path, text));
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
    info.sd3 = layout.isSd3();
    std::vector<std::pair<const char*, const CheckpointPart*>> parts = {
        {"transformer", &layout.transformer}, {"autoencoder", &layout.autoencoder}, {"clip_l", &layout.clipL}};
    if (info.sd3) parts.emplace_back("clip_g", &layout.clipG);
    parts.emplace_back("t5", &layout.t5);
    for (const auto& [name, part] : parts) {
        CheckpointInfo::Part entry;
        entry.name = name;
        entry.found = part->found();
        if (entry.found) {
            const Weights weights(part->files, part->prefix, torch::kFloat32, torch::kCPU);
            entry.origin = part->origin;
            entry.files = part->files->paths();
            entry.parameters = weights.parameters();
            entry.float8Parameters = weights.float8Parameters();
            entry.dtypes = weights.storedDtypes();
        }
        info.parts.push_back(std::move(entry));
    }
    info.clipTokenizer = layout.clipVocab.empty() ? "" : layout.clipVocab.substr(0, layout.clipVocab.rfind('/'));
    info.clipGTokenizer = layout.clipGVocab.empty() ? "" : layout.clipGVocab.substr(0, layout.clipGVocab.rfind('/'));
    info.t5Tokenizer = layout.t5Model;
    const Weights transformer(layout.transformer.files, layout.transformer.prefix, torch::kFloat32, torch::kCPU);
    if (info.sd3) {
        const auto config = sd3::MmditConfig::infer(transformer);
        info.hidden = config.hidden;
        info.heads = config.heads;
        info.headDim = sd3::MmditConfig::kHeadDim;
        info.mlpHidden = config.mlpHidden;
        info.contextWidth = config.contextIn;
        info.pooledWidth = config.pooledIn;
        info.jointBlocks = config.depth;
        info.patch = config.patch;
        info.positionGrid = config.positionGrid;
        info.maxSide = config.maxSide();
        info.qkNorm = config.qkNorm;
        info.selfAttentionBlocks = config.selfAttentionBlocks;
    } else {
        const auto config = flux::FluxConfig::infer(transformer);
        info.hidden = config.hidden;
        info.heads = config.heads;
        info.headDim = config.headDim;
        info.mlpHidden = config.mlpHidden;
        info.contextWidth = config.contextIn;
        info.pooledWidth = config.vectorIn;
        info.doubleBlocks = config.doubleBlocks;
        info.singleBlocks = config.singleBlocks;
        info.guidanceInput = config.guidance;
        info.qkNorm = true;
    }
    const CheckpointLayout::Defaults defaults = layout.defaults();
    info.defaultSchedule = defaults.schedule;
    info.defaultSteps = defaults.steps;
    info.defaultCfg = defaults.cfg;
    info.t5Tokens = defaults.t5Tokens;
    return info;
}

namespace {

// The estimate's line: the peak against the device's capacity, what is free now where that is
// less, and the parts.
std::string describeMemory(const CheckpointMemory& memory, const std::string& encoderName, bool storesFloat8) {
    const double share = memory.gpu ? kGpuMemoryShare : kCpuMemoryShare;
    const bool busy = memory.freeBytes > 0.0 && memory.freeBytes < share * memory.machineBytes;
    const std::string freeNow = busy ? " (only " + describeBytes(memory.freeBytes) + " free now)" : std::string();
    const std::string where = !memory.gpu                 ? "this machine's " + describeBytes(memory.machineBytes) + " on the CPU"
                              : memory.machineBytes > 0.0 ? "the GPU's " + describeBytes(memory.machineBytes)
                                                          : std::string("the GPU (its memory unknown)");
    std::string line = "about " + describeBytes(memory.peakBytes) + " of " + where + freeNow + ": the transformer " +
                       describeBytes(memory.transformerBytes) + " in " + memory.transformerDtype;
    if (memory.encoderBytes > 0.0) {
        line += ", text encoders up to " + describeBytes(memory.encoderBytes) + " (" + encoderName + ")" +
                (memory.encodersOnCpu ? " on the CPU" : "");
    }
    if (memory.autoencoderBytes > 0.0) line += ", the autoencoder " + describeBytes(memory.autoencoderBytes);
    return memory.fits ? "Needs " + line
                       : "Does not fit: needs " + line + "; " + CheckpointModel::memoryRemedy(memory.gpu, storesFloat8);
}

}  // namespace

CheckpointMemory estimateCheckpointMemory(const CheckpointInfo& info, double bytes, const std::string& device) {
    CheckpointMemory memory;
    memory.gpu = device == "cuda" || (device == "auto" && cudaAvailable());
    if (bytes > 0.0) {
        memory.machineBytes = bytes;
    } else if (memory.gpu) {
        const DeviceMemory gpu = cudaMemory(0);
        memory.machineBytes = gpu.total;
        memory.freeBytes = gpu.free;
    } else {
        memory.machineBytes = machineMemoryBytes();
        memory.freeBytes = freeMemoryBytes();
    }
    // Against the device's capacity: the parts FlowScope holds itself count as free here.
    const double room = (memory.gpu ? kGpuMemoryShare : kCpuMemoryShare) * memory.machineBytes;
    const double cpuRoom = kCpuMemoryShare * (memory.gpu ? machineMemoryBytes() : memory.machineBytes);
    std::string encoderName;
    bool storesFloat8 = false;
    for (const CheckpointInfo::Part& part : info.parts) {
        if (!part.found) continue;
        const PartSize size{double(part.parameters), double(part.float8Parameters)};
        storesFloat8 = storesFloat8 || (part.name == "transformer" && part.float8Parameters > 0);
        PartPlacement placement = placePart(size, 0.0, room, memory.gpu);
        bool onCpu = false;
        if (memory.gpu && !placement.fits && part.name != "transformer" && part.name != "autoencoder") {
            // A text encoder that does not fit the GPU runs on the CPU, where it fits there.
            const PartPlacement cpu = placePart(size, 0.0, cpuRoom, false);
            if (cpu.fits) {
                placement = cpu;
                onCpu = true;
            }
        }
        if (part.name == "transformer") {
            memory.transformerBytes = placement.bytes;
            memory.transformerDtype = placement.describe();
        } else if (part.name == "autoencoder") {
            memory.autoencoderBytes = placement.bytes;
        } else if (placement.bytes > memory.encoderBytes) {
            memory.encoderBytes = placement.bytes;
            memory.encodersOnCpu = onCpu;
            encoderName = part.name == "t5" ? "T5" : part.name == "clip_g" ? "CLIP-G" : "CLIP-L";
        }
    }
    const double kept = memory.transformerBytes + memory.autoencoderBytes;
    const double encoders = memory.encodersOnCpu ? 0.0 : memory.encoderBytes;
    memory.peakBytes = encoders + memory.transformerBytes <= room ? kept + encoders : std::max(kept, encoders);
    memory.fits = memory.machineBytes <= 0.0 || memory.peakBytes <= room;
    memory.summary = describeMemory(memory, encoderName, storesFloat8);
    return memory;
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
    if (!layout.clipGVocab.empty()) {
        const ClipTokenizer clipG = ClipTokenizer::load(layout.clipGVocab, layout.clipGMerges);
        out.push_back(tokensOf("clip_g", clipG.encode(prompt, 77, clipG.exclamationId()), 75));
    }
    if (!layout.t5Model.empty()) {
        out.push_back(tokensOf("t5", T5Tokenizer::load(layout.t5Model).encode(prompt, t5Length), t5Length - 1));
    }
    if (out.empty()) {
        throw CheckpointError("'" + directory + "' holds no tokenizer: expected tokenizer/vocab.json with tokenizer/merges.txt "
                              "(CLIP), tokenizer_2/ (FLUX.1's T5 or SD3's CLIP-G) and/or tokenizer_3/spiece.model (SD3's T5)");
    }
    return out;
}

}  // namespace

EncodePromptResult encodePromptToFile(const std::string& path, const TextSettings& text, const std::string& outPath,
                                      const std::string& device, const std::atomic<bool>* cancel) {
    c10::InferenceMode inference;
    const auto started = std::chrono::steady_clock::now();
    const auto model = openModel(path, text, device);
    const CheckpointModel::PromptFile file = model->encodePromptFile(text.prompt, cancel);
    writeSafeTensors(outPath, file.tensors, {{"prompt", text.prompt}, {"family", model->name()}});
    EncodePromptResult result;
    for (const auto& entry : file.tokens) result.tokens.push_back(tokensOf(entry.tokenizer, entry.tokens, entry.limit));
    for (const std::string& name : model->conditioningNames()) {
        for (const auto& [tensorName, tensor] : file.tensors) {
            if (tensorName == name) result.shapes.emplace_back(name, tensor.sizes().vec());
        }
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return result;
}

HostArray checkpointForward(const std::string& path, const TextSettings& text, const HostArray& x, double sigma,
                            const std::string& condPath, double guidance, const std::string& device,
                            const std::atomic<bool>* cancel) {
    c10::InferenceMode inference;
    if (!(sigma > 0.0 && sigma <= 1.0)) {
        throw InvalidRequestError("--sigma must lie in (0, 1]: the networks are not evaluated at sigma = 0 (DESIGN.md section 7)");
    }
    if (x.shape.size() != 4) throw InvalidRequestError("--x must hold latents [B, 16, h, w]; it is " + describeShape(x.shape));
    SafeTensorsFile cond;
    try {
        cond = SafeTensorsFile::read(condPath);
    } catch (const SafeTensorsError& error) {
        throw InvalidRequestError(std::string("--cond: ") + error.what());
    }
    const auto model = openModel(path, text, device);
    for (const std::string& name : model->conditioningNames()) {
        if (!cond.contains(name)) {
            throw InvalidRequestError("--cond '" + condPath + "' has no tensor '" + name + "'; write it with encode-prompt for " +
                                      model->name());
        }
    }
    const torch::Tensor latents = fromHostArray(x);
    const torch::Tensor sigmas = torch::full({latents.size(0)}, sigma, torch::kFloat32);
    return toHostArray(model->forwardFromFile(latents, sigmas, cond, guidance, cancel));
}

HostArray decodeCheckpointLatents(const std::string& path, const TextSettings& text, const HostArray& z, const std::string& device,
                                  const std::atomic<bool>* cancel) {
    c10::InferenceMode inference;
    if (z.shape.size() != 4) throw InvalidRequestError("--latents must hold [B, 16, h, w]; it is " + describeShape(z.shape));
    const auto model = openModel(path, text, device);
    return toHostArray(model->decodeLatents(fromHostArray(z), cancel));
}

}  // namespace flowscope::core
