#include "core/models/Checkpoint.h"

#include <algorithm>
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

// The prefix under which `files` hold a FLUX.1 transformer ("" or ComfyUI's), or nullopt.
bool hasFluxTransformer(const WeightFiles& files, const std::string& prefix) {
    return files.hasPrefix(prefix + "double_blocks.") || files.hasPrefix(prefix + "single_blocks.");
}

// The transformer file of a model folder: the .safetensors at its top holding double_blocks.
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
        if (hasFluxTransformer(*WeightFiles::open({candidate}), "")) return candidate;
    }
    if (isFolder(folder / "transformer")) {
        throw CheckpointError("'" + folder.string() + "' holds the transformer only in the diffusers layout (transformer/); "
                              "FlowScope reads the original file (flux1-schnell.safetensors or flux1-dev.safetensors) "
                              "that the same repository has at its top");
    }
    throw CheckpointError("'" + folder.string() + "' has no FLUX.1 transformer: no .safetensors file at its top holds "
                          "double_blocks.* (expected flux1-schnell.safetensors or flux1-dev.safetensors)");
}

}  // namespace

std::string CheckpointLayout::familyName() const {
    return family == Family::Flux1Dev ? "FLUX.1 [dev]" : "FLUX.1 [schnell]";
}

const CheckpointPart& CheckpointLayout::require(const CheckpointPart& part, const std::string& what) const {
    if (part.found()) return part;
    std::string where;
    if (&part == &autoencoder) where = "ae.safetensors in the model folder, or --ae FILE";
    if (&part == &clipL) where = "text_encoder/ in the model folder, or --clip-l FILE (clip_l.safetensors)";
    if (&part == &t5) where = "text_encoder_2/ in the model folder, or --t5 FILE (t5xxl_fp16.safetensors)";
    throw CheckpointError("'" + path + "' lacks " + what + ": give " + where);
}

void CheckpointLayout::requireTokenizers() const {
    if (clipVocab.empty() || clipMerges.empty()) {
        throw CheckpointError("'" + path + "' lacks CLIP's tokenizer (tokenizer/vocab.json and tokenizer/merges.txt): "
                              "give --tokenizers DIR with the model folder that has them");
    }
    if (t5Model.empty()) {
        throw CheckpointError("'" + path + "' lacks T5's tokenizer (tokenizer_2/spiece.model): give --tokenizers DIR "
                              "with the model folder that has it");
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
    for (const fs::path& folder : {dir / "tokenizer_2", dir}) {
        if (layout.t5Model.empty() && isFile(folder / "spiece.model")) layout.t5Model = (folder / "spiece.model").string();
    }
}

CheckpointLayout findCheckpoint(const std::string& path, const TextSettings& named) {
    CheckpointLayout layout;
    layout.path = path;
    const fs::path given(path);
    if (isFolder(given)) {
        layout.transformer = openPart({folderTransformer(given)}, "", "the model folder's transformer file");
        if (isFile(given / "ae.safetensors")) layout.autoencoder = openPart({(given / "ae.safetensors").string()}, "", "ae.safetensors");
        layout.clipL = openPart(partFolderFiles(given / "text_encoder"), "", "text_encoder/");
        layout.t5 = openPart(partFolderFiles(given / "text_encoder_2"), "", "text_encoder_2/");
        findTokenizers(path, layout);
    } else if (isFile(given)) {
        const auto files = WeightFiles::open({path});
        if (hasFluxTransformer(*files, "model.diffusion_model.")) {
            // ComfyUI's all-in-one file.
            layout.transformer = {files, "model.diffusion_model.", "the all-in-one file (model.diffusion_model.)"};
            for (const char* prefix : {"vae.", "first_stage_model."}) {
                if (!layout.autoencoder.found() && files->hasPrefix(std::string(prefix) + "decoder.")) {
                    layout.autoencoder = {files, prefix, std::string("the all-in-one file (") + prefix + ")"};
                }
            }
            if (files->hasPrefix("text_encoders.clip_l.transformer.")) {
                layout.clipL = {files, "text_encoders.clip_l.transformer.", "the all-in-one file (text_encoders.clip_l.)"};
            }
            if (files->hasPrefix("text_encoders.t5xxl.transformer.")) {
                layout.t5 = {files, "text_encoders.t5xxl.transformer.", "the all-in-one file (text_encoders.t5xxl.)"};
            }
        } else if (hasFluxTransformer(*files, "")) {
            layout.transformer = {files, "", "the transformer file"};
        } else {
            throw CheckpointError("'" + path + "' matches no model family FlowScope knows: it holds " + sampleKeys(*files) +
                                  "; a FLUX.1 transformer has double_blocks.* and single_blocks.* (or those under "
                                  "model.diffusion_model. in an all-in-one file)");
        }
        // Tokenizers kept beside the file, as a model folder keeps them.
        findTokenizers(given.parent_path().string(), layout);
    } else {
        throw CheckpointError("'" + path + "' is neither a model folder nor a .safetensors file");
    }
    if (!named.autoencoder.empty()) layout.autoencoder = openPart({named.autoencoder}, "", "--ae");
    if (!named.clipL.empty()) layout.clipL = openPart({named.clipL}, "", "--clip-l");
    if (!named.t5.empty()) layout.t5 = openPart({named.t5}, "", "--t5");
    if (!named.tokenizers.empty()) {
        if (!isFolder(named.tokenizers)) throw CheckpointError("--tokenizers '" + named.tokenizers + "' is not a folder");
        layout.clipVocab.clear();
        layout.clipMerges.clear();
        layout.t5Model.clear();
        findTokenizers(named.tokenizers, layout);
    }
    const WeightFiles& transformer = *layout.transformer.files;
    layout.family = transformer.find(layout.transformer.prefix + "guidance_in.in_layer.weight") ? CheckpointLayout::Family::Flux1Dev
                                                                                                  : CheckpointLayout::Family::Flux1Schnell;
    // A part that is there but not what its place says: refused with the key it lacks.
    if (layout.autoencoder.found() && !layout.autoencoder.files->find(layout.autoencoder.prefix + "decoder.conv_in.weight")) {
        throw CheckpointError("the autoencoder from " + layout.autoencoder.origin + " lacks '" + layout.autoencoder.prefix +
                              "decoder.conv_in.weight'; it holds " + sampleKeys(*layout.autoencoder.files));
    }
    if (layout.clipL.found() &&
        !layout.clipL.files->find(layout.clipL.prefix + "text_model.embeddings.token_embedding.weight")) {
        throw CheckpointError("the CLIP text encoder from " + layout.clipL.origin + " lacks '" + layout.clipL.prefix +
                              "text_model.embeddings.token_embedding.weight'; it holds " + sampleKeys(*layout.clipL.files));
    }
    if (layout.t5.found() && !layout.t5.files->find(layout.t5.prefix + "shared.weight") &&
        !layout.t5.files->find(layout.t5.prefix + "encoder.embed_tokens.weight")) {
        throw CheckpointError("the T5 encoder from " + layout.t5.origin + " lacks '" + layout.t5.prefix +
                              "shared.weight' (or encoder.embed_tokens.weight); it holds " + sampleKeys(*layout.t5.files));
    }
    return layout;
}

}  // namespace flowscope::core
