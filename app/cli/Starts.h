#pragma once

// Where a run starts, from the command line: image to image (--init-image, --init, --strength,
// --t-start), a given noise (--init-noise), and the command `invert`.

#include <atomic>
#include <set>
#include <string>
#include <vector>

#include "app/cli/Arguments.h"
#include "core/api/Engine.h"

namespace flowscope::app {

// sample's start options: --init-image --init --strength --t-start --init-noise --start-grid.
const std::set<std::string>& startOptionNames();

// Reads the start options into request.start (RunStart); throws UsageError with the reason for
// a bad combination, a file that cannot be read, or an image whose size is not the model's.
void readStart(const Arguments& options, core::SampleRequest& request, const std::atomic<bool>* cancel);

// The images a command starts from: --image F (a picture file) or --init F.npy (the model's
// samples, or images [B, C, H, W] in [-1, 1]); `imageIsData` says which. Throws UsageError.
core::HostArray readStartImages(const Arguments& options, const core::ModelDescription& model, const std::string& imageOption,
                                bool* imageIsData, const std::atomic<bool>* cancel);

// flowscope-cli invert: an image back to the noise that makes it, and forwards again.
int runInvert(const std::vector<std::string>& args, const std::atomic<bool>& cancel);

}  // namespace flowscope::app
