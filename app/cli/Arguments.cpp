#include "app/cli/Arguments.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>

#include <unistd.h>

#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/io/AtomicFile.h"
#include "core/media/ImageFolderLoader.h"

namespace flowscope::app {

void checkWritable(const std::optional<std::string>& path, const std::string& option) {
    namespace fs = std::filesystem;
    if (!path) return;
    if (path->empty()) throw UsageError("--" + option + " needs a file name");
    const fs::path target(*path);
    const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) {
        throw UsageError("--" + option + ": the folder '" + folder.string() + "' does not exist");
    }
    if (::access(folder.c_str(), W_OK) != 0) {
        throw UsageError("--" + option + ": the folder '" + folder.string() + "' is not writable");
    }
    if (fs::is_directory(target, ec)) throw UsageError("--" + option + ": '" + *path + "' is a folder");
    try {
        core::checkCanWrite(*path);
    } catch (const std::runtime_error& failure) {
        throw UsageError("--" + option + ": " + failure.what());
    }
}

std::string lowerExtension(const std::string& path) {
    std::string extension = std::filesystem::path(path).extension().string();
    for (char& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return extension;
}

void checkExtension(const std::optional<std::string>& path, const std::string& option,
                    const std::vector<std::string>& extensions) {
    if (!path) return;
    const std::string extension = lowerExtension(*path);
    if (extension.empty()) return;
    std::string allowed;
    for (const auto& wanted : extensions) {
        if (extension == wanted) return;
        allowed += (allowed.empty() ? "" : " or ") + wanted;
    }
    throw UsageError("--" + option + " writes " + allowed + " files; '" + *path + "' names a " + extension +
                     " file: name it " + allowed);
}

void checkDistinct(const std::vector<std::pair<std::string, std::optional<std::string>>>& outputs) {
    namespace fs = std::filesystem;
    for (size_t i = 0; i < outputs.size(); ++i) {
        for (size_t j = i + 1; j < outputs.size(); ++j) {
            const auto& [first, a] = outputs[i];
            const auto& [second, b] = outputs[j];
            if (!a || !b) continue;
            // The same file under two spellings (./x.png and x.png) counts too, and so does a
            // symbolic link to the other, even one whose file does not exist yet.
            std::error_code ea, eb;
            fs::path one, two;
            try {
                one = fs::weakly_canonical(fs::absolute(core::resolveLinks(*a), ea), ea);
                two = fs::weakly_canonical(fs::absolute(core::resolveLinks(*b), eb), eb);
            } catch (const std::runtime_error&) {
                continue;  // a link loop: checkWritable has said what is wrong
            }
            if (ea || eb) continue;  // unreachable paths: checkWritable has said what is wrong
            if (one == two) {
                throw UsageError("--" + first + " and --" + second + " name the same file '" + *b +
                                 "'; the second would replace the first: give each its own file");
            }
        }
    }
}

core::Engine::FolderLoader imageFolderLoader() {
    return [](const std::string& folder, int resolution, std::vector<std::string>& notes,
              const std::atomic<bool>* cancel) { return media::loadImageFolderToHost(folder, resolution, notes, cancel); };
}

int exitCodeFor(core::Failure failure) {
    switch (failure) {
        case core::Failure::None: return kExitOk;
        case core::Failure::InvalidRequest: return kExitUsage;
        case core::Failure::Cancelled: return kExitCancelled;
        case core::Failure::Runtime: return kExitFailure;
    }
    return kExitFailure;
}

namespace {

long long parseInteger(const std::string& name, const std::string& text, long long lo, long long hi) {
    long long value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size()) {
        throw UsageError("--" + name + " takes a whole number, not '" + text + "'");
    }
    if (value < lo || value > hi) {
        throw UsageError("--" + name + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                         " (got " + text + ")");
    }
    return value;
}

}  // namespace

Arguments::Arguments(const std::vector<std::string>& args, const std::set<std::string>& valued,
                     const std::set<std::string>& flags) {
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (!arg.starts_with("--")) throw UsageError("unexpected argument '" + arg + "'");
        std::string name = arg.substr(2);
        std::optional<std::string> inlineValue;
        if (const auto eq = name.find('='); eq != std::string::npos) {
            inlineValue = name.substr(eq + 1);
            name = name.substr(0, eq);
        }
        if (flags.count(name)) {
            if (inlineValue) throw UsageError("--" + name + " takes no value");
            m_flags.insert(name);
        } else if (valued.count(name)) {
            if (inlineValue) {
                m_values[name] = *inlineValue;
            } else {
                if (i + 1 >= args.size()) throw UsageError("--" + name + " needs a value");
                // `--out --json` is a forgotten value, not a file named --json.
                const std::string& next = args[i + 1];
                if (next.starts_with("--")) {
                    const std::string other = next.substr(2, next.find('=') == std::string::npos ? std::string::npos
                                                                                                  : next.find('=') - 2);
                    if (valued.count(other) || flags.count(other)) {
                        throw UsageError("--" + name + " needs a value before " + next + " (for a value that starts with --, write --" +
                                         name + "=" + next + ")");
                    }
                }
                m_values[name] = args[++i];
            }
        } else {
            std::string known;
            for (const auto& v : valued) known += " --" + v;
            for (const auto& f : flags) known += " --" + f;
            throw UsageError("unknown option '--" + name + "'; options here:" + known);
        }
    }
}

