// flowscope-bench: engine figures measured side by side in one run (these machines are noisy, so
// only ratios within one run mean much). Warm, median of repeats, with device synchronization.
// Prints a table, or JSON with --json. Sections (all by default):
//   overhead   model forward alone against the engine's loop per step (small and larger conv
//              net, TorchScript), and on CUDA the same loop replayed as a CUDA graph
//   empirical  the empirical denoiser's step on Fashion-MNIST at batch 1 and 64 against the
//              memory floor (dataset bytes over the copy bandwidth measured in this run)
//   previews   the engine with a frame observer on every step against none
//   devices    CPU and CUDA final samples from the same seed (max abs difference)
//   sweep      a 6 x 4 sweep against the 24 runs it stands for
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "app/bench/ConvNet.h"
#include "app/bench/FluxBench.h"
#include "app/bench/OperationCounter.h"
#include "core/api/Engine.h"
#include "core/api/Names.h"
#include "core/io/RegularFile.h"
#include "core/models/Datasets.h"
#include "core/io/SafeTensors.h"
#include "core/models/Architecture.h"
#include "core/models/EmpiricalDenoiser.h"
#include "core/models/FlowNet.h"
#include "core/sampling/Device.h"


using namespace flowscope;

namespace {

struct Figure {
    std::string section;
    std::string name;
    double milliseconds;
    std::string note;
};

struct Ratio {
    std::string name;
    double value;
    std::string target;  // empty: reported only
};

struct Settings {
    bool json = false;
    int repeats = 15;
    int64_t images = 0;
    std::string device = "auto";
    std::set<std::string> sections{"overhead", "empirical", "previews", "devices", "sweep", "guidance"};
    std::string modelDirectory;  // where the conv nets are written (for the Python baseline)
    int steps = 0;               // 0: 32 on CUDA, 8 on the CPU
};

torch::Device g_device = torch::kCPU;

void synchronize() {
    if (g_device.is_cuda()) torch::cuda::synchronize();
}

// Median wall time of `repeats` calls after `warmup` calls, in milliseconds, the device
// synchronized before the clock starts and before it stops.
double medianMs(const std::function<void()>& body, int repeats, int warmup = 2) {
    for (int i = 0; i < warmup; ++i) body();
    std::vector<double> samples;
    for (int i = 0; i < repeats; ++i) {
        synchronize();
        const auto start = std::chrono::steady_clock::now();
        body();
        synchronize();
        samples.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
    return samples[samples.size() / 2];
}

void usage() {
    std::printf(
        "usage: flowscope-bench [--json] [--repeats N] [--images N] [--device auto|cpu|cuda] [--steps N]\n"
        "                       [--sections overhead,empirical,previews,devices,sweep,guidance,flux] [--model-dir DIR]\n"
        "  flux (not run by default): a FLUX.1-shaped transformer with random weights, its text encoders and decoder\n"
        "  --model-dir DIR   write the benchmark's conv nets there (bench/python_baseline.py reads them)\n");
}

std::string fixed(double value, int digits = 3) {
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", digits, value);
    return text;
}

std::string jsonEscape(const std::string& text) {
    std::string out;
    for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) >= 0x20) out += c;
    }
    return out;
}

class Bench {
public:
    explicit Bench(Settings settings) : m_settings(std::move(settings)) {}

    void run() {
        m_steps = m_settings.steps > 0 ? m_settings.steps : (g_device.is_cuda() ? 32 : 8);
        if (m_settings.sections.count("overhead") || m_settings.sections.count("previews") ||
            m_settings.sections.count("devices") || m_settings.sections.count("sweep") ||
            m_settings.sections.count("guidance")) {
            writeNets();
        }
        if (m_settings.sections.count("overhead")) overhead();
        if (m_settings.sections.count("empirical")) empirical();
        if (m_settings.sections.count("previews")) previews();
        if (m_settings.sections.count("devices")) devices();
        if (m_settings.sections.count("sweep")) sweep();
        if (m_settings.sections.count("guidance")) guidance();
        if (m_settings.sections.count("flux")) flux();
    }

