#include "core/models/Checkpoint.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>

namespace flowscope::core {
namespace fs = std::filesystem;

namespace {

bool isFile(const fs::path& path) {
    std::error_code error;
    return fs::is_regular_file(path, error);
}

bool isFolder(const fs::path& path) {
    std::error_code error;
    return fs::is_directory(path, error);
}

// A Hugging Face part folder's weights: its shard index, or its single file.
std::vector<std::string> partFolderFiles(const fs::path& folder) {
    for (const char* name : {"model.safetensors.index.json", "model.safetensors"}) {
        if (isFile(folder / name)) return {(folder / name).string()};
    }
    return {};
}

CheckpointPart openPart(const std::vector<std::string>& files, std::string prefix, std::string origin) {
    CheckpointPart part;
    if (files.empty()) return part;
    part.files = WeightFiles::open(files);
    part.prefix = std::move(prefix);
    part.origin = std::move(origin);
    return part;
}

// A few of a file's keys, for a message about what it holds.
std::string sampleKeys(const WeightFiles& files) {
    const auto names = files.names();
    std::string text;
    for (size_t i = 0; i < names.size() && i < 4; ++i) text += (i ? ", " : "") + names[i];
    if (names.size() > 4) text += ", ... (" + std::to_string(names.size()) + " tensors)";
    return names.empty() ? "no tensors" : text;
}

bool hasFluxTransformer(const WeightFiles& files, const std::string& prefix) {
    return files.hasPrefix(prefix + "double_blocks.") || files.hasPrefix(prefix + "single_blocks.");
}

bool hasMmdit(const WeightFiles& files, const std::string& prefix) { return files.hasPrefix(prefix + "joint_blocks."); }

// Where a file holds a transformer of a known family: "model.diffusion_model." (the original SD3
// files, ComfyUI's single files) or "" (a transformer file alone); false when it holds none.
bool transformerPrefix(const WeightFiles& files, std::string* prefix) {
    for (const char* candidate : {"model.diffusion_model.", ""}) {
        if (hasFluxTransformer(files, candidate) || hasMmdit(files, candidate)) {
            *prefix = candidate;
            return true;
        }
    }
    return false;
}

// The transformer file of a model folder: the .safetensors at its top holding a transformer.
std::string folderTransformer(const fs::path& folder) {
    std::vector<std::string> candidates;
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(folder, error)) {
        const fs::path path = entry.path();
        if (path.extension() != ".safetensors" || path.filename() == "ae.safetensors" || !isFile(path)) continue;
        candidates.push_back(path.string());
    }
    std::sort(candidates.begin(), candidates.end());
    for (const std::string& candidate : candidates) {
        std::string prefix;
        if (transformerPrefix(*WeightFiles::open({candidate}), &prefix)) return candidate;
    }
    if (isFolder(folder / "transformer")) {
        throw CheckpointError("'" + folder.string() + "' holds the transformer only in the diffusers layout (transformer/); "
                              "FlowScope reads the original file that the same repository has at its top "
                              "(flux1-schnell.safetensors, flux1-dev.safetensors, sd3.5_medium.safetensors, ...)");
    }
    throw CheckpointError("'" + folder.string() + "' has no transformer FlowScope knows: no .safetensors file at its top holds "
                          "double_blocks.* (FLUX.1: flux1-schnell.safetensors or flux1-dev.safetensors) or joint_blocks.* "
                          "(Stable Diffusion 3: sd3_medium.safetensors, sd3.5_large.safetensors, ...)");
}

// A text encoder kept in a single file under text_encoders.NAME. (ComfyUI writes
// text_encoders.NAME.transformer.); not found when the file has neither.
CheckpointPart embeddedEncoder(const std::shared_ptr<const WeightFiles>& files, const std::string& name,
                               const std::string& marker) {
    for (const std::string& prefix : {"text_encoders." + name + ".transformer.", "text_encoders." + name + "."}) {
        if (files->hasPrefix(prefix + marker)) return {files, prefix, "the checkpoint file (text_encoders." + name + ".)"};
    }
    return {};
}

// The first of `names` that is a file in `folder` ("" for none).
std::string firstFile(const fs::path& folder, std::initializer_list<const char*> names) {
    for (const char* name : names) {
        if (isFile(folder / name)) return (folder / name).string();
    }
    return "";
}

// SD3's T5 in text_encoders/: t5xxl_fp16.safetensors, or another t5xxl*.safetensors (fp8, fp32).
std::string sd3T5File(const fs::path& folder) {
    if (const std::string named = firstFile(folder, {"t5xxl_fp16.safetensors", "t5xxl.safetensors"}); !named.empty()) return named;
    std::vector<std::string> found;
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(folder, error)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind("t5xxl", 0) == 0 && entry.path().extension() == ".safetensors" && isFile(entry.path())) {
            found.push_back(entry.path().string());
        }
    }
    std::sort(found.begin(), found.end());
    return found.empty() ? "" : found.front();
}

