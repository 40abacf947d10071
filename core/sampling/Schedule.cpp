#include "core/sampling/Schedule.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "core/api/Errors.h"

namespace flowscope::core {
namespace {

double parseNumber(std::string_view text, std::string_view what) {
    double value = 0.0;
    const auto* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (ec != std::errc() || ptr != end || !std::isfinite(value)) {
        throw InvalidRequestError("invalid " + std::string(what) + " '" + std::string(text) + "'");
    }
    return value;
}

// The linear path's t for a noise level s = 1 - t, then the target path's t with the same SNR.
double timeFromLinearSigma(const ProbabilityPath& path, double linearSigma) {
    if (linearSigma >= 1.0) return 0.0;
    if (linearSigma <= 0.0) return 1.0;
    const double lambda = std::log1p(-linearSigma) - std::log(linearSigma);
    return path.timeForLambda(lambda);
}

}  // namespace

const std::vector<std::string>& scheduleNames() {
    static const std::vector<std::string> names{"uniform", "karras", "shift:S", "flux", "logsnr"};
    return names;
}

const std::vector<std::string>& scheduleForms() {
    static const std::vector<std::string> forms{"uniform", "karras", "shift:S", "flux[:L]", "logsnr"};
    return forms;
}

ScheduleSpec parseSchedule(std::string_view spec) {
    ScheduleSpec parsed;
    if (spec == "uniform" || spec == "karras" || spec == "logsnr" || spec == "flux") {
        parsed.kind = std::string(spec);
        return parsed;
    }
    if (spec.starts_with("shift:")) {
        parsed.kind = "shift";
        parsed.shift = parseNumber(spec.substr(6), "shift");
        if (parsed.shift <= 0.0) throw InvalidRequestError("shift:S needs S > 0, e.g. shift:3");
        return parsed;
    }
    if (spec == "shift") {
        parsed.kind = "shift";
        return parsed;
    }
    if (spec.starts_with("flux:")) {
        parsed.kind = "flux";
        parsed.tokens = parseNumber(spec.substr(5), "token count");
        if (parsed.tokens < 1.0) throw InvalidRequestError("flux:L needs a token count L >= 1, e.g. flux:4096");
        return parsed;
    }
    throw UnknownNameError("schedule", spec, scheduleNames());
}

std::string toString(const ScheduleSpec& spec) {
    if (spec.kind == "shift") {
        char buffer[64];
        std::snprintf(buffer, sizeof buffer, "shift:%g", spec.shift);
        return buffer;
    }
    if (spec.kind == "flux" && spec.tokens > 0.0) {
        char buffer[64];
        std::snprintf(buffer, sizeof buffer, "flux:%g", spec.tokens);
        return buffer;
    }
    return spec.kind;
}

double fluxTokenCount(const std::vector<int64_t>& sampleShape) {
    if (sampleShape.size() < 2) return 1.0;
    const auto h = sampleShape[sampleShape.size() - 2];
    const auto w = sampleShape[sampleShape.size() - 1];
    return std::max<double>(1.0, double((h + 1) / 2) * double((w + 1) / 2));
}

std::vector<double> karrasSigmas(int count, double sigmaMin, double sigmaMax, double rho) {
    std::vector<double> sigmas(count);
    const double minInvRho = std::pow(sigmaMin, 1.0 / rho);
    const double maxInvRho = std::pow(sigmaMax, 1.0 / rho);
    for (int i = 0; i < count; ++i) {
        const double ramp = count > 1 ? double(i) / double(count - 1) : 0.0;
        sigmas[i] = std::pow(maxInvRho + ramp * (minInvRho - maxInvRho), rho);
    }
    return sigmas;
}

std::vector<double> makeTimeGrid(const ScheduleSpec& spec, const ProbabilityPath& path, int steps,
                                 double tokens, double tEnd) {
    if (steps < 1) throw InvalidRequestError("a time grid needs at least one step");
    std::vector<double> grid(steps + 1);
    if (spec.kind == "uniform") {
        for (int i = 0; i <= steps; ++i) grid[i] = double(i) / steps;
    } else if (spec.kind == "karras") {
        // N noise levels from 80 to 0.002 (VE-equivalent sigma/alpha), then exactly 1.
        const auto sigmas = karrasSigmas(steps);
        for (int i = 0; i < steps; ++i) grid[i] = path.timeForLambda(-std::log(sigmas[i]));
    } else if (spec.kind == "shift") {
        for (int i = 0; i <= steps; ++i) {
            const double s = 1.0 - double(i) / steps;
            const double shifted = spec.shift * s / (1.0 + (spec.shift - 1.0) * s);
            grid[i] = timeFromLinearSigma(path, shifted);
        }
    } else if (spec.kind == "flux") {
        const double m = (1.15 - 0.5) / (4096.0 - 256.0);
        const double b = 0.5 - 256.0 * m;
        const double mu = (spec.tokens > 0.0 ? spec.tokens : tokens) * m + b;
        for (int i = 0; i <= steps; ++i) {
            const double s = 1.0 - double(i) / steps;
            const double sigma = s <= 0.0 ? 0.0 : std::exp(mu) / (std::exp(mu) + (1.0 / s - 1.0));
            grid[i] = timeFromLinearSigma(path, sigma);
        }
    } else if (spec.kind == "logsnr") {
        // N values uniform in lambda over the path's working range, then exactly 1.
        const double lo = path.lambdaMin();
        const double hi = path.lambdaMax();
        for (int i = 0; i < steps; ++i) {
            const double ramp = steps > 1 ? double(i) / double(steps - 1) : 0.0;
            grid[i] = path.timeForLambda(lo + ramp * (hi - lo));
        }
    } else {
        throw UnknownNameError("schedule", spec.kind, scheduleNames());
    }
    grid[steps] = 1.0;
    // Noise-level grids can begin noisier than a path with a finite starting SNR (vp, ve) can
    // express; those leading times all clamp to t = 0. They are merged into one start, so the
    // grid has fewer steps than asked for; the engine reports the difference in the run's notes.
    size_t leading = 0;
    while (leading + 1 < grid.size() && grid[leading + 1] <= 0.0) ++leading;
    grid.erase(grid.begin(), grid.begin() + static_cast<std::ptrdiff_t>(leading));
    steps = static_cast<int>(grid.size()) - 1;
    for (int i = 1; i <= steps; ++i) {
        if (!(grid[i] > grid[i - 1])) {
            throw InvalidRequestError("schedule '" + toString(spec) + "' on path '" + path.name() +
                                      "' with " + std::to_string(steps) +
                                      " steps gives repeated times; use fewer steps or another schedule");
        }
    }
    if (tEnd < 1.0) {
        if (!(tEnd > grid[0])) {
            throw InvalidRequestError("--t-end must lie after the grid's start t0 = " + std::to_string(grid[0]));
        }
        const double scale = (tEnd - grid[0]) / (1.0 - grid[0]);
        for (int i = 1; i <= steps; ++i) grid[i] = grid[0] + (grid[i] - grid[0]) * scale;
        grid[steps] = tEnd;
    }
    return grid;
}

}  // namespace flowscope::core
