#include "core/models/Bundle.h"

#include <algorithm>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/io/Json.h"
#include "core/io/RegularFile.h"
#include "core/models/TrustList.h"
#include "core/sampling/ProbabilityPath.h"

namespace flowscope::core {
namespace {

constexpr uint64_t kMaxManifestBytes = 1 << 20;
constexpr int64_t kMaxDimension = 1 << 16;
constexpr int64_t kMaxSampleElements = int64_t{1} << 26;

class Fields {
public:
    Fields(const JsonValue::Object& object, std::string manifest) : m_object(object), m_manifest(std::move(manifest)) {}

    [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
        throw BundleError(m_manifest + ": \"" + field + "\" " + problem);
    }

    const JsonValue* find(const std::string& field) const {
        const auto it = m_object.find(field);
        return it == m_object.end() ? nullptr : &it->second;
    }

    const JsonValue& required(const std::string& field, const std::string& what) const {
        const JsonValue* value = find(field);
        if (!value) fail(field, "is missing; give " + what);
        return *value;
    }

    std::string string(const std::string& field, const std::string& what) const {
        const JsonValue& value = required(field, what);
        if (!value.isString() || value.string().empty()) fail(field, "must be a non-empty string: " + what);
        return value.string();
    }

    std::string optionalString(const std::string& field, const std::string& what) const {
        const JsonValue* value = find(field);
        if (!value) return {};
        if (!value->isString() || value->string().empty()) fail(field, "must be a non-empty string: " + what);
        return value->string();
    }

    std::string choice(const std::string& field, const std::vector<std::string>& allowed) const {
        const std::string what = "one of " + joinNames(allowed, ", ");
        const std::string value = string(field, what);
        for (const auto& name : allowed) {
            if (name == value) return value;
        }
        fail(field, "is '" + value + "'; allowed: " + joinNames(allowed, ", "));
    }

    // A file inside the bundle folder: a relative path that does not climb out of it.
    std::string file(const std::string& field, bool required) const {
        const std::string what = "the name of a file inside the bundle folder";
        const std::string name = required ? string(field, what) : optionalString(field, what);
        if (name.empty()) return name;
        const std::filesystem::path path(name);
        if (path.is_absolute()) fail(field, "must be relative to the bundle folder, not '" + name + "'");
        for (const auto& part : path) {
            if (part == "..") fail(field, "must stay inside the bundle folder ('" + name + "' uses ..)");
        }
        return name;
    }

