#include "core/models/BundleModel.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "core/api/Errors.h"
#include "core/io/RegularFile.h"
#include "core/io/SafeTensors.h"
#include "core/io/Sha256.h"
#include "core/models/BundleConditioning.h"
#include "core/models/FlowNet.h"
#include "core/models/NetworkDenoiser.h"

namespace flowscope::core {
namespace {

// TorchScript errors carry the interpreter's traceback; the user needs its last line (the
// exception the network raised), with the first line as a fallback.
std::string essentialLine(const std::string& message) {
    std::istringstream lines(message);
    std::string line;
    std::string first;
    std::string last;
    while (std::getline(lines, line)) {
        const auto begin = line.find_first_not_of(" \t");
        if (begin == std::string::npos) continue;
        line = line.substr(begin);
        if (first.empty()) first = line;
        last = line;
    }
    return last.empty() ? first : last;
}

std::string readBundleFile(const BundleManifest& manifest, const std::string& relative, const std::string& field) {
    const std::string path = manifest.resolve(relative);
    std::error_code error;
    if (!std::filesystem::is_regular_file(path, error)) {
        throw BundleError("the \"" + field + "\" of bundle '" + manifest.name + "' names '" + relative +
                          "', which is not a file in " + manifest.directory);
    }
    try {
        return readRegularFile(path, memoryReadLimit(), "the \"" + field + "\" file");
    } catch (const FileReadError& failure) {
        throw BundleError(failure.what());
    }
}

torch::jit::Module loadProgram(const BundleManifest& manifest, const std::string& relative, const std::string& field,
                               const std::string& declaredSha256, bool trustAll, const TrustList& trustList) {
    const std::string bytes = readBundleFile(manifest, relative, field);
    const std::string hash = sha256Hex(bytes);
    const std::string path = manifest.resolve(relative);
    if (!declaredSha256.empty() && declaredSha256 != hash) {
        throw BundleError("'" + path + "' does not match the sha256 in flowscope.json (the file has " + hash +
                          ", the manifest says " + declaredSha256 +
                          "): it changed or is damaged; export the bundle again or correct the manifest");
    }
    if (!trustAll && !trustList.contains(hash)) {
        throw UntrustedModelError(
            "'" + path + "' is a TorchScript program (SHA-256 " + hash +
            "), and loading one runs its code with your permissions. Load it only if you trust where it came "
            "from: pass --trust-model, or add it to the trusted list " + trustList.path() + " (one line: '" + hash +
            "  " + relative + "'), or open it once in the FlowScope app and answer Trust");
    }
    std::istringstream stream(bytes);
    try {
        return torch::jit::load(stream, torch::kCPU);
    } catch (const c10::Error& error) {
        throw BundleError("'" + path + "' is not a TorchScript file this FlowScope (LibTorch " TORCH_VERSION
                          ") can load: " + essentialLine(error.what_without_backtrace()) +
                          ". Save the model with torch.jit.script(model).save(...) or torch.jit.trace");
    }
}

std::string dtypeName(torch::ScalarType type) {
    switch (type) {
        case torch::kFloat64: return "float64";
        case torch::kFloat32: return "float32";
        case torch::kFloat16: return "float16";
        case torch::kBFloat16: return "bfloat16";
        default: return c10::toString(type);
    }
}

// The dtype a module computes in: that of its first floating-point parameter or buffer.
std::optional<torch::ScalarType> moduleDtype(const torch::jit::Module& module) {
    for (const auto& parameter : module.parameters(true)) {
        if (parameter.is_floating_point()) return parameter.scalar_type();
    }
    for (const auto& buffer : module.buffers(true)) {
        if (buffer.is_floating_point()) return buffer.scalar_type();
    }
    return std::nullopt;
}

class BundleModel final : public Model {
public:
    BundleModel(BundleManifest manifest, bool trustAll, const TrustList& trustList) : m_manifest(std::move(manifest)) {
        c10::InferenceMode inference;
        if (m_manifest.format == "flowscope-net") {
            loadNetwork();
        } else {
            m_module = loadProgram(m_manifest, m_manifest.file, "file", m_manifest.sha256, trustAll, trustList);
            m_module.eval();
            m_dtype = moduleDtype(m_module);
            loadConditioning();
        }
        if (!m_manifest.decoder.empty()) {
            m_decoder = loadProgram(m_manifest, m_manifest.decoder, "decoder", "", trustAll, trustList);
            m_decoder->eval();
            m_decoderDtype = moduleDtype(*m_decoder);
            probeDecoder();
        } else if (m_manifest.isLatent() || isImage()) {
            m_displaySize = {m_manifest.sampleShape[1], m_manifest.sampleShape[2]};
        }
        if (!m_manifest.encoder.empty()) {
            m_encoder = loadProgram(m_manifest, m_manifest.encoder, "encoder", "", trustAll, trustList);
            m_encoder->eval();
            m_encoderDtype = moduleDtype(*m_encoder);
        }
        if (m_manifest.latentRgb) {
            std::vector<double> factors;
            for (const auto& row : m_manifest.latentRgb->factors) factors.insert(factors.end(), row.begin(), row.end());
            m_rgbFactors = torch::tensor(factors, torch::kFloat64).reshape({-1, 3});
            const auto& bias = m_manifest.latentRgb->bias;
            m_rgbBias = torch::tensor(std::vector<double>(bias.begin(), bias.end()), torch::kFloat64).reshape({1, 3, 1, 1});
        }
        m_network = std::make_unique<NetworkDenoiser>(
            m_manifest.name,
            [this](const torch::Tensor& x, const torch::Tensor& time, const torch::Tensor& labels) {
                return forward(x, time, labels);
            },
            m_manifest.sampleShape, makePath(m_manifest.path), parseParameterization(m_manifest.prediction),
            parseTimeInput(m_manifest.timeInput), /*forwardMayWriteInput=*/!m_flowNet);
        m_network->setClasses(classNames());
    }

