#pragma once

#include <string>

namespace flowscope::core {

// What a run is conditioned on besides a class: a text-to-image checkpoint's prompt and parts
// (FLUX.1, SD3; `checkpoint:PATH` models), or the conditioning tensors of a bundle's network.
// Other models refuse a prompt and conditioning files, and ignore the rest.
struct TextSettings {
    std::string prompt;
    // SD3's negative prompt: the unconditional half of classifier-free guidance ("" by default).
    std::string negativePrompt;
    // The image's size in pixels, multiples of 16; 0: the model's default (1024).
    int width = 0;
    int height = 0;
    // FLUX.1 [dev]'s distilled guidance, an input of the network (not classifier-free guidance).
    double fluxGuidance = 3.5;
    // The parts beside a transformer file given alone: the CLIP-L, CLIP-G (SD3) and T5 text
    // encoders, the autoencoder, and a folder holding tokenizer/, tokenizer_2/ (and SD3's
    // tokenizer_3/), or the tokenizer files.
    std::string clipL;
    std::string clipG;
    std::string t5;
    std::string autoencoder;
    std::string tokenizers;
    // TorchScript bundles whose network takes conditioning tensors after time: a .safetensors file
    // of them for this run (--cond; empty: the manifest's "conditioning"), and one for the
    // unconditional half of guidance (--uncond; empty: zeros of the same shapes, or for a bundle
    // with classes the conditional tensors, its class being the condition).
    std::string conditioning;
    std::string unconditioning;

    bool operator==(const TextSettings&) const = default;
};

// The parts of a checkpoint request that decide which files load (a change reloads the model).
inline std::string checkpointPartsKey(const TextSettings& text) {
    return text.clipL + '\n' + text.clipG + '\n' + text.t5 + '\n' + text.autoencoder + '\n' + text.tokenizers;
}

}  // namespace flowscope::core