    void print() const {
        const std::string device = core::describeDevice(g_device);
        if (m_settings.json) {
            std::printf("{\"device\":\"%s\",\"libtorch\":\"%s\",\"steps\":%d,\"repeats\":%d,\"figures\":[",
                        jsonEscape(device).c_str(), TORCH_VERSION, m_steps, m_settings.repeats);
            for (size_t i = 0; i < m_figures.size(); ++i) {
                const auto& f = m_figures[i];
                std::printf("%s{\"section\":\"%s\",\"name\":\"%s\",\"ms\":%.5f,\"note\":\"%s\"}", i ? "," : "",
                            f.section.c_str(), jsonEscape(f.name).c_str(), f.milliseconds, jsonEscape(f.note).c_str());
            }
            std::printf("],\"ratios\":[");
            for (size_t i = 0; i < m_ratios.size(); ++i) {
                const auto& r = m_ratios[i];
                std::printf("%s{\"name\":\"%s\",\"value\":%.6g,\"target\":\"%s\"}", i ? "," : "", jsonEscape(r.name).c_str(),
                            r.value, jsonEscape(r.target).c_str());
            }
            std::printf("],\"notes\":[");
            for (size_t i = 0; i < m_notes.size(); ++i) std::printf("%s\"%s\"", i ? "," : "", jsonEscape(m_notes[i]).c_str());
            std::printf("]}\n");
            return;
        }
        std::printf("FlowScope engine benchmark (%s, LibTorch %s), median of %d runs\n", device.c_str(), TORCH_VERSION,
                    m_settings.repeats);
        std::string section;
        for (const auto& f : m_figures) {
            if (f.section != section) {
                section = f.section;
                std::printf("\n[%s]\n", section.c_str());
            }
            std::printf("  %-58s %11.4f ms  %s\n", f.name.c_str(), f.milliseconds, f.note.c_str());
        }
        std::printf("\nratios\n");
        for (const auto& r : m_ratios) {
            std::printf("  %-58s %9.3f  %s\n", r.name.c_str(), r.value, r.target.empty() ? "" : ("(target " + r.target + ")").c_str());
        }
        for (const auto& note : m_notes) std::printf("  note: %s\n", note.c_str());
    }

    double sink = 0.0;

private:
    void add(const std::string& section, const std::string& name, double ms, const std::string& note = {}) {
        m_figures.push_back({section, name, ms, note});
    }

    void writeNets() {
        m_directory = m_settings.modelDirectory;
        if (m_directory.empty()) {
            m_directory = (std::filesystem::temp_directory_path() / "flowscope-bench-models").string();
        }
        m_small = {64, 6, 1, 28};
        // The larger net: more channels and blocks (on a GPU also larger images), so that the
        // forward pass, not launching it, dominates.
        m_large = g_device.is_cuda() ? bench::ConvNetShape{128, 8, 3, 64} : bench::ConvNetShape{128, 8, 1, 28};
        bench::writeConvNetBundle(m_directory + "/small", m_small, 1);
        bench::writeConvNetBundle(m_directory + "/large", m_large, 2);
    }

    core::SampleRequest netRequest(const std::string& net, int steps, int batch) const {
        core::SampleRequest request;
        request.model = core::makeSpec(core::SpecForm::Bundle, m_directory + "/" + net);
        request.trustModel = true;
        request.steps = steps;
        request.batch = batch;
        request.solver = "euler";
        request.device = m_settings.device;
        return request;
    }