    // A network with conditioning tensors and no classes is conditioned by them: its one class.
    std::vector<std::string> classNames() const override {
        if (m_manifest.classes.empty() && !m_conditioning.empty()) return {"conditioning"};
        return m_manifest.classes;
    }
    bool conditionedByInput() const override { return m_manifest.classes.empty() && !m_conditioning.empty(); }
    void setRowClasses(std::vector<int64_t> classes) override {
        m_nullRows.clear();
        for (const int64_t c : classes) m_nullRows.push_back(c == kNullClass);
        m_network->setRowClasses(std::move(classes));
    }
    void setConditioningFiles(const std::string& conditioning, const std::string& unconditioning) override {
        if (m_flowNet) {
            if (conditioning.empty() && unconditioning.empty()) return;
            throw InvalidRequestError("'" + m_manifest.name + "' is a network FlowScope trained: it takes no conditioning "
                                      "tensors (--cond, --uncond)" +
                                      (m_manifest.classes.empty() ? std::string() : "; its condition is a class (--class)"));
        }
        m_conditioning.setFiles(conditioning, unconditioning);
        m_network->setClasses(classNames());
    }

    std::string name() const override { return m_manifest.name; }
    std::vector<int64_t> sampleShape() const override { return m_manifest.sampleShape; }
    torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) override {
        return m_network->denoise(x, alpha, sigma);
    }
    Prediction predict(const torch::Tensor& x, const PathPoint& p) override { return m_network->predict(x, p); }
    Prediction predictRows(const torch::Tensor& x, const std::vector<PathPoint>& points) override {
        return m_network->predictRows(x, points);
    }
    torch::Tensor denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                              const std::vector<double>& sigma) override {
        return m_network->denoiseRows(x, alpha, sigma);
    }

    void prepare(torch::Device device, torch::ScalarType dtype) override {
        if (m_device != device) {
            // Moving parameters replaces their storage: not allowed on inference tensors' owners.
            c10::InferenceMode normal(false);
            if (m_flowNet) {
                m_flowNet->to(device);
            } else {
                m_module.to(device);
            }
            if (m_decoder) m_decoder->to(device);
            if (m_encoder) m_encoder->to(device);
            m_conditioning.to(device);
            m_device = device;
        }
        if (m_dtype && *m_dtype != dtype) {
            m_notes.insert("the network of '" + m_manifest.name + "' computes in " + dtypeName(*m_dtype) +
                           " (its weights); the " + dtypeName(dtype) + " run converts at its boundary");
        }
    }