CheckpointLayout::Family sd3Family(const WeightFiles& files, const std::string& prefix, const std::string& path) {
    bool selfAttention = false;
    for (const std::string& name : files.names()) {
        if (name.rfind(prefix + "joint_blocks.", 0) == 0 && name.find(".x_block.attn2.") != std::string::npos) {
            selfAttention = true;
            break;
        }
    }
    using Family = CheckpointLayout::Family;
    if (selfAttention) return Family::Sd35Medium;  // MMDiT-X
    if (!files.find(prefix + "joint_blocks.0.x_block.attn.ln_q.weight")) return Family::Sd3Medium;
    // 3.5 Large and Large Turbo have the same shapes: the file's name tells them apart.
    std::string file = fs::path(path).filename().string();
    std::transform(file.begin(), file.end(), file.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return file.find("turbo") != std::string::npos ? Family::Sd35LargeTurbo : Family::Sd35Large;
}

// The parts an SD3 model folder keeps beside its file: text_encoders/ (the original layout) or
// the transformers folders text_encoder/, text_encoder_2/, text_encoder_3/.
void findSd3FolderParts(const fs::path& folder, CheckpointLayout& layout) {
    const fs::path encoders = folder / "text_encoders";
    if (!layout.clipL.found()) {
        if (const std::string file = firstFile(encoders, {"clip_l.safetensors"}); !file.empty()) {
            layout.clipL = openPart({file}, "", "text_encoders/clip_l.safetensors");
        } else {
            layout.clipL = openPart(partFolderFiles(folder / "text_encoder"), "", "text_encoder/");
        }
    }
    if (!layout.clipG.found()) {
        if (const std::string file = firstFile(encoders, {"clip_g.safetensors"}); !file.empty()) {
            layout.clipG = openPart({file}, "", "text_encoders/clip_g.safetensors");
        } else {
            layout.clipG = openPart(partFolderFiles(folder / "text_encoder_2"), "", "text_encoder_2/");
        }
    }
    if (!layout.t5.found()) {
        if (const std::string file = sd3T5File(encoders); !file.empty()) {
            layout.t5 = openPart({file}, "", "text_encoders/" + fs::path(file).filename().string());
        } else {
            layout.t5 = openPart(partFolderFiles(folder / "text_encoder_3"), "", "text_encoder_3/");
        }
    }
}

// The parts a single checkpoint file holds besides its transformer.
void findEmbeddedParts(const std::shared_ptr<const WeightFiles>& files, CheckpointLayout& layout) {
    for (const char* prefix : {"vae.", "first_stage_model."}) {
        if (!layout.autoencoder.found() && files->hasPrefix(std::string(prefix) + "decoder.")) {
            layout.autoencoder = {files, prefix, std::string("the checkpoint file (") + prefix + ")"};
        }
    }
    layout.clipL = embeddedEncoder(files, "clip_l", "text_model.");
    layout.clipG = embeddedEncoder(files, "clip_g", "text_model.");
    layout.t5 = embeddedEncoder(files, "t5xxl", "encoder.");
}

}  // namespace

std::string CheckpointLayout::familyName() const {
    switch (family) {
        case Family::Flux1Schnell: return "FLUX.1 [schnell]";
        case Family::Flux1Dev: return "FLUX.1 [dev]";
        case Family::Sd3Medium: return "Stable Diffusion 3 Medium";
        case Family::Sd35Medium: return "Stable Diffusion 3.5 Medium";
        case Family::Sd35Large: return "Stable Diffusion 3.5 Large";
        case Family::Sd35LargeTurbo: return "Stable Diffusion 3.5 Large Turbo";
    }
    return "?";
}