    void overhead() {
        constexpr int kBatch = 16;
        for (const char* net : {"small", "large"}) {
            const bench::ConvNetShape& shape = std::string(net) == "small" ? m_small : m_large;
            torch::jit::Module module = torch::jit::load(m_directory + "/" + net + "/model.pt", g_device);
            module.eval();
            const torch::Tensor x = torch::randn({kBatch, shape.imageChannels, shape.size, shape.size}).to(g_device);
            const torch::Tensor time = torch::full({kBatch}, 0.5).to(g_device);
            const int repeats = std::string(net) == "large" && !g_device.is_cuda() ? 3 : m_settings.repeats;
            // As many forward passes back to back as the engine takes steps, per pass.
            const double forward = medianMs(
                [&] {
                    for (int i = 0; i < m_steps; ++i) sink += module.forward({x, time}).toTensor().size(0);
                },
                repeats) / m_steps;
            const std::string label = std::string(net) + " net (" + std::to_string(shape.channels) + " ch, " +
                                      std::to_string(shape.blocks) + " residual convs, " +
                                      std::to_string(shape.imageChannels) + "x" + std::to_string(shape.size) + "x" +
                                      std::to_string(shape.size) + ", batch 16)";
            add("overhead", label + ": forward alone", forward,
                fixed(bench::convNetFlops(shape, kBatch) / (forward * 1e-3) / 1e12, 2) + " TFLOP/s");

            core::Engine engine;
            core::SampleRequest request = netRequest(net, m_steps, kBatch);
            request.cudaGraphs = false;
            const double plain = medianMs([&] { checked(engine.sample(request)); }, repeats) / m_steps;
            add("overhead", label + ": engine loop, per step", plain, "Euler, " + std::to_string(m_steps) + " steps");
            m_ratios.push_back({std::string(net) + " net: engine step / forward", plain / forward, "<= 1.03 (GPU)"});
            if (std::string(net) == "small") {
                // Operations per step beyond the forward pass: the engine's share of the launches.
                int64_t forwardOps = 0, engineOps[2] = {0, 0};
                {
                    const bench::OperationCounter counter;
                    sink += module.forward({x, time}).toTensor().size(0);
                    forwardOps = counter.count();
                }
                for (int k = 0; k < 2; ++k) {
                    core::SampleRequest counted = netRequest(net, 8 * (k + 1), kBatch);
                    counted.cudaGraphs = false;
                    const bench::OperationCounter counter;
                    checked(engine.sample(counted));
                    engineOps[k] = counter.count();
                }
                const double perStep = static_cast<double>(engineOps[1] - engineOps[0]) / 8.0;
                m_ratios.push_back({"small net: ATen operations per forward pass", static_cast<double>(forwardOps), ""});
                m_ratios.push_back({"small net: ATen operations per engine step beyond the forward",
                                    perStep - static_cast<double>(forwardOps),
                                    ""});
            }
            if (g_device.is_cuda()) {
                request.cudaGraphs = true;
                bool replayed = false;
                const double graphed = medianMs([&] { replayed = checked(engine.sample(request)).cudaGraph; }, repeats, 3) / m_steps;
                add("overhead", label + ": engine as a CUDA graph, per step", graphed, replayed ? "replayed" : "NOT replayed");
                m_ratios.push_back({std::string(net) + " net: plain loop / CUDA graph", plain / graphed,
                                    std::string(net) == "small" ? ">= 1.3" : ""});
                // The graph must give the plain loop's samples exactly.
                core::SampleRequest same = netRequest(net, m_steps, kBatch);
                same.cudaGraphs = false;
                const auto a = checked(engine.sample(same));
                same.cudaGraphs = true;
                const auto b = checked(engine.sample(same));
                m_ratios.push_back({std::string(net) + " net: max |graph - plain|", maxAbsDifference(a.final, b.final), "0"});
            }
        }
    }

