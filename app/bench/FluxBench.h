#pragma once

// flowscope-bench's FLUX.1 section: a FLUX.1-shaped transformer with random weights in the
// original key layout (a reduced width on the CPU, the real 12B shape in bfloat16 on a GPU), timed
// through the engine against its forward pass alone, and the text encoders' and decoder's times.

#include <functional>
#include <string>
#include <vector>

#include <torch/types.h>

namespace flowscope::bench {

struct FluxShape {
    int64_t hidden = 3072, headDim = 128, mlp = 12288, context = 4096, pooled = 768;
    int doubleBlocks = 19, singleBlocks = 38;
    bool guidance = false;
    int64_t parameters() const;
};

// Writes random weights of `shape` under the original names as one safetensors file, drawn on
// `device`. dtype kUInt8: as the shared fp8 files (matrices in F8_E4M3, vectors in bfloat16).
void writeRandomFlux(const std::string& path, const FluxShape& shape, torch::ScalarType dtype,
                     torch::Device device = torch::kCPU);

struct FluxTimes {
    std::string shape;     // in words
    int side = 0;          // image side in pixels
    double engineStepMs = 0, forwardMs = 0, clipMs = 0, t5Ms = 0, decodeMs = 0;
    // The fp8 file's transformer: its forward with the matrices widened at load, and kept packed
    // (one byte per value, widened for each product); their largest output difference.
    double float8WidenedMs = 0, float8PackedMs = 0, float8Difference = 0;
    double parameters = 0, float8Parameters = 0;
};
// Times the section on `device` with the median of `repeats`; `timer` is the bench's median timer.
FluxTimes benchFlux(const std::string& directory, torch::Device device, int repeats,
                    const std::function<double(const std::function<void()>&, int)>& timer);
// Adds the fp8 figures to `times` (after benchFlux, whose weights are gone by then).
void benchFloat8(const std::string& directory, torch::Device device, int repeats,
                 const std::function<double(const std::function<void()>&, int)>& timer, FluxTimes& times);

}  // namespace flowscope::bench