CheckpointLayout::Defaults CheckpointLayout::defaults() const {
    switch (family) {
        case Family::Flux1Schnell: return {"shift:1", 4, 1.0, 256};
        case Family::Flux1Dev: return {"flux", 28, 1.0, 512};
        case Family::Sd3Medium: return {"shift:3", 28, 5.0, 256};
        case Family::Sd35Medium: return {"shift:3", 40, 5.0, 256};
        case Family::Sd35Large: return {"shift:3", 28, 4.5, 256};
        case Family::Sd35LargeTurbo: return {"shift:3", 4, 1.0, 256};
    }
    return {};
}

const CheckpointPart& CheckpointLayout::require(const CheckpointPart& part, const std::string& what) const {
    if (part.found()) return part;
    std::string where;
    const bool sd3 = isSd3();
    if (&part == &autoencoder) {
        where = sd3 ? "first_stage_model.* in the checkpoint file, or --ae FILE" : "ae.safetensors in the model folder, or --ae FILE";
    }
    if (&part == &clipL) {
        where = sd3 ? "text_encoders/clip_l.safetensors in the model folder, or --clip-l FILE"
                    : "text_encoder/ in the model folder, or --clip-l FILE (clip_l.safetensors)";
    }
    if (&part == &clipG) where = "text_encoders/clip_g.safetensors in the model folder, or --clip-g FILE";
    if (&part == &t5) {
        where = sd3 ? "text_encoders/t5xxl_fp16.safetensors in the model folder, or --t5 FILE"
                    : "text_encoder_2/ in the model folder, or --t5 FILE (t5xxl_fp16.safetensors)";
    }
    throw CheckpointError("'" + path + "' lacks " + what + ": give " + where);
}

void CheckpointLayout::requireTokenizers() const {
    if (clipVocab.empty() || clipMerges.empty()) {
        throw CheckpointError("'" + path + "' lacks CLIP's tokenizer (tokenizer/vocab.json and tokenizer/merges.txt): "
                              "give --tokenizers DIR with the model folder that has them");
    }
    if (t5Model.empty() && (!isSd3() || t5.found())) {
        throw CheckpointError("'" + path + "' lacks T5's tokenizer (" + (isSd3() ? "tokenizer_3" : "tokenizer_2") +
                              "/spiece.model): give --tokenizers DIR with the model folder that has it");
    }
}

void findTokenizers(const std::string& directory, CheckpointLayout& layout) {
    const fs::path dir(directory);
    for (const fs::path& folder : {dir / "tokenizer", dir}) {
        if (layout.clipVocab.empty() && isFile(folder / "vocab.json") && isFile(folder / "merges.txt")) {
            layout.clipVocab = (folder / "vocab.json").string();
            layout.clipMerges = (folder / "merges.txt").string();
        }
    }
    if (layout.clipGVocab.empty() && isFile(dir / "tokenizer_2" / "vocab.json") && isFile(dir / "tokenizer_2" / "merges.txt")) {
        layout.clipGVocab = (dir / "tokenizer_2" / "vocab.json").string();
        layout.clipGMerges = (dir / "tokenizer_2" / "merges.txt").string();
    }
    for (const fs::path& folder : {dir / "tokenizer_2", dir / "tokenizer_3", dir}) {
        if (layout.t5Model.empty() && isFile(folder / "spiece.model")) layout.t5Model = (folder / "spiece.model").string();
    }
}