    void empirical() {
        torch::Tensor data;
        try {
            data = core::loadFashionMnist(true, m_settings.images);
        } catch (const std::exception& error) {
            // The step's speed does not depend on the pixels (on a GPU machine without the
            // dataset package): random images of the same shape.
            data = torch::rand({m_settings.images > 0 ? m_settings.images : 60000, 1, 28, 28}) * 2 - 1;
            m_notes.push_back("empirical section on random data of Fashion-MNIST's shape (" + std::string(error.what()) + ")");
        }
        core::EmpiricalDenoiser denoiser("fashion-mnist", data);
        core::EmpiricalDenoiser halved("fashion-mnist:bf16", data, core::EmpiricalDenoiser::Storage::BFloat16);
        const auto n = data.size(0);
        const auto dim = data.numel() / n;
        denoiser.prepare(g_device, torch::kFloat32);
        halved.prepare(g_device, torch::kFloat32);
        const double datasetBytes = static_cast<double>(n * dim) * 4.0;

        // Copy bandwidth, counting bytes read and written, on a buffer well beyond the caches.
        const int64_t copyElements = g_device.is_cuda() ? (int64_t{1} << 28) : (int64_t{1} << 25);
        const torch::Tensor source = torch::rand({copyElements}, torch::TensorOptions().device(g_device));
        torch::Tensor target = torch::empty_like(source);
        const double copyMs = medianMs([&] { target.copy_(source); }, m_settings.repeats);
        const double bandwidth = 2.0 * copyElements * 4.0 / (copyMs * 1e-3);
        add("empirical", "copy of " + std::to_string(copyElements * 4 >> 20) + " MiB", copyMs,
            fixed(bandwidth / 1e9, 1) + " GB/s read + write");
        const double floor = datasetBytes / bandwidth * 1e3;
        add("empirical", "floor: dataset bytes / copy bandwidth", floor,
            std::to_string(n) + " x " + std::to_string(dim) + " float32");
        add("empirical", "floor in bfloat16 storage", floor / 2.0, "half the bytes");

        // The three strategies at batch 1 (the fused pass only on the CPU), then bfloat16 storage
        // against float32 in time and in error.
        const char* usual = g_device.is_cuda() ? "two matrix products" : "fused single pass";
        double slowest1 = 0.0, slowestHalved = 0.0, total1 = 0.0, totalHalved = 0.0, worstError = 0.0,
               largestValue = 0.0;
        for (double t : {0.05, 0.5, 0.95}) {
            const torch::Tensor x1 = (t * data.reshape({n, dim}).narrow(0, 17, 1) + (1.0 - t) * torch::randn({1, dim}))
                                         .reshape({1, data.size(1), data.size(2), data.size(3)})
                                         .to(g_device);
            const std::string at = "step, batch 1, t = " + fixed(t, 2);
            const double step = medianMs([&] { sink += denoiser.denoise(x1, t, 1.0 - t).size(0); }, m_settings.repeats);
            add("empirical", at, step, usual);
            slowest1 = std::max(slowest1, step);
            total1 += step;
            const torch::Tensor flat = x1.reshape({1, dim});
            if (!g_device.is_cuda()) {
                const double matmul =
                    medianMs([&] { sink += denoiser.denoiseMatmul(flat, t, 1.0 - t).size(0); }, m_settings.repeats);
                add("empirical", at + " (two matrix products)", matmul);
            }
            const double chunked = medianMs(
                [&] { sink += denoiser.denoiseMatmul(flat, t, 1.0 - t, core::EmpiricalDenoiser::kChunkBytes / (dim * 4)).size(0); },
                m_settings.repeats);
            add("empirical", at + " (products over 16 MiB chunks)", chunked);
            const double half = medianMs([&] { sink += halved.denoise(x1, t, 1.0 - t).size(0); }, m_settings.repeats);
            add("empirical", at + ", bfloat16 storage", half,
                g_device.is_cuda() ? "products over one widened copy" : "fused single pass, float32 arithmetic");
            if (g_device.is_cuda()) {
                // Whether chunks widened in L2 beat the widened copy on this GPU.
                const double halfChunked = medianMs(
                    [&] { sink += halved.denoiseMatmul(flat, t, 1.0 - t, core::EmpiricalDenoiser::kChunkBytes / (dim * 4)).size(0); },
                    m_settings.repeats);
                add("empirical", at + ", bfloat16 storage, products over 16 MiB chunks", halfChunked);
            }
            slowestHalved = std::max(slowestHalved, half);
            totalHalved += half;
            const torch::Tensor exact = denoiser.denoise(x1, t, 1.0 - t);
            worstError = std::max(worstError, (halved.denoise(x1, t, 1.0 - t) - exact).abs().max().item<double>());
            largestValue = std::max(largestValue, exact.abs().max().item<double>());
        }
        const torch::Tensor x64 = torch::randn({64, data.size(1), data.size(2), data.size(3)}).to(g_device);
        const int repeats64 = std::max(3, m_settings.repeats / 3);
        const double step64 = medianMs([&] { sink += denoiser.denoise(x64, 0.5, 0.5).size(0); }, repeats64);
        add("empirical", "step, batch 64, t = 0.50", step64);
        const double half64 = medianMs([&] { sink += halved.denoise(x64, 0.5, 0.5).size(0); }, repeats64);
        add("empirical", "step, batch 64, t = 0.50, bfloat16 storage", half64);
        worstError = std::max(worstError, (halved.denoise(x64, 0.5, 0.5) - denoiser.denoise(x64, 0.5, 0.5)).abs().max().item<double>());
        m_ratios.push_back({"empirical batch 1: floor / step (share of bandwidth)", floor / slowest1,
                            g_device.is_cuda() ? ">= 0.5" : ""});
        m_ratios.push_back({"empirical batch 1, bfloat16: its floor / step", floor / 2.0 / slowestHalved, ""});
        m_ratios.push_back({"empirical batch 1: float32 / bfloat16 steps (the three t)", total1 / totalHalved, ""});
        m_ratios.push_back({"empirical batch 64: floor / step", floor / step64, ""});
        m_ratios.push_back({"empirical batch 64: float32 / bfloat16 step", step64 / half64, ""});
        m_ratios.push_back({"empirical bfloat16: max |x0 - float32 x0| (x0 up to " + fixed(largestValue, 2) + ")",
                            worstError, ""});
    }

