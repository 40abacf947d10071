#pragma once

// How a checkpoint's part is held in memory: one rule for loading it (CheckpointModel, against
// what is free at that moment, with the part's activations) and for estimating it before
// anything loads (core::estimateCheckpointMemory, against the device's capacity, weights only).
//
// On the CPU a part computes in float32 where that fits, else with its float8 matrices kept packed
// (one byte per value, widened for each product) when the file stores them so, else in bfloat16,
// else bfloat16 with packed float8. On a GPU it computes in bfloat16, with packed float8 where
// plain bfloat16 would not fit. "Fits": weights and activations within the room given.

#include <string>

namespace flowscope::core {

struct PartSize {
    double parameters = 0.0;
    double float8Parameters = 0.0;  // of those, in matrices stored as F8_E4M3 (Linear and Embedding keep them packed)
};

struct PartPlacement {
    bool bfloat16 = false;    // the compute dtype: bfloat16, else float32
    bool packFloat8 = false;  // float8 matrices kept as bytes
    double bytes = 0.0;       // weights and activations
    bool fits = true;
    // "float32", "bfloat16", "float8 (computed in float32)", ...
    std::string describe() const;
};

// The first placement in the order above that fits in `room` bytes; where none does, the smallest,
// with fits false. `room` 0 (unknown): the first.
PartPlacement placePart(const PartSize& size, double activations, double room, bool gpu);

// The share of the memory a part may take: of the machine's memory on the CPU (the rest is the
// system's and the window's), of the GPU's free memory on a GPU.
constexpr double kCpuMemoryShare = 0.8;
constexpr double kGpuMemoryShare = 0.9;

}  // namespace flowscope::core
