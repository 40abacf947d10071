#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/sampling/ProbabilityPath.h"

namespace flowscope::core {

// A time grid t_0 < t_1 < ... < t_N from the path's start to t_N = 1 (DESIGN.md, "Time grids").
// Spec strings: "uniform", "karras", "shift:S", "flux" or "flux:L" (L latent tokens), "logsnr".
struct ScheduleSpec {
    std::string kind = "uniform";
    double shift = 3.0;     // shift:S
    double tokens = 0.0;    // flux; 0 means "derive from the sample shape"
};

ScheduleSpec parseSchedule(std::string_view spec);
std::string toString(const ScheduleSpec& spec);
const std::vector<std::string>& scheduleNames();
// The same as they are typed, with their parameters: shift:S, flux[:L] (L optional).
const std::vector<std::string>& scheduleForms();

// Flux's token count for a sample shape: 2x2 patches of the spatial grid (at least 1).
double fluxTokenCount(const std::vector<int64_t>& sampleShape);

// N + 1 increasing times ending at 1 (fewer when a noise-level grid starts noisier than the path's
// t = 0; those leading times are merged into the start) (or at tEnd < 1: the grid is squeezed affinely onto
// [t_0, tEnd], which keeps its shape and makes uniform grids uniform on the shorter span).
std::vector<double> makeTimeGrid(const ScheduleSpec& spec, const ProbabilityPath& path, int steps,
                                 double tokens = 1.0, double tEnd = 1.0);

// Karras et al. (EDM) noise levels, rho = 7, from sigmaMax to sigmaMin in `count` values.
std::vector<double> karrasSigmas(int count, double sigmaMin = kEdmSigmaMin, double sigmaMax = kEdmSigmaMax,
                                 double rho = 7.0);

}  // namespace flowscope::core