    void previews() {
        constexpr int kBatch = 16;
        core::Engine engine;
        core::SampleRequest request = netRequest("small", m_steps, kBatch);
        request.cudaGraphs = false;
        const double none = medianMs([&] { checked(engine.sample(request)); }, m_settings.repeats);
        int frames = 0;
        const auto observer = [&](const core::StepFrame& frame) {
            ++frames;
            sink += frame.state.values.empty() ? 0.0 : frame.state.values.front();
        };
        const double every = medianMs([&] { checked(engine.sample(request, observer)); }, m_settings.repeats);
        add("previews", "small net, " + std::to_string(m_steps) + " steps, no frames", none);
        add("previews", "small net, " + std::to_string(m_steps) + " steps, a frame every step", every,
            "state + prediction to the host");
        m_ratios.push_back({"previews on every step / none", every / none, "<= 1.05"});
    }

    void devices() {
        if (!g_device.is_cuda()) {
            m_notes.push_back("devices section: no CUDA device here, CPU against CUDA not measured");
            return;
        }
        core::Engine engine;
        for (const char* model : {"small", "gmm:8gaussians"}) {
            core::SampleRequest request = netRequest("small", 8, 16);
            if (std::string(model) != "small") request.model = model;
            request.seed = 42;
            request.device = "cpu";
            const auto cpu = checked(engine.sample(request));
            request.device = "cuda";
            const auto cuda = checked(engine.sample(request));
            m_ratios.push_back({std::string(model) + ": max |CPU - CUDA| of the final samples",
                                maxAbsDifference(cpu.final, cuda.final), ""});
        }
    }

    // A conditional UNet of the size FlowScope ships for Fashion-MNIST (width 16, ten classes),
    // with its initial weights: a step costs the same whatever the weights.
    std::string writeConditionalBundle() const {
        const std::string folder = m_directory + "/conditional";
        std::filesystem::create_directories(folder);
        core::Architecture architecture;
        architecture.kind = "unet";
        architecture.sampleShape = {1, 28, 28};
        architecture.width = 16;
        architecture.depth = 2;
        architecture.classes = 10;
        const auto network = core::makeFlowNet(architecture, 1);
        std::vector<std::pair<std::string, torch::Tensor>> tensors;
        for (const auto& item : network->named_parameters()) tensors.emplace_back(item.key(), item.value().detach());
        core::writeSafeTensors(folder + "/weights.safetensors", tensors, {{"format", "flowscope-net"}});
        std::string classes;
        for (int c = 0; c < 10; ++c) classes += std::string(c ? ", " : "") + "\"c" + std::to_string(c) + "\"";
        std::ofstream(folder + "/flowscope.json")
            << "{\"name\": \"conditional\", \"format\": \"flowscope-net\", \"file\": \"weights.safetensors\", "
               "\"prediction\": \"velocity\", \"path\": \"linear\", \"time_input\": \"t\", \"sample_shape\": [1, 28, 28], "
               "\"value_range\": [-1, 1], \"architecture\": " << architecture.toJson() << ", \"classes\": [" << classes << "]}\n";
        return core::makeSpec(core::SpecForm::Bundle, folder);
    }