    std::vector<std::string> takeNotes() override {
        std::vector<std::string> notes = m_network->takeNotes();
        notes.insert(notes.end(), m_notes.begin(), m_notes.end());
        m_notes.clear();
        return notes;
    }

    bool hasPreview() const override {
        if (m_manifest.isLatent()) return true;
        return isImage() && (m_manifest.valueLow != -1.0 || m_manifest.valueHigh != 1.0);
    }
    bool hasDecoder() const override { return m_decoder.has_value(); }

    bool encodesImages() const override {
        return isImage() && (m_manifest.isLatent() ? m_encoder.has_value() : true);
    }

    torch::Tensor encode(const torch::Tensor& images) override {
        if (!m_manifest.isLatent()) {
            // Images in [-1, 1] onto the bundle's value range (the inverse of its preview).
            return (images + 1.0) * ((m_manifest.valueHigh - m_manifest.valueLow) / 2.0) + m_manifest.valueLow;
        }
        if (!m_encoder) {
            throw InvalidRequestError("'" + m_manifest.name + "' is a latent model without an \"encoder\" in its manifest: "
                                      "give its latents instead (an .npy of shape [B, " + c10::str(m_manifest.sampleShape) +
                                      "]), or add a TorchScript encoder to the bundle");
        }
        const torch::ScalarType dtype = m_encoderDtype.value_or(images.scalar_type());
        c10::IValue output;
        try {
            output = m_encoder->forward({images.to(dtype)});
        } catch (const c10::Error& error) {
            throw std::runtime_error("the encoder of '" + m_manifest.name +
                                     "' raised an error: " + essentialLine(error.what_without_backtrace()));
        } catch (const std::runtime_error& error) {
            throw std::runtime_error("the encoder of '" + m_manifest.name + "' raised an error: " +
                                     essentialLine(error.what()));
        }
        const torch::Tensor latents = output.isTensor() ? output.toTensor() : torch::Tensor();
        std::vector<int64_t> expected{images.size(0)};
        expected.insert(expected.end(), m_manifest.sampleShape.begin(), m_manifest.sampleShape.end());
        if (!latents.defined() || latents.sizes().vec() != expected) {
            throw BundleError("the encoder of '" + m_manifest.name + "' must return latents " + c10::str(expected) +
                              " for images " + c10::str(images.sizes()) + "; it returned " +
                              (latents.defined() ? c10::str(latents.sizes()) : std::string("no tensor")));
        }
        return latents.to(images.device(), images.scalar_type());
    }

