#pragma once

#include <string>

namespace flowscope::core {

// What a text-to-image checkpoint (FLUX.1, SD3; `checkpoint:PATH` models) takes besides the
// sampling settings. Other models refuse a prompt and ignore the rest.
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

    bool operator==(const TextSettings&) const = default;
};

// The parts of a checkpoint request that decide which files load (a change reloads the model).
inline std::string checkpointPartsKey(const TextSettings& text) {
    return text.clipL + '\n' + text.clipG + '\n' + text.t5 + '\n' + text.autoencoder + '\n' + text.tokenizers;
}

}  // namespace flowscope::core