    void flux() {
        if (m_directory.empty()) writeNets();
        const auto timer = [](const std::function<void()>& body, int repeats) { return medianMs(body, repeats, 1); };
        auto times = bench::benchFlux(m_directory, g_device, std::max(3, m_settings.repeats / 3), timer);
        bench::benchFloat8(m_directory, g_device, std::max(3, m_settings.repeats / 3), timer, times);
        add("flux", times.shape + ": one Euler step through the engine's sampler", times.engineStepMs);
        add("flux", times.shape + ": the transformer's forward pass alone", times.forwardMs);
        add("flux", "CLIP-L text encoder (77 tokens)", times.clipMs);
        add("flux", "T5 encoder at the transformer's width (256 tokens)", times.t5Ms);
        add("flux", "autoencoder decode (FLUX.1's published decoder shape) of one " + std::to_string(times.side) + "x" +
                        std::to_string(times.side) + " image", times.decodeMs);
        m_ratios.push_back({"FLUX.1 step through the engine / transformer forward alone", times.engineStepMs / times.forwardMs,
                            "at most 1.03"});
        add("flux", "fp8 file's transformer forward, matrices widened at load", times.float8WidenedMs);
        add("flux", "fp8 file's transformer forward, matrices kept packed (max |difference| " +
                        fixed(times.float8Difference, 6) + ")", times.float8PackedMs);
        const double wide = g_device.is_cuda() ? 2.0 : 4.0;
        m_ratios.push_back({"fp8 transformer forward: packed / widened at load (weights " +
                                core::describeBytes((times.parameters - times.float8Parameters) * wide + times.float8Parameters) +
                                " against " + core::describeBytes(times.parameters * wide) + ")",
                            times.float8PackedMs / times.float8WidenedMs, ""});
    }

    void guidance() {
        // Classifier-free guidance asks for the class and the null class at every step: batched,
        // that is one forward pass of 2B rows, which should cost about what an unguided step at
        // batch 2B costs (and much less than two passes of B rows on a launch-bound GPU).
        const std::string model = writeConditionalBundle();
        core::Engine engine;
        constexpr int kBatch = 32;
        const int steps = m_steps;
        const auto perStep = [&](int batch, double scale) {
            core::SampleRequest request;
            request.model = model;
            request.steps = steps;
            request.batch = batch;
            request.device = m_settings.device;
            request.condition = "c3";
            request.guidance.method = core::GuidanceMethod::Cfg;
            request.guidance.scale = scale;
            return medianMs([&] { checked(engine.sample(request)); }, std::max(3, m_settings.repeats / 3), 1) / steps;
        };
        const double plain = perStep(kBatch, 1.0);
        const double plainDouble = perStep(2 * kBatch, 1.0);
        const double guided = perStep(kBatch, 3.0);
        add("guidance", "conditional UNet (width 16), one step at batch 32, unguided (w = 1)", plain);
        add("guidance", "conditional UNet (width 16), one step at batch 64, unguided", plainDouble);
        add("guidance", "conditional UNet (width 16), one step at batch 32, cfg w = 3 (one pass of 64 rows)", guided);
        m_ratios.push_back({"guided step at batch 32 / unguided step at batch 64", guided / plainDouble, "at most 1.15"});
        m_ratios.push_back({"guided step / unguided step, both at batch 32", guided / plain, "below 2"});
    }

