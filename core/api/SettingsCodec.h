#pragma once

// A run's settings as FlowScope stores them, in one place for every front end: the `flowscope`
// PNG text chunk (JSON holding every setting that decides the samples), the one-line
// `parameters` chunk in the style AUTOMATIC1111 writes, and the reverse. The CLI's --out, the
// window's exports, its restore from a PNG and its saved session all go through these.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/api/Engine.h"

namespace flowscope::core {

// The PNG text chunks FlowScope writes beside its pictures.
inline constexpr std::string_view kSettingsChunk = "flowscope";
inline constexpr std::string_view kParametersChunk = "parameters";

using TextChunks = std::vector<std::pair<std::string, std::string>>;

// The settings of `request` that decide its samples, as one compact JSON object with keys in
// this order: model, path, solver, schedule, steps, seed (a number), batch, resolution, device,
// dtype, t_end, rtol, atol, then, only where set, condition (the class), guidance (an object:
// method, scale, interval [LO, HI], and the method's own parameters) and start (kind noise, image
// or state, t_start, grid cut or new; the start's arrays are not settings).
std::string settingsToJson(const SampleRequest& request);

// Reads an object settingsToJson wrote into `request`, whose other fields keep their values.
// It also reads what earlier versions wrote: the seed as a decimal string, dtype to atol absent
// (their defaults). Returns false, leaving `request` as it was, with `error` naming the field
// and the valid values, for text that is not such an object, a missing or mistyped field, an
// unknown name, or a number the engine would refuse (steps 1-kMaxSteps, batch 1-kMaxBatch,
// seed 0-kMaxSeed, resolution 0-kMaxResolution, t_end in (0, 1], tolerances positive).
bool settingsFromJson(std::string_view text, SampleRequest* request, std::string* error);

// "Steps: 8, Sampler: euler, Schedule type: uniform, Seed: 0, Batch: 1, Model: ..., Path: ...,
// NFE: 8, Version: FlowScope X" and, for images ([C, H, W] samples), ", Size: WxH". A conditional
// run adds "CFG scale: W" after the schedule (and "Guidance: M" for methods other than cfg), and
// "Class: C" after the model; an image-to-image run ends with "Denoising strength: 1 - t_start".
std::string parametersLine(const SampleRequest& request, int nfe, const std::vector<int64_t>& sampleShape);

// Both chunks, parameters first, as PNGs carry them.
TextChunks settingsChunks(const SampleRequest& request, int nfe, const std::vector<int64_t>& sampleShape);

}  // namespace flowscope::core