CheckpointLayout findCheckpoint(const std::string& path, const TextSettings& named) {
    CheckpointLayout layout;
    layout.path = path;
    const fs::path given(path);
    std::string transformerFile;
    if (isFolder(given)) {
        transformerFile = folderTransformer(given);
        const auto files = WeightFiles::open({transformerFile});
        std::string prefix;
        transformerPrefix(*files, &prefix);
        layout.transformer = {files, prefix, "the model folder's " + fs::path(transformerFile).filename().string()};
        if (hasMmdit(*files, prefix)) {
            // SD3: the file may hold the autoencoder and text encoders; the folder has the rest.
            findEmbeddedParts(files, layout);
            findSd3FolderParts(given, layout);
        } else {
            if (isFile(given / "ae.safetensors")) {
                layout.autoencoder = openPart({(given / "ae.safetensors").string()}, "", "ae.safetensors");
            }
            layout.clipL = openPart(partFolderFiles(given / "text_encoder"), "", "text_encoder/");
            layout.t5 = openPart(partFolderFiles(given / "text_encoder_2"), "", "text_encoder_2/");
        }
        findTokenizers(path, layout);
    } else if (isFile(given)) {
        transformerFile = path;
        const auto files = WeightFiles::open({path});
        std::string prefix;
        if (!transformerPrefix(*files, &prefix)) {
            throw CheckpointError("'" + path + "' matches no model family FlowScope knows: it holds " + sampleKeys(*files) +
                                  "; a FLUX.1 transformer has double_blocks.* and single_blocks.*, a Stable Diffusion 3 "
                                  "one joint_blocks.* (either also under model.diffusion_model.)");
        }
        layout.transformer = {files, prefix, prefix.empty() ? "the transformer file" : "the checkpoint file (" + prefix + ")"};
        if (!prefix.empty()) findEmbeddedParts(files, layout);
        // Tokenizers kept beside the file, as a model folder keeps them.
        findTokenizers(given.parent_path().string(), layout);
    } else {
        throw CheckpointError("'" + path + "' is neither a model folder nor a .safetensors file");
    }
    if (!named.autoencoder.empty()) layout.autoencoder = openPart({named.autoencoder}, "", "--ae");
    if (!named.clipL.empty()) layout.clipL = openPart({named.clipL}, "", "--clip-l");
    if (!named.clipG.empty()) layout.clipG = openPart({named.clipG}, "", "--clip-g");
    if (!named.t5.empty()) layout.t5 = openPart({named.t5}, "", "--t5");
    if (!named.tokenizers.empty()) {
        if (!isFolder(named.tokenizers)) throw CheckpointError("--tokenizers '" + named.tokenizers + "' is not a folder");
        layout.clipVocab.clear();
        layout.clipMerges.clear();
        layout.clipGVocab.clear();
        layout.clipGMerges.clear();
        layout.t5Model.clear();
        findTokenizers(named.tokenizers, layout);
    }
    const WeightFiles& transformer = *layout.transformer.files;
    if (hasMmdit(transformer, layout.transformer.prefix)) {
        layout.family = sd3Family(transformer, layout.transformer.prefix, transformerFile);
    } else {
        layout.family = transformer.find(layout.transformer.prefix + "guidance_in.in_layer.weight")
                            ? CheckpointLayout::Family::Flux1Dev
                            : CheckpointLayout::Family::Flux1Schnell;
    }
    // A part that is there but not what its place says: refused with the key it lacks.
    if (layout.autoencoder.found() && !layout.autoencoder.files->find(layout.autoencoder.prefix + "decoder.conv_in.weight")) {
        throw CheckpointError("the autoencoder from " + layout.autoencoder.origin + " lacks '" + layout.autoencoder.prefix +
                              "decoder.conv_in.weight'; it holds " + sampleKeys(*layout.autoencoder.files));
    }
    for (const CheckpointPart* clip : {&layout.clipL, &layout.clipG}) {
        if (clip->found() && !clip->files->find(clip->prefix + "text_model.embeddings.token_embedding.weight")) {
            throw CheckpointError("the CLIP text encoder from " + clip->origin + " lacks '" + clip->prefix +
                                  "text_model.embeddings.token_embedding.weight'; it holds " + sampleKeys(*clip->files));
        }
    }
    if (layout.t5.found() && !layout.t5.files->find(layout.t5.prefix + "shared.weight") &&
        !layout.t5.files->find(layout.t5.prefix + "encoder.embed_tokens.weight")) {
        throw CheckpointError("the T5 encoder from " + layout.t5.origin + " lacks '" + layout.t5.prefix +
                              "shared.weight' (or encoder.embed_tokens.weight); it holds " + sampleKeys(*layout.t5.files));
    }
    return layout;
}

}  // namespace flowscope::core