    void sweep() {
        // 6 cells (2 paths x 3 solvers) times 4 step counts: on the small net, and on the 8-Gaussian
        // mixture, whose evaluations are so cheap that per-call costs dominate (as launches do on
        // a GPU).
        for (const std::string& model : {std::string("small net"), std::string("gmm:8gaussians")}) {
            core::SweepRequest request;
            request.model = model == "small net" ? core::makeSpec(core::SpecForm::Bundle, m_directory + "/small") : model;
            request.trustModel = true;
            request.paths = {"linear", "vp"};
            request.solvers = {"euler", "dpm++2m", "euler-a"};
            request.steps = {1, 2, 4, 8};
            request.batch = 4;
            request.device = m_settings.device;
            request.referenceTolerance = 1e-4;
            core::Engine engine;
            const int repeats = model == "small net" ? std::max(3, m_settings.repeats / 5) : m_settings.repeats;
            const auto timeSweep = [&](bool lanes) {
                request.batchCells = lanes;
                // Every sweep solves the references its RMSE needs (one float64 dopri5 solve per
                // path), so the separate runs below solve them too.
                return medianMs(
                    [&] {
                        const auto result = engine.sweep(request);
                        if (!result.ok()) throw std::runtime_error(result.error);
                    },
                    repeats, 1);
            };
            const double lanes = timeSweep(true);
            const double cells = timeSweep(false);
            const double separate = medianMs(
                [&] {
                    for (const auto& path : request.paths) {
                        core::SampleRequest reference;
                        reference.model = request.model;
                        reference.trustModel = true;
                        reference.device = m_settings.device;
                        reference.batch = request.batch;
                        reference.path = path;
                        reference.solver = std::string(core::kAdaptiveSolver);
                        reference.dtype = request.referenceDtype;
                        reference.rtol = reference.atol = request.referenceTolerance;
                        checked(engine.sample(reference));
                        for (const auto& solver : request.solvers) {
                            for (int steps : request.steps) {
                                core::SampleRequest one;
                                one.model = request.model;
                                one.trustModel = true;
                                one.device = m_settings.device;
                                one.batch = request.batch;
                                one.steps = steps;
                                one.path = path;
                                one.solver = solver;
                                checked(engine.sample(one));
                            }
                        }
                    }
                },
                repeats, 1);
            const std::string label = model + ": 6 x 4 sweep (2 paths x 3 solvers x 1,2,4,8 steps), batch 4";
            add("sweep", label + ", lanes in one batch", lanes);
            add("sweep", label + ", cell by cell", cells);
            add("sweep", model + ": the same 24 runs and 2 references one by one", separate);
            m_ratios.push_back({model + ": 24 separate runs and references / one 6 x 4 sweep", separate / lanes, "far above 1"});
        }
        // dopri5 as lanes, each lane with its own steps: a sweep of three paths' dopri5 cells from
        // a fresh engine, so that it also solves the three float64 references (together as lanes,
        // or one by one), model load included. Also on a small dataset's exact denoiser, whose
        // matrix products gain from the larger batch.
        for (const std::string& model : {std::string("small net"), std::string("gmm:8gaussians"), std::string("fashion-mnist:2000")}) {
            core::SweepRequest adaptive;
            adaptive.model = model == "small net" ? core::makeSpec(core::SpecForm::Bundle, m_directory + "/small") : model;
            adaptive.trustModel = true;
            adaptive.batch = 4;
            adaptive.device = m_settings.device;
            adaptive.referenceTolerance = 1e-4;
            adaptive.paths = {"linear", "vp", "cosine"};
            adaptive.solvers = {std::string(core::kAdaptiveSolver)};
            adaptive.steps = {8};
            if (model.starts_with("fashion-mnist") && !core::Engine::info().fashionMnistInstalled) {
                m_notes.push_back("dopri5 sweep on fashion-mnist:2000 skipped: the dataset package is not installed");
                continue;
            }
            // Each sweep takes a dozen solves, each of dozens of evaluations: few repeats.
            const int repeats = std::max(3, m_settings.repeats / 5);
            const auto sweepOnce = [&] {
                const auto result = core::Engine().sweep(adaptive);
                if (!result.ok()) throw std::runtime_error(result.error);
            };
            // The warm-up run counts the ATen operations (on a GPU, launches).
            const auto timeAdaptive = [&](bool lanes, int64_t& operations) {
                adaptive.batchCells = lanes;
                {
                    const bench::OperationCounter counter;
                    sweepOnce();
                    operations = counter.count();
                }
                return medianMs(sweepOnce, repeats, 0);
            };
            int64_t lanesOperations = 0, aloneOperations = 0;
            const double adaptiveLanes = timeAdaptive(true, lanesOperations);
            const double adaptiveAlone = timeAdaptive(false, aloneOperations);
            const std::string adaptiveLabel = model + ": dopri5 on 3 paths with their references, fresh engine";
            add("sweep", adaptiveLabel + ", lanes", adaptiveLanes,
                "3 references, 3 cells; " + std::to_string(lanesOperations) + " operations");
            add("sweep", adaptiveLabel + ", one by one", adaptiveAlone, std::to_string(aloneOperations) + " operations");
            m_ratios.push_back({model + ": dopri5 sweep and references one by one / as lanes", adaptiveAlone / adaptiveLanes, ""});
        }
    }

