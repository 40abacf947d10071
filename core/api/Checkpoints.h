#pragma once

// The sub-steps of a text-to-image checkpoint (FLUX.1, SD3), one at a time, for `flowscope-cli info`,
// `tokenize`, `encode-prompt`, `forward` and `decode`, and for the window's prompt box. Each loads
// only the parts it needs. Plain types: front ends include this without LibTorch.

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/api/Engine.h"
#include "core/api/TextSettings.h"

namespace flowscope::core {

struct CheckpointInfo {
    std::string family;  // "FLUX.1 [schnell]", "Stable Diffusion 3.5 Medium"
    bool sd3 = false;
    struct Part {
        std::string name;    // transformer, autoencoder, clip_l, clip_g (SD3), t5
        bool found = false;
        std::string origin;  // where it was found, in words
        std::vector<std::string> files;
        int64_t parameters = 0;
        int64_t float8Parameters = 0;     // of those, matrices stored as F8_E4M3 (kept packed where memory requires)
        std::vector<std::string> dtypes;  // as stored
    };
    std::vector<Part> parts;
    std::string clipTokenizer, clipGTokenizer, t5Tokenizer;  // folders/files ("" when not found)
    // The transformer's sizes, read from its shapes.
    int64_t hidden = 0, heads = 0, headDim = 0, mlpHidden = 0, contextWidth = 0, pooledWidth = 0;
    int doubleBlocks = 0, singleBlocks = 0;  // FLUX.1
    bool guidanceInput = false;              // FLUX.1 [dev]
    int jointBlocks = 0;                     // SD3's MMDiT
    int64_t patch = 0, positionGrid = 0, maxSide = 0;
    bool qkNorm = false;
    std::vector<int> selfAttentionBlocks;    // MMDiT-X (3.5 Medium)
    std::string defaultSchedule;  // "flux" for [dev], "shift:1" for [schnell], "shift:3" for SD3
    int defaultSteps = 0;         // 28 for [dev], 4 for [schnell], 28 or 40 for SD3, 4 for Turbo
    double defaultCfg = 1.0;      // SD3's classifier-free guidance scale (1: none)
    int t5Tokens = 0;             // 512 for [dev], 256 for [schnell] and SD3
};
// Throws CheckpointError (an InvalidRequestError) with what is wrong.
CheckpointInfo inspectCheckpoint(const std::string& path, const TextSettings& named = {});

// What a checkpoint's parts need in memory, by the engine's own rule (core/models/PartPlacement.h),
// against the device's capacity: on the CPU each part in float32, or with its float8 matrices
// kept packed, or in bfloat16, where float32 would take more than 80% of the machine's memory; on
// a GPU in bfloat16 (packed float8 where that does not fit) within 90% of its memory. The text
// encoders run one at a time before the transformer (released first when they would not fit
// beside it; on a GPU, run on the CPU where they do not fit it); the transformer and the
// autoencoder stay. What is free now is reported beside it: the load itself weighs that (and the
// activations, left out here as small beside the weights at the sizes users sample).
struct CheckpointMemory {
    double machineBytes = 0.0;     // the capacity weighed against: the machine's memory, or the GPU's
    double freeBytes = 0.0;        // free now (0: not known, or sizes given)
    bool gpu = false;
    double transformerBytes = 0.0;
    std::string transformerDtype;  // "float32", "bfloat16", "float8 (computed in float32)", ...
    double encoderBytes = 0.0;     // the largest text encoder found, as it would be held
    bool encodersOnCpu = false;    // on a GPU: the largest text encoder does not fit it, and runs on the CPU
    double autoencoderBytes = 0.0;
    double peakBytes = 0.0;        // the most held at once on the device
    bool fits = true;
    std::string summary;           // one line for the window and `info`
};
// `bytes` 0: the device's memory (the machine's; the GPU's, unknown without CUDA), with what is
// free now. `device`: "auto" (the GPU where this build and machine have one), "cpu" or "cuda".
CheckpointMemory estimateCheckpointMemory(const CheckpointInfo& info, double bytes = 0.0, const std::string& device = "auto");

struct PromptTokens {
    std::string tokenizer;  // "clip_l", "clip_g", "t5"
    std::vector<int64_t> ids;  // with the start, end and padding tokens
    bool cut = false;
    int promptTokens = 0;  // the prompt's own tokens before the cut
    int keptTokens = 0;
    int limit = 0;         // how many of the prompt's tokens fit
    size_t cutByte = std::string::npos;  // where in the prompt the first dropped token begins
};
// Every tokenizer found under `directory` (a model folder, a folder holding tokenizer/,
// tokenizer_2/ and/or tokenizer_3/, or the tokenizer files themselves). T5 pads to `t5Length`;
// SD3's CLIP-G (tokenizer_2/ with vocab.json) pads with "!".
std::vector<PromptTokens> tokenizePrompt(const std::string& directory, const std::string& prompt, int t5Length = 256);

// encode-prompt: the prompt through the tokenizers and text encoders, written (atomically) as a
// safetensors file holding, for FLUX.1, txt [1, L, D_t5], vec [1, D_clip], clip_l_ids [1, 77] and
// t5_ids [1, L]; for SD3, context [1, 77 + 256, D_t5], pooled [1, 2048], clip_l_ids, clip_g_ids and
// t5_ids (where the checkpoint has T5).
struct EncodePromptResult {
    std::vector<PromptTokens> tokens;
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;  // of the conditioning tensors
    double seconds = 0.0;
};
EncodePromptResult encodePromptToFile(const std::string& path, const TextSettings& text, const std::string& outPath,
                                      const std::string& device = "auto", const std::atomic<bool>* cancel = nullptr);

// forward: the transformer's raw output for latents x [B, 16, h, w] at noise level sigma (SD3's
// MMDiT sees 1000 sigma), with the conditioning of an encode-prompt file (batch 1 applies to every
// sample). `guidance` is FLUX.1 [dev]'s.
HostArray checkpointForward(const std::string& path, const TextSettings& text, const HostArray& x, double sigma,
                            const std::string& condPath, double guidance, const std::string& device = "auto",
                            const std::atomic<bool>* cancel = nullptr);

// Where loads of a checkpoint's parts report their progress (bytes read of all, per part): the
// CLI prints it, the window shows it. Called on the loading thread; empty: none.
using CheckpointLoadObserver = std::function<void(const std::string& part, uint64_t done, uint64_t total)>;
void setCheckpointLoadObserver(CheckpointLoadObserver observer);

// decode: latents in model space [B, 16, h, w] -> images [B, 3, 8h, 8w] in about [-1, 1].
HostArray decodeCheckpointLatents(const std::string& path, const TextSettings& text, const HostArray& z,
                                  const std::string& device = "auto", const std::atomic<bool>* cancel = nullptr);

}  // namespace flowscope::core