    torch::Tensor preview(const torch::Tensor& x, bool decode) override {
        if (decode && m_decoder) return runDecoder(x);
        torch::Tensor image;
        if (m_manifest.latentRgb) {
            image = torch::einsum("bchw,cr->brhw", {x, m_rgbFactors.to(x.options())}) + m_rgbBias.to(x.options());
        } else if (m_manifest.isLatent()) {
            image = x.narrow(1, 0, x.size(1) >= 3 ? 3 : 1);
        } else {
            image = (x - m_manifest.valueLow) * (2.0 / (m_manifest.valueHigh - m_manifest.valueLow)) - 1.0;
        }
        if (image.size(2) != m_displaySize[0] || image.size(3) != m_displaySize[1]) {
            namespace F = torch::nn::functional;
            image = F::interpolate(image, F::InterpolateFuncOptions().size(m_displaySize).mode(torch::kNearest));
        }
        return image;
    }

private:
    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& time, const torch::Tensor& labels) {
        if (m_flowNet) {
            return m_flowNet->forward(x.to(torch::kFloat32), time.to(torch::kFloat32), labels).to(x.options());
        }
        const torch::ScalarType dtype = m_dtype.value_or(x.scalar_type());
        // Conversions only where needed: each call costs a dispatch even when it changes nothing.
        const auto as = [](const torch::Tensor& t, torch::ScalarType type) { return t.scalar_type() == type ? t : t.to(type); };
        std::vector<c10::IValue> inputs{as(x, dtype), as(time, dtype)};
        // The class, after time (a network conditioned by tensors alone takes none).
        if (labels.defined() && !m_manifest.classes.empty()) inputs.emplace_back(labels);
        std::unordered_map<std::string, c10::IValue> keywords;
        // Rows of the null class get the unconditional tensors: --uncond's, or zeros where the
        // tensors are the condition (no classes). A network with classes takes rows without one
        // as its null class (NetworkDenoiser's labels); a network conditioned by tensors alone
        // takes them as conditional.
        std::vector<bool> nullRows = m_nullRows;
        if (nullRows.empty() && !m_manifest.classes.empty()) nullRows.assign(static_cast<size_t>(x.size(0)), true);
        for (auto& [name, value] : m_conditioning.batch(x.size(0), nullRows, m_manifest.classes.empty(), dtype)) {
            keywords.emplace(name, std::move(value));
        }
        c10::IValue output;
        try {
            output = m_module.get_method("forward")(std::move(inputs), keywords);
        } catch (const c10::OutOfMemoryError&) {
            throw;  // the engine frees memory and says so
        } catch (const c10::Error& error) {
            throw std::runtime_error("the network of '" + m_manifest.name +
                                     "' raised an error: " + essentialLine(error.what_without_backtrace()));
        } catch (const std::runtime_error& error) {  // torch::jit::JITException: raised in TorchScript
            throw std::runtime_error("the network of '" + m_manifest.name + "' raised an error: " +
                                     essentialLine(error.what()));
        }
        if (!output.isTensor()) {
            throw InvalidRequestError("the network of '" + m_manifest.name + "' returned a " + output.tagKind() +
                                      ", not a tensor shaped like its input");
        }
        const torch::Tensor result = output.toTensor();
        return result.device() == x.device() && result.scalar_type() == x.scalar_type()
                   ? result
                   : result.to(x.device(), x.scalar_type());
    }

    torch::Tensor runDecoder(const torch::Tensor& x) {
        const torch::ScalarType dtype = m_decoderDtype.value_or(x.scalar_type());
        c10::IValue output;
        try {
            output = m_decoder->forward({x.to(dtype)});
        } catch (const c10::Error& error) {
            throw std::runtime_error("the decoder of '" + m_manifest.name +
                                     "' raised an error: " + essentialLine(error.what_without_backtrace()));
        } catch (const std::runtime_error& error) {
            throw std::runtime_error("the decoder of '" + m_manifest.name + "' raised an error: " +
                                     essentialLine(error.what()));
        }
        const torch::Tensor image = output.isTensor() ? output.toTensor() : torch::Tensor();
        if (!image.defined() || image.dim() != 4 || image.size(0) != x.size(0) ||
            (image.size(1) != 1 && image.size(1) != 3)) {
            throw BundleError("the decoder of '" + m_manifest.name + "' must return images [B, 1 or 3, H, W]; it returned " +
                              (image.defined() ? c10::str(image.sizes()) : std::string("no tensor")) +
                              " for latents " + c10::str(x.sizes()));
        }
        return image.to(x.device(), x.scalar_type());
    }

    // Runs the decoder once at load, so a broken one is reported before any sampling, and learns
    // the image size that every preview is shown at.
    void probeDecoder() {
        std::vector<int64_t> shape{1};
        shape.insert(shape.end(), m_manifest.sampleShape.begin(), m_manifest.sampleShape.end());
        const torch::Tensor image = runDecoder(torch::zeros(shape, torch::kFloat32));
        m_displaySize = {image.size(2), image.size(3)};
    }

    void loadNetwork() {
        m_flowNet = loadFlowNet(m_manifest);
        m_dtype = torch::kFloat32;
    }

    // The arguments forward takes after (x, time[, class]), from the TorchScript schema, and the
    // conditioning tensors for them.
    void loadConditioning() {
        const std::string file = m_manifest.resolve(m_manifest.file);
        const auto method = m_module.find_method("forward");
        if (!method) throw BundleError("the module in '" + file + "' has no forward method");
        const auto& arguments = method->function().getSchema().arguments();
        // arguments[0] is self.
        if (arguments.size() < 3) {
            throw BundleError("the network's forward in '" + file + "' must take (x, time); it takes " +
                              std::to_string(arguments.size() - 1) + " arguments");
        }
        // A conditional network's class comes third; the conditioning tensors after it.
        if (!m_manifest.classes.empty() && arguments.size() < 4) {
            throw BundleError("the manifest lists classes, so the network's forward in '" + file +
                              "' must take (x, time, class); it takes " + std::to_string(arguments.size() - 1) +
                              " arguments");
        }
        std::vector<BundleConditioning::Argument> named;
        for (size_t i = m_manifest.classes.empty() ? 3 : 4; i < arguments.size(); ++i) {
            named.push_back({arguments[i].name(), arguments[i].default_value().has_value()});
        }
        m_conditioning = BundleConditioning(m_manifest, std::move(named), file);
    }

    BundleManifest m_manifest;
    torch::jit::Module m_module;
    std::shared_ptr<FlowNet> m_flowNet;  // flowscope-net bundles instead of m_module
    std::optional<torch::jit::Module> m_decoder;
    std::optional<torch::ScalarType> m_dtype;
    std::optional<torch::ScalarType> m_decoderDtype;
    std::optional<torch::jit::Module> m_encoder;
    std::optional<torch::ScalarType> m_encoderDtype;
    BundleConditioning m_conditioning;
    std::vector<bool> m_nullRows;  // per row of the next evaluations: the null class (empty: none)
    torch::Tensor m_rgbFactors;
    torch::Tensor m_rgbBias;
    std::vector<int64_t> m_displaySize;
    std::unique_ptr<NetworkDenoiser> m_network;
    torch::Device m_device = torch::kCPU;
    std::set<std::string> m_notes;
};

}  // namespace

