#pragma once

// Text-to-image checkpoints from the command line: the prompt and part options every command
// takes (--prompt --negative-prompt --width --height --resolution --flux-guidance --clip-l --clip-g
// --t5 --ae --tokenizers),
// `info --model checkpoint:PATH`, and the sub-steps `tokenize`, `encode-prompt`, `forward` and
// `decode`.

#include <atomic>
#include <set>
#include <string>
#include <vector>

#include "app/cli/Arguments.h"
#include "core/api/Engine.h"

namespace flowscope::app {

// --prompt --negative-prompt --width --height --flux-guidance --clip-l --clip-g --t5 --ae --tokenizers.
const std::set<std::string>& textOptionNames();
// Reads them; --width/--height must be multiples of 16 (1024 by default for checkpoints).
core::TextSettings readText(const Arguments& options);
// The family's schedule, steps and guidance (FLUX.1 [dev]: flux, 28; [schnell]: shift:1, 4; SD3:
// shift:3, 28 or 40 steps, --cfg 5 or 4.5; Turbo 4 steps unguided) where the command line gives
// none, for checkpoint:PATH models.
void applyCheckpointDefaults(const Arguments& options, const std::string& model, std::string* schedule, int* steps,
                             core::GuidanceSettings* guidance = nullptr);

int runCheckpointInfo(const Arguments& options);
int runTokenize(const std::vector<std::string>& args);
int runEncodePrompt(const std::vector<std::string>& args, const std::atomic<bool>& cancel);
int runForward(const std::vector<std::string>& args, const std::atomic<bool>& cancel);
int runDecode(const std::vector<std::string>& args, const std::atomic<bool>& cancel);

}  // namespace flowscope::app