uint64_t Arguments::seed(uint64_t fallback) const {
    return static_cast<uint64_t>(integer("seed", static_cast<long long>(fallback), 0, core::kMaxSeed));
}

bool Arguments::has(const std::string& name) const { return m_flags.count(name) || m_values.count(name); }

std::string Arguments::text(const std::string& name, const std::string& fallback) const {
    const auto it = m_values.find(name);
    return it == m_values.end() ? fallback : it->second;
}

std::optional<std::string> Arguments::optionalText(const std::string& name) const {
    const auto it = m_values.find(name);
    if (it == m_values.end()) return std::nullopt;
    return it->second;
}

long long Arguments::integer(const std::string& name, long long fallback, long long lo, long long hi) const {
    const auto it = m_values.find(name);
    return it == m_values.end() ? fallback : parseInteger(name, it->second, lo, hi);
}

double Arguments::number(const std::string& name, double fallback) const {
    const auto it = m_values.find(name);
    if (it == m_values.end()) return fallback;
    double value = 0.0;
    const auto& text = it->second;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(value)) {
        throw UsageError("--" + name + " takes a number, not '" + text + "'");
    }
    return value;
}

std::vector<double> Arguments::numberList(const std::string& name) const {
    std::vector<double> values;
    if (!has(name)) return values;
    for (const std::string& item : list(name, "")) {
        double value = 0.0;
        const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
        if (item.empty() || ec != std::errc() || ptr != item.data() + item.size() || !std::isfinite(value)) {
            throw UsageError("--" + name + " takes numbers separated by commas (1,2,4), not '" + item + "'");
        }
        values.push_back(value);
    }
    return values;
}

const std::set<std::string>& guidanceOptionNames() {
    static const std::set<std::string> names{"class",   "guidance",     "cfg",      "cfg-interval",  "cfg-rescale",
                                             "apg-eta", "apg-momentum", "apg-norm", "cfg-zero-steps"};
    return names;
}

core::GuidanceSettings readGuidance(const Arguments& options, bool scaleList) {
    core::GuidanceSettings settings;
    try {
        const std::string method = options.text("guidance", options.has("cfg") || options.has("cfg-rescale") ||
                                                                    options.has("cfg-interval")
                                                                ? "cfg"
                                                                : "none");
        settings.method = core::parseGuidanceMethod(method);
        if (!scaleList) settings.scale = options.number("cfg", settings.scale);
        if (options.has("cfg-interval")) {
            const std::vector<double> ends = options.numberList("cfg-interval");
            if (ends.size() != 2) {
                throw UsageError("--cfg-interval takes LO,HI: two noise levels in [0, 1] (0 noise, 1 data), as 0.2,0.8");
            }
            settings.intervalLow = ends[0];
            settings.intervalHigh = ends[1];
        }
        settings.rescale = options.number("cfg-rescale", settings.rescale);
        settings.apgEta = options.number("apg-eta", settings.apgEta);
        settings.apgMomentum = options.number("apg-momentum", settings.apgMomentum);
        settings.apgNorm = options.number("apg-norm", settings.apgNorm);
        settings.cfgZeroSteps = static_cast<int>(options.integer("cfg-zero-steps", 0, 0, core::kMaxSteps));
        core::checkGuidance(settings);
    } catch (const UsageError&) {
        throw;
    } catch (const std::invalid_argument& error) {
        throw UsageError(error.what());
    }
    // Text-to-image checkpoints guide towards their prompt (SD3) or refuse guidance (FLUX.1), and
    // bundles may be conditioned by tensors (the engine knows which are).
    const std::string model = options.text("model", "");
    if (settings.method != core::GuidanceMethod::None && !options.has("class") &&
        !core::specHasForm(model, core::SpecForm::Checkpoint) && !core::specHasForm(model, core::SpecForm::Bundle)) {
        throw UsageError("--guidance steers towards a class: give --class NAME|INDEX (flowscope-cli info lists models)");
    }
    return settings;
}

const std::set<std::string>& conditioningOptionNames() {
    static const std::set<std::string> names{"cond", "uncond"};
    return names;
}

void readConditioningFiles(const Arguments& options, core::TextSettings* text) {
    text->conditioning = options.text("cond", "");
    text->unconditioning = options.text("uncond", "");
    if (options.has("cond") && text->conditioning.empty()) {
        throw UsageError("--cond takes a .safetensors file of the network's conditioning tensors");
    }
    if (options.has("uncond") && text->unconditioning.empty()) {
        throw UsageError("--uncond takes a .safetensors file of the unconditional branch's tensors");
    }
}

std::vector<std::string> Arguments::list(const std::string& name, const std::string& fallback) const {
    const std::string text = this->text(name, fallback);
    std::vector<std::string> items;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = text.find(',', start);
        const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (item.empty()) throw UsageError("--" + name + " has an empty item in '" + text + "'");
        items.push_back(item);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return items;
}

std::vector<int> Arguments::integerList(const std::string& name, const std::string& fallback, int lo, int hi) const {
    std::vector<int> values;
    for (const auto& item : list(name, fallback)) values.push_back(static_cast<int>(parseInteger(name, item, lo, hi)));
    return values;
}

}  // namespace flowscope::app
