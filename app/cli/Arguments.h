#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/api/Engine.h"

namespace flowscope::app {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitCancelled = 130;

// A usage error: the command line asks for something the CLI does not offer. Exit code 2.
class UsageError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// The engine's loader of folder:PATH models (core/media), which every command's engine takes.
core::Engine::FolderLoader imageFolderLoader();

// The exit status for an engine failure (0, 1, 2 or 130).
int exitCodeFor(core::Failure failure);
// Refuses early an output file a command could never write (missing or unwritable folder, a
// folder given as the file), so no time is spent on a doomed run. Throws UsageError naming --option.
void checkWritable(const std::optional<std::string>& path, const std::string& option);
// A file name's extension in lower case (".png"), empty when it has none.
std::string lowerExtension(const std::string& path);
// Refuses a file name whose extension promises another format than the one written (`--out
// grid.jpg` would hold PNG bytes). Names without an extension (/dev/stdout) pass.
void checkExtension(const std::optional<std::string>& path, const std::string& option,
                    const std::vector<std::string>& extensions);
// Refuses two options that name the same file (the second write would replace the first).
// Each entry: an option's name and its path, if given.
void checkDistinct(const std::vector<std::pair<std::string, std::optional<std::string>>>& outputs);

// `--name value` and `--flag` options after a subcommand. Every option must be declared, so a
// typo is an error rather than something silently ignored.
class Arguments {
public:
    Arguments(const std::vector<std::string>& args, const std::set<std::string>& valued,
              const std::set<std::string>& flags);

    bool has(const std::string& name) const;
    std::string text(const std::string& name, const std::string& fallback) const;
    std::optional<std::string> optionalText(const std::string& name) const;
    long long integer(const std::string& name, long long fallback, long long lo, long long hi) const;
    // --seed: 0 to 4294967295. LibTorch's CPU generator (like PyTorch's) keeps 32 bits of a seed,
    // so a larger one would silently give the noise of another.
    uint64_t seed(uint64_t fallback) const;
    double number(const std::string& name, double fallback) const;
    std::vector<std::string> list(const std::string& name, const std::string& fallback) const;
    std::vector<int> integerList(const std::string& name, const std::string& fallback, int lo, int hi) const;

    // A comma-separated list of numbers (--cfgs 1,2,4); empty when the option is absent.
    std::vector<double> numberList(const std::string& name) const;

private:
    std::map<std::string, std::string> m_values;
    std::set<std::string> m_flags;
};

// The options of a conditional, guided run (sample, sweep, evaluate): --class and the guidance
// options of DESIGN.md section 6.
const std::set<std::string>& guidanceOptionNames();
// --guidance none|cfg|apg|cfg-zero (default cfg when --cfg is given, else none), --cfg W,
// --cfg-interval LO,HI, --cfg-rescale PHI, --apg-eta E, --apg-momentum B, --apg-norm R,
// --cfg-zero-steps K. Throws UsageError with the reason for a value out of range. `scaleList`:
// --cfg is a list of scales the caller reads (evaluate), and the scale is left at 1.
core::GuidanceSettings readGuidance(const Arguments& options, bool scaleList = false);
// --cond FILE and --uncond FILE (sample, sweep, invert): the conditioning tensors of a TorchScript
// bundle's network for the run, and for the unconditional half of guidance.
const std::set<std::string>& conditioningOptionNames();
void readConditioningFiles(const Arguments& options, core::TextSettings* text);

}  // namespace flowscope::app
