#pragma once

// Where the parts of a text-to-image checkpoint are, in the layouts users download: a model
// folder (FLUX.1: the original transformer and ae.safetensors at its top, text_encoder/,
// text_encoder_2/, tokenizer/, tokenizer_2/; SD3: the original file such as sd3.5_medium.safetensors
// at its top, text_encoders/clip_l|clip_g|t5xxl*.safetensors, tokenizer/, tokenizer_2/,
// tokenizer_3/), a transformer file alone with the other parts named beside it, or a single file
// holding several parts (model.diffusion_model., vae. or first_stage_model., text_encoders.*).
// Only headers are read here (the files are mapped); the networks load later, part by part.

#include <memory>
#include <string>
#include <vector>

#include "core/api/TextSettings.h"
#include "core/models/Weights.h"

namespace flowscope::core {

struct CheckpointPart {
    std::shared_ptr<const WeightFiles> files;  // null: not found
    std::string prefix;                        // where the part's keys begin in those files
    std::string origin;                        // in words, for `info` and messages
    bool found() const { return files != nullptr; }
};

struct CheckpointLayout {
    enum class Family { Flux1Schnell, Flux1Dev, Sd3Medium, Sd35Medium, Sd35Large, Sd35LargeTurbo };
    std::string path;  // as the user gave it
    Family family = Family::Flux1Schnell;
    CheckpointPart transformer, autoencoder, clipL, clipG, t5;
    // Tokenizer files ("" when not found). CLIP-G's are SD3's tokenizer_2/ (the same vocabulary
    // as CLIP-L's, padded with "!").
    std::string clipVocab, clipMerges, clipGVocab, clipGMerges, t5Model;

    std::string familyName() const;  // "FLUX.1 [schnell]", "Stable Diffusion 3.5 Medium"
    // What the family's model card runs: the schedule, steps, classifier-free guidance scale
    // (1: none) and T5's token count.
    struct Defaults {
        std::string schedule;
        int steps = 0;
        double cfg = 1.0;
        int t5Tokens = 0;
    };
    Defaults defaults() const;
    bool isSd3() const { return family != Family::Flux1Schnell && family != Family::Flux1Dev; }
    // Throws CheckpointError saying where the part was looked for and how to name it.
    const CheckpointPart& require(const CheckpointPart& part, const std::string& what) const;
    void requireTokenizers() const;
};

// Finds the parts of the checkpoint at `path` (a folder or a .safetensors file), with the files
// `named` gives overriding or completing them. Throws CheckpointError when `path` is neither,
// holds no transformer of a known family (the message names the keys found), or a part's file
// is not valid safetensors.
CheckpointLayout findCheckpoint(const std::string& path, const TextSettings& named);

// The tokenizer files under `directory`: DIR/tokenizer/ (CLIP-L), DIR/tokenizer_2/ (T5 for
// FLUX.1, CLIP-G for SD3), DIR/tokenizer_3/ (SD3's T5), or the files themselves in DIR. Sets the
// fields of `layout` it finds.
void findTokenizers(const std::string& directory, CheckpointLayout& layout);

}  // namespace flowscope::core
