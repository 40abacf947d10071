#pragma once

// The sub-steps of a text-to-image checkpoint (FLUX.1), one at a time, for `flowscope-cli info`,
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
    std::string family;  // "FLUX.1 [schnell]"
    struct Part {
        std::string name;    // transformer, autoencoder, clip_l, t5
        bool found = false;
        std::string origin;  // where it was found, in words
        std::vector<std::string> files;
        int64_t parameters = 0;
        std::vector<std::string> dtypes;  // as stored
    };
    std::vector<Part> parts;
    std::string clipTokenizer, t5Tokenizer;  // folders/files ("" when not found)
    // The transformer's sizes, read from its shapes.
    int64_t hidden = 0, heads = 0, headDim = 0, mlpHidden = 0, contextWidth = 0, pooledWidth = 0;
    int doubleBlocks = 0, singleBlocks = 0;
    bool guidanceInput = false;
    std::string defaultSchedule;  // "flux" for [dev], "shift:1" for [schnell]
    int defaultSteps = 0;         // 28 for [dev], 4 for [schnell]
    int t5Tokens = 0;             // 512 for [dev], 256 for [schnell]
};
// Throws CheckpointError (an InvalidRequestError) with what is wrong.
CheckpointInfo inspectCheckpoint(const std::string& path, const TextSettings& named = {});

struct PromptTokens {
    std::string tokenizer;  // "clip_l", "t5"
    std::vector<int64_t> ids;  // with the start, end and padding tokens
    bool cut = false;
    int promptTokens = 0;  // the prompt's own tokens before the cut
    int keptTokens = 0;
    int limit = 0;         // how many of the prompt's tokens fit
    size_t cutByte = std::string::npos;  // where in the prompt the first dropped token begins
};
// Every tokenizer found under `directory` (a model folder, a folder holding tokenizer/ and/or
// tokenizer_2/, or the tokenizer files themselves). T5 pads to `t5Length`.
std::vector<PromptTokens> tokenizePrompt(const std::string& directory, const std::string& prompt, int t5Length = 256);

// encode-prompt: the prompt through the tokenizers and text encoders, written (atomically) as a
// safetensors file holding txt [1, L, D_t5], vec [1, D_clip], clip_l_ids [1, 77] and t5_ids [1, L].
struct EncodePromptResult {
    std::vector<PromptTokens> tokens;
    std::vector<int64_t> txtShape, vecShape;
    double seconds = 0.0;
};
EncodePromptResult encodePromptToFile(const std::string& path, const TextSettings& text, const std::string& outPath,
                                      const std::string& device = "auto", const std::atomic<bool>* cancel = nullptr);

// forward: the transformer's raw output for latents x [B, 16, h, w] at noise level sigma, with the
// conditioning of an encode-prompt file (batch 1 applies to every sample).
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