    double number(const JsonValue& value, const std::string& field, const std::string& what) const {
        double out = 0.0;
        if (!value.toDouble(&out)) fail(field, "must hold finite numbers: " + what);
        return out;
    }

private:
    const JsonValue::Object& m_object;
    std::string m_manifest;
};

LatentRgb parseLatentRgb(const Fields& fields, const JsonValue& value, int64_t channels) {
    const std::string what =
        "{\"factors\": [[r, g, b] for each of the " + std::to_string(channels) + " latent channels], \"bias\": [r, g, b]}";
    if (!value.isObject()) fields.fail("latent_rgb", "must be an object " + what);
    const Fields inner(value.object(), "");
    const JsonValue* factors = inner.find("factors");
    if (!factors || !factors->isArray() || static_cast<int64_t>(factors->array().size()) != channels) {
        fields.fail("latent_rgb", "needs \"factors\" with one [r, g, b] row per latent channel (" +
                                      std::to_string(channels) + "): " + what);
    }
    LatentRgb rgb;
    for (const auto& row : factors->array()) {
        if (!row.isArray() || row.array().size() != 3) fields.fail("latent_rgb", "rows must be [r, g, b]: " + what);
        std::array<double, 3> values{};
        for (int i = 0; i < 3; ++i) values[i] = fields.number(row.array()[i], "latent_rgb", what);
        rgb.factors.push_back(values);
    }
    if (const JsonValue* bias = inner.find("bias")) {
        if (!bias->isArray() || bias->array().size() != 3) fields.fail("latent_rgb", "\"bias\" must be [r, g, b]");
        for (int i = 0; i < 3; ++i) rgb.bias[i] = fields.number(bias->array()[i], "latent_rgb", what);
    }
    return rgb;
}

void parseSampleShape(const Fields& fields, BundleManifest& manifest) {
    const std::string shapeWhat = "[C, H, W] for images or [D] for points, e.g. [1, 28, 28]";
    const JsonValue& shape = fields.required("sample_shape", shapeWhat);
    if (!shape.isArray() || (shape.array().size() != 1 && shape.array().size() != 3)) {
        fields.fail("sample_shape", "must be " + shapeWhat);
    }
    int64_t elements = 1;
    for (const auto& dimension : shape.array()) {
        uint64_t size = 0;
        if (!dimension.toUnsigned(&size) || size < 1 || size > static_cast<uint64_t>(kMaxDimension)) {
            fields.fail("sample_shape", "must hold whole numbers from 1 to " + std::to_string(kMaxDimension) + ": " + shapeWhat);
        }
        manifest.sampleShape.push_back(static_cast<int64_t>(size));
        elements *= static_cast<int64_t>(size);
        if (elements > kMaxSampleElements) fields.fail("sample_shape", "describes a sample too large to sample");
    }
}

void parseValueRange(const Fields& fields, BundleManifest& manifest) {
    const std::string rangeWhat = "[low, high] of the data the network was trained on, e.g. [-1, 1]";
    const JsonValue& range = fields.required("value_range", rangeWhat);
    if (!range.isArray() || range.array().size() != 2) fields.fail("value_range", "must be " + rangeWhat);
    manifest.valueLow = fields.number(range.array()[0], "value_range", rangeWhat);
    manifest.valueHigh = fields.number(range.array()[1], "value_range", rangeWhat);
    if (!(manifest.valueLow < manifest.valueHigh)) fields.fail("value_range", "needs low < high: " + rangeWhat);
}

void parseClasses(const Fields& fields, BundleManifest& manifest) {
    const JsonValue* classes = fields.find("classes");
    if (!classes) return;
    const std::string what = "the class names, in index order, e.g. [\"T-shirt/top\", \"Trouser\"]";
    if (!classes->isArray() || classes->array().empty() ||
        classes->array().size() > static_cast<size_t>(Architecture::kMaxClasses)) {
        fields.fail("classes", "must be a list of 1 to " + std::to_string(Architecture::kMaxClasses) + " names: " + what);
    }
    for (const JsonValue& name : classes->array()) {
        if (!name.isString() || name.string().empty()) fields.fail("classes", "must hold non-empty names: " + what);
        if (std::find(manifest.classes.begin(), manifest.classes.end(), name.string()) != manifest.classes.end()) {
            fields.fail("classes", "names '" + name.string() + "' twice: " + what);
        }
        manifest.classes.push_back(name.string());
    }
}

}  // namespace

const std::vector<std::string>& bundleFormats() {
    static const std::vector<std::string> formats{"torchscript", "flowscope-net"};
    return formats;
}

const std::vector<std::string>& bundleFields() {
    static const std::vector<std::string> fields{"name",       "format",       "file",        "prediction",
                                                 "path",       "time_input",   "sample_shape", "value_range"};
    return fields;
}

std::string BundleManifest::resolve(const std::string& relative) const {
    return (std::filesystem::path(directory) / relative).string();
}

std::vector<std::string> BundleManifest::programFiles() const {
    std::vector<std::string> files;
    if (format == "torchscript") files.push_back(file);
    if (!decoder.empty()) files.push_back(decoder);
    if (!encoder.empty()) files.push_back(encoder);
    return files;
}

BundleManifest parseBundleManifest(std::string_view json, const std::string& directory) {
    const std::string manifestName = (std::filesystem::path(directory) / "flowscope.json").string();
    JsonValue document;
    try {
        document = parseJson(json);
    } catch (const std::invalid_argument& error) {
        throw BundleError(manifestName + " is not valid JSON: " + error.what());
    }
    if (!document.isObject()) throw BundleError(manifestName + " must hold a JSON object (see README, \"Bring your own model\")");
    const Fields fields(document.object(), manifestName);

    BundleManifest manifest;
    manifest.directory = directory;
    manifest.name = fields.string("name", "a name to show for the model");
    manifest.format = fields.choice("format", bundleFormats());
    manifest.file = fields.file("file", true);
    manifest.prediction = fields.choice("prediction", parameterizationNames());
    manifest.path = fields.choice("path", pathNames());
    manifest.timeInput = fields.choice("time_input", timeInputNames());
    if (manifest.prediction == "v" && manifest.path != "vp" && manifest.path != "cosine") {
        fields.fail("prediction", "is 'v', which needs a variance-preserving path: set \"path\" to vp or cosine");
    }

    parseSampleShape(fields, manifest);
    parseValueRange(fields, manifest);

    manifest.sha256 = fields.optionalString("sha256", "64 lowercase hex digits of the model file's SHA-256");
    if (!manifest.sha256.empty() && !isSha256Hex(manifest.sha256)) {
        fields.fail("sha256", "must be 64 lowercase hex digits (as sha256sum prints), not '" + manifest.sha256 + "'");
    }
    manifest.conditioning = fields.file("conditioning", false);
    manifest.decoder = fields.file("decoder", false);
    if (const JsonValue* rgb = fields.find("latent_rgb")) {
        if (manifest.sampleShape.size() != 3) fields.fail("latent_rgb", "needs a [C, H, W] sample_shape");
        manifest.latentRgb = parseLatentRgb(fields, *rgb, manifest.sampleShape[0]);
    }
    if (manifest.sampleShape.size() != 3 && !manifest.decoder.empty()) {
        fields.fail("decoder", "needs a [C, H, W] sample_shape");
    }
    manifest.encoder = fields.file("encoder", false);
    if (!manifest.encoder.empty() && !manifest.isLatent()) {
        fields.fail("encoder", "is for latent bundles (with a \"decoder\" or \"latent_rgb\"): images of an image "
                               "bundle need no encoder");
    }
    parseClasses(fields, manifest);
    if (manifest.format == "flowscope-net") {
        const JsonValue& architecture = fields.required("architecture", "{\"kind\": \"mlp\" or \"unet\", \"width\": N, \"depth\": N}");
        try {
            manifest.architecture = Architecture::fromJson(architecture);
            manifest.architecture->sampleShape = manifest.sampleShape;
            manifest.architecture->check();
        } catch (const std::invalid_argument& error) {
            fields.fail("architecture", std::string("is not usable: ") + error.what());
        }
        if (!manifest.conditioning.empty()) fields.fail("conditioning", "is only for torchscript networks");
        if (manifest.architecture->classes != static_cast<int64_t>(manifest.classes.size())) {
            fields.fail("classes", "lists " + std::to_string(manifest.classes.size()) + " names, and the architecture has " +
                                       std::to_string(manifest.architecture->classes) + " classes");
        }
    }
    return manifest;
}

BundleManifest readBundleManifest(const std::string& directory) {
    namespace fs = std::filesystem;
    std::error_code error;
    if (!fs::is_directory(directory, error)) {
        throw BundleError("'" + directory + "' is not a folder; a bundle is a folder with flowscope.json and the model file");
    }
    const fs::path manifestPath = fs::path(directory) / "flowscope.json";
    if (!fs::exists(manifestPath, error)) {
        throw BundleError("no flowscope.json in '" + directory +
                          "'; a bundle is a folder with flowscope.json and the model file (README, \"Bring your own model\")");
    }
    std::string text;
    try {
        text = readRegularFile(manifestPath.string(), kMaxManifestBytes, "the manifest");
    } catch (const FileReadError& failure) {
        throw BundleError(std::string(failure.what()) + " (it should be a short JSON manifest)");
    }
    return parseBundleManifest(text, directory);
}

}  // namespace flowscope::core