// A network FlowScope trained: the architecture from the manifest, the weights from
// safetensors (data only, so no trust is needed), every tensor checked by name and shape.
std::shared_ptr<FlowNet> loadFlowNet(const BundleManifest& manifest) {
    if (!manifest.architecture) {
        throw BundleError("'" + manifest.name + "' is not a network FlowScope trained (format flowscope-net)");
    }
    readBundleFile(manifest, manifest.file, "file");  // a clear message if missing
    const std::string path = manifest.resolve(manifest.file);
    SafeTensorsFile weights;
    try {
        weights = SafeTensorsFile::read(path);
    } catch (const std::exception& error) {
        throw BundleError("the weights " + path + " cannot be used: " + error.what());
    }
    // The manifest's architecture must describe these weights before anything is built: a data-only
    // bundle loads without a trust prompt, and a wide, deep declaration with a small file would
    // otherwise allocate whatever it declares.
    int64_t stored = 0;
    for (const auto& entry : weights.entries()) {
        int64_t count = 1;
        for (int64_t size : entry.shape) count *= size;
        stored += count;
    }
    const int64_t declared = parameterCountOf(*manifest.architecture);
    if (declared != stored) {
        throw BundleError(path + " holds " + std::to_string(stored) + " weights, but the architecture " +
                          manifest.architecture->toJson() + " in flowscope.json has " + std::to_string(declared) +
                          " parameters: the manifest does not describe these weights");
    }
    // Parameters made inside the engine's inference mode could not be filled in place.
    c10::InferenceMode normal(false);
    torch::NoGradGuard noGrad;
    auto network = makeFlowNet(*manifest.architecture, 0);
    const auto parameters = network->named_parameters();
    for (const auto& entry : weights.entries()) {
        if (!parameters.contains(entry.name)) {
            throw BundleError(path + " holds '" + entry.name + "', which the architecture " +
                              manifest.architecture->toJson() + " has no place for");
        }
    }
    for (const auto& item : parameters) {
        const std::string& name = item.key();
        const torch::Tensor& parameter = item.value();
        if (!weights.contains(name)) throw BundleError(path + " lacks the weights '" + name + "'");
        const torch::Tensor value = weights.tensor(name);
        if (value.sizes() != parameter.sizes()) {
            throw BundleError(path + ": '" + name + "' has shape " + c10::str(value.sizes()) +
                              ", the architecture needs " + c10::str(parameter.sizes()));
        }
        torch::Tensor(parameter).copy_(value.to(parameter.scalar_type()));
    }
    network->eval();
    return network;
}

std::shared_ptr<Model> loadBundleModel(const BundleManifest& manifest, bool trustAll, const TrustList& trustList) {
    return std::make_shared<BundleModel>(manifest, trustAll, trustList);
}

}  // namespace flowscope::core