    static const core::SampleResult& checked(const core::SampleResult& result) {
        if (!result.ok()) throw std::runtime_error(result.error);
        return result;
    }

    static double maxAbsDifference(const core::HostArray& a, const core::HostArray& b) {
        if (a.values.size() != b.values.size()) return INFINITY;
        double worst = 0.0;
        for (size_t i = 0; i < a.values.size(); ++i) worst = std::max(worst, std::abs(double(a.values[i]) - b.values[i]));
        return worst;
    }

    Settings m_settings;
    int m_steps = 8;
    std::string m_directory;
    bench::ConvNetShape m_small, m_large;
    std::vector<Figure> m_figures;
    std::vector<Ratio> m_ratios;
    std::vector<std::string> m_notes;
};

}  // namespace

// A whole number in [lo, hi], or a message and false: a typo never becomes another setting.
bool parseWhole(const std::string& option, const char* text, int lo, int hi, int* out) {
    const std::string_view value(text);
    int parsed = 0;
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), parsed);
    if (error != std::errc() || end != value.data() + value.size() || parsed < lo || parsed > hi) {
        std::fprintf(stderr, "flowscope-bench: %s must be a whole number from %d to %d (got '%s')\n", option.c_str(), lo, hi,
                     text);
        return false;
    }
    *out = parsed;
    return true;
}

int main(int argc, char** argv) {
    Settings settings;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool hasValue = i + 1 < argc;
        if (arg == "--json") {
            settings.json = true;
        } else if (arg == "--repeats" && hasValue) {
            // A median of fewer than three runs would be one noisy run.
            if (!parseWhole(arg, argv[++i], 3, 1000, &settings.repeats)) return 2;
        } else if (arg == "--images" && hasValue) {
            int images = 0;
            if (!parseWhole(arg, argv[++i], 1, 60000, &images)) return 2;
            settings.images = images;
        } else if (arg == "--steps" && hasValue) {
            if (!parseWhole(arg, argv[++i], 1, 10000, &settings.steps)) return 2;
        } else if (arg == "--device" && hasValue) {
            settings.device = argv[++i];
        } else if (arg == "--model-dir" && hasValue) {
            settings.modelDirectory = argv[++i];
        } else if (arg == "--sections" && hasValue) {
            settings.sections.clear();
            std::stringstream list(argv[++i]);
            for (std::string name; std::getline(list, name, ',');) {
                if (name != "overhead" && name != "empirical" && name != "previews" && name != "devices" &&
                    name != "sweep" && name != "guidance" && name != "flux") {
                    std::fprintf(stderr, "flowscope-bench: unknown section '%s'\n", name.c_str());
                    usage();
                    return 2;
                }
                settings.sections.insert(name);
            }
            if (settings.sections.empty()) {
                std::fprintf(stderr, "flowscope-bench: --sections needs at least one section\n");
                usage();
                return 2;
            }
        } else if (arg == "--help" || arg == "-h") {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    core::configureThreads();
    try {
        g_device = core::resolveDevice(settings.device);
    } catch (const std::exception& error) {
        std::fprintf(stderr, "flowscope-bench: %s\n", error.what());
        return 2;
    }
    c10::InferenceMode inference;
    Bench bench(settings);
    try {
        bench.run();
    } catch (const std::exception& error) {
        std::fprintf(stderr, "flowscope-bench: %s\n", error.what());
        return 1;
    }
    bench.print();
    return bench.sink == 0.123456789 ? 1 : 0;  // keeps the measured work observable
}
