// The engine on its device: CUDA graphs, staged frames, out-of-memory recovery, CPU against
// CUDA. Needs nothing but LibTorch (no Qt), so that a GPU machine with only a pip torch builds
// and runs it (bench/gpu.sh). Cases that need a GPU say SKIP where there is none; the rest run on
// the CPU as well.
//   tst_device SOURCE_DIR [case...]
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "app/bench/ConvNet.h"
#include "app/bench/OperationCounter.h"
#include "core/api/Checkpoints.h"
#include "core/api/Engine.h"
#include "core/models/EmpiricalDenoiser.h"
#include "core/sampling/CudaGraph.h"
#include "core/sampling/Device.h"
#include "core/sampling/NoiseSource.h"

using namespace flowscope;

namespace {

struct Skip : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string g_sourceDir;
std::string g_scratch;

#define EXPECT(condition, message)                                                                      \
    do {                                                                                               \
        if (!(condition)) {                                                                            \
            throw std::runtime_error(std::string(#condition) + " failed (line " + std::to_string(__LINE__) + \
                                     "): " + (message));                                              \
        }                                                                                              \
    } while (false)

bool hasCuda() { return core::cudaAvailable(); }
std::string device() { return hasCuda() ? "cuda" : "cpu"; }

double maxAbsDifference(const core::HostArray& a, const core::HostArray& b) {
    if (a.shape != b.shape) return INFINITY;
    double worst = 0.0;
    for (size_t i = 0; i < a.values.size(); ++i) worst = std::max(worst, std::abs(double(a.values[i]) - b.values[i]));
    return worst;
}

const core::SampleResult& ok(const core::SampleResult& result) {
    if (!result.ok()) throw std::runtime_error("run failed: " + result.error);
    return result;
}

std::string convNet() {
    static std::string directory;
    if (directory.empty()) {
        directory = g_scratch + "/convnet";
        bench::writeConvNetBundle(directory, {32, 3, 1, 16}, 5);
    }
    return "bundle:" + directory;
}

// Fixed-step deterministic runs replay a CUDA graph from their second run on, with the plain
// loop's samples and metrics exactly; stochastic, adaptive and observed runs never do.
void graphsReplayThePlainLoop() {
    core::Engine engine;
    for (const std::string& model : {std::string("gmm:8gaussians"), convNet()}) {
        for (const char* solver : {"euler", "heun", "rk4", "dpm++2m", "ddim"}) {
            core::SampleRequest request;
            request.model = model;
            request.trustModel = true;
            request.solver = solver;
            request.path = std::string(solver) == "ddim" ? "vp" : "linear";
            request.steps = 6;
            request.batch = 8;
            request.device = device();
            request.cudaGraphs = false;
            const auto plain = ok(engine.sample(request));
            EXPECT(!plain.cudaGraph, "graphs were off");
            request.cudaGraphs = true;
            const auto first = ok(engine.sample(request));
            const auto second = ok(engine.sample(request));
            EXPECT(!first.cudaGraph, "a run seen for the first time is not captured");
            EXPECT(second.cudaGraph == (hasCuda() && core::CudaGraph::available()),
                   std::string(solver) + ": the second run replays a graph on CUDA only");
            EXPECT(maxAbsDifference(plain.final, second.final) == 0.0, model + " " + solver + ": graph differs from the loop");
            EXPECT(plain.straightness == second.straightness && plain.pathLengthRatio == second.pathLengthRatio,
                  "metrics differ");
            EXPECT(plain.nfe == second.nfe && plain.steps == second.steps, "counts differ");
            // Another seed through the same graph: new noise in, the loop's answer out.
            request.seed = 9;
            const auto replayed = ok(engine.sample(request));
            request.cudaGraphs = false;
            const auto loop = ok(engine.sample(request));
            EXPECT(maxAbsDifference(replayed.final, loop.final) == 0.0, "a replay with new noise differs from the loop");
            EXPECT(maxAbsDifference(replayed.initial, loop.initial) == 0.0, "initial states differ");
        }
    }
    core::SampleRequest stochastic;
    stochastic.model = "gmm:8gaussians";
    stochastic.solver = "euler-a";
    stochastic.path = "vp";
    stochastic.device = device();
    for (int i = 0; i < 3; ++i) EXPECT(!ok(engine.sample(stochastic)).cudaGraph, "a stochastic solver was captured");
    core::SampleRequest observed;
    observed.model = "gmm:8gaussians";
    observed.device = device();
    int frames = 0;
    for (int i = 0; i < 3; ++i) {
        EXPECT(!ok(engine.sample(observed, [&](const core::StepFrame&) { ++frames; })).cudaGraph, "an observed run was captured");
    }
    EXPECT(frames == 3 * (observed.steps + 1), "every frame of every observed run");
}

// A sweep between two runs prepares the model in float64 for its references (as lanes): the
// graphs captured before must not be replayed afterwards on the tensors that move freed. Every
// run after the sweep gives the plain loop's samples, whether it replays a graph or not.
void graphsSurviveASweep() {
    core::Engine engine;
    for (const std::string& model : {std::string("gmm:8gaussians"), std::string("fashion-mnist:300")}) {
        if (model.starts_with("fashion-mnist") && !core::Engine::info().fashionMnistInstalled) continue;
        core::SampleRequest request;
        request.model = model;
        request.steps = 5;
        request.batch = 4;
        request.device = device();
        request.cudaGraphs = false;
        const auto loop = ok(engine.sample(request));
        request.cudaGraphs = true;
        ok(engine.sample(request));
        const auto captured = ok(engine.sample(request));
        EXPECT(maxAbsDifference(captured.final, loop.final) == 0.0, model + ": the replay before the sweep");
        core::SweepRequest sweep;
        sweep.model = model;
        sweep.paths = {"linear", "vp"};
        sweep.solvers = {"euler", "dopri5"};
        sweep.steps = {2, 4};
        sweep.batch = 4;
        sweep.seed = 3;
        sweep.device = device();
        sweep.referenceTolerance = 1e-4;
        const auto swept = engine.sweep(sweep);
        EXPECT(swept.ok(), swept.error);
        for (int i = 0; i < 3; ++i) {
            const auto after = ok(engine.sample(request));
            EXPECT(maxAbsDifference(after.final, loop.final) == 0.0,
                   model + ": run " + std::to_string(i + 1) + " after the sweep differs from the loop");
        }
    }
}

// Frames arrive once per state, in order, with the states and predictions of the recorded
// trajectory (on CUDA they are copied on a side stream and handed over a step late).
void framesMatchTheTrajectory() {
    core::Engine engine;
    core::SampleRequest request;
    request.model = convNet();
    request.trustModel = true;
    request.steps = 7;
    request.batch = 3;
    request.device = device();
    request.recordTrajectory = true;
    std::vector<core::StepFrame> frames;
    const auto result = ok(engine.sample(request, [&](const core::StepFrame& frame) { frames.push_back(frame); }));
    EXPECT(static_cast<int>(frames.size()) == request.steps + 1, "one frame per state");
    const int64_t per = result.trajectory.count() / (request.steps + 1);
    for (int k = 0; k <= request.steps; ++k) {
        const auto& frame = frames[k];
        EXPECT(frame.index == k, "frames in order");
        EXPECT(frame.final == (k == request.steps), "only the last frame is final");
        EXPECT(frame.state.count() == per, "frame state shape");
        double worst = 0.0, worstPrediction = 0.0;
        for (int64_t i = 0; i < per; ++i) {
            worst = std::max(worst, double(std::abs(frame.state.values[i] - result.trajectory.values[k * per + i])));
            worstPrediction = std::max(worstPrediction, double(std::abs(frame.prediction.values[i] -
                                                                        result.predictions.values[k * per + i])));
        }
        EXPECT(worst == 0.0 && worstPrediction == 0.0, "frame " + std::to_string(k) + " differs from the trajectory");
        EXPECT(k == request.steps || frame.velocityRms > 0.0, "velocity RMS on every step");
    }
}

// previewSize averages large frames down on the device; the result stays whole.
void previewSizeShrinksFramesOnly() {
    core::Engine engine;
    core::SampleRequest request;
    request.model = convNet();  // 1 x 16 x 16
    request.trustModel = true;
    request.steps = 3;
    request.batch = 2;
    request.device = device();
    request.previewSize = 8;
    std::vector<core::StepFrame> frames;
    const auto result = ok(engine.sample(request, [&](const core::StepFrame& frame) { frames.push_back(frame); }));
    EXPECT((frames.front().state.shape == std::vector<int64_t>{2, 1, 8, 8}), "frames averaged to 8 x 8");
    EXPECT((result.final.shape == std::vector<int64_t>{2, 1, 16, 16}), "the result keeps its size");
    // Each preview pixel is the mean of a 2 x 2 block of the state.
    request.previewSize = 0;
    request.recordTrajectory = true;
    std::vector<core::StepFrame> whole;
    ok(engine.sample(request, [&](const core::StepFrame& frame) { whole.push_back(frame); }));
    const auto& big = whole[1].state.values;
    const float mean = (big[0] + big[1] + big[16] + big[17]) / 4.0f;
    EXPECT(std::abs(frames[1].state.values[0] - mean) < 1e-5, "area average");
}

// A NaN from the model stops the run with a message, also when checks are deferred (GPU).
void nanStopsTheRun() {
    core::Engine engine;
    core::SampleRequest request;
    request.model = "bundle:" + g_sourceDir + "/resources/fixtures/bundles/faulty-nan";
    request.trustModel = true;
    request.device = device();
    for (bool graphs : {false, true}) {
        request.cudaGraphs = graphs;
        for (int i = 0; i < 2; ++i) {
            const auto result = engine.sample(request);
            EXPECT(!result.ok() && result.error.find("NaN") != std::string::npos, "NaN reported: " + result.error);
        }
    }
}

// A model that waits for the GPU (a branch on a tensor's value) cannot be held by a CUDA graph:
// its capture fails, and the engine runs the plain loop then and from then on. The failed capture
// must leave the device as it was: LibTorch's allocator left believing a capture is under way
// would no longer hand its cache back when memory runs out (outOfMemoryRecovers runs after this).
void failedCaptureRunsThePlainLoop() {
    core::Engine engine;
    core::SampleRequest request;
    request.model = "bundle:" + g_sourceDir + "/resources/fixtures/bundles/gauss-synchronizing";
    request.trustModel = true;
    request.device = device();
    request.steps = 6;
    request.batch = 4;
    request.cudaGraphs = false;
    const auto plain = ok(engine.sample(request));
    request.cudaGraphs = true;
    for (int i = 0; i < 3; ++i) {
        const auto run = ok(engine.sample(request));
        EXPECT(!run.cudaGraph, "a model that synchronizes was replayed as a graph");
        EXPECT(maxAbsDifference(plain.final, run.final) == 0.0, "the fallback differs from the plain loop");
    }
    // The exact flow of N(m, 0.4^2 I) carries noise z to m + 0.4 z: six Euler steps come close.
    EXPECT(maxAbsDifference(plain.final, plain.initial) > 0.1, "the model moved the samples");
}

// Running out of GPU memory is a message, the memory is given back, and the next run works.
void outOfMemoryRecovers() {
    if (!hasCuda()) throw Skip("needs a CUDA GPU");
    const std::string directory = g_scratch + "/huge";
    bench::writeConvNetBundle(directory, {1024, 1, 1, 256}, 3);
    core::Engine engine;
    core::SampleRequest request;
    request.model = "bundle:" + directory;
    request.trustModel = true;
    request.device = "cuda";
    request.steps = 2;
    request.batch = 2048;  // 0.5 GB of noise, but 550 GB for one activation of the stem
    const auto failed = engine.sample(request);
    EXPECT(!failed.ok() && failed.error.find("out of memory") != std::string::npos, "out of memory reported: " + failed.error);
    request.batch = 2;
    ok(engine.sample(request));
    request.model = "gmm:8gaussians";
    ok(engine.sample(request));
}

// The same seed gives the same samples on the CPU and on CUDA (float32, up to rounding).
void cpuAndCudaAgree() {
    if (!hasCuda()) throw Skip("needs a CUDA GPU");
    core::Engine engine;
    for (const std::string& model : {std::string("gmm:8gaussians"), convNet()}) {
        core::SampleRequest request;
        request.model = model;
        request.trustModel = true;
        request.steps = 16;
        request.batch = 16;
        request.seed = 3;
        request.device = "cpu";
        const auto cpu = ok(engine.sample(request));
        request.device = "cuda";
        const auto cuda = ok(engine.sample(request));
        EXPECT(maxAbsDifference(cpu.initial, cuda.initial) == 0.0, "the noise is drawn on the CPU for both");
        const double difference = maxAbsDifference(cpu.final, cuda.final);
        std::printf("    %s: max |CPU - CUDA| = %.3g\n", model.c_str(), difference);
        EXPECT(difference < 1e-3, model + ": CPU and CUDA differ by " + std::to_string(difference));
    }
}

// The empirical denoiser on the device against the CPU (the fused pass at batch 1, products at
// batch 64), in float32 and in bfloat16 storage: its own choice of strategy, the products over
// the whole dataset and over chunks of it (widened on the device in bfloat16).
void empiricalDenoiserOnTheDevice() {
    torch::manual_seed(0);
    const torch::Tensor data = torch::rand({3000, 1, 8, 8}) * 2 - 1;
    using Storage = core::EmpiricalDenoiser::Storage;
    for (Storage storage : {Storage::Float32, Storage::BFloat16}) {
        core::EmpiricalDenoiser cpu("random", data, storage), gpu("random", data, storage);
        gpu.prepare(torch::Device(device()), torch::kFloat32);
        cpu.prepare(torch::kCPU, torch::kFloat32);
        for (double t : {0.05, 0.5, 0.95}) {
            for (int64_t batch : {1, 64}) {
                const torch::Tensor x =
                    t * data.narrow(0, 5, 1).expand({batch, 1, 8, 8}) + (1 - t) * torch::randn({batch, 1, 8, 8});
                const torch::Tensor expected = cpu.denoise(x, t, 1 - t);
                const torch::Tensor onDevice = x.to(torch::Device(device()));
                const torch::Tensor flat = onDevice.reshape({batch, 64});
                const std::vector<std::pair<std::string, torch::Tensor>> results{
                    {"its own choice", gpu.denoise(onDevice, t, 1 - t)},
                    {"whole dataset", gpu.denoiseMatmul(flat, t, 1 - t)},
                    {"chunks of 700 rows", gpu.denoiseMatmul(flat, t, 1 - t, 700)},
                };
                for (const auto& [how, result] : results) {
                    const double difference = (expected - result.cpu().reshape(x.sizes())).abs().max().item<double>();
                    EXPECT(difference < 1e-4, std::string(storage == Storage::BFloat16 ? "bfloat16" : "float32") +
                                                  ", t " + std::to_string(t) + ", batch " + std::to_string(batch) +
                                                  ", " + how + ": " + std::to_string(difference));
                }
            }
        }
    }
}

// The engine's share of a launch-bound GPU loop: ATen operations per Euler step beyond the
// network's own forward pass (bench/RESULTS.md: 14 on the CPU with LibTorch 1.13, 11 on CUDA,
// where the NaN checks are deferred; 30 before they were counted). The bound leaves two for
// another LibTorch's way of dispatching.
void fewOperationsPerStep() {
    const std::string bundle = convNet();
    torch::jit::Module module = torch::jit::load(bundle.substr(7) + "/model.pt", torch::Device(device()));
    module.eval();
    const torch::Tensor x = torch::randn({4, 1, 16, 16}).to(torch::Device(device()));
    const torch::Tensor time = torch::full({4}, 0.5).to(torch::Device(device()));
    int64_t forward = 0;
    {
        const bench::OperationCounter counter;
        module.forward({x, time});
        forward = counter.count();
    }
    core::Engine engine;
    int64_t runs[2] = {0, 0};
    for (int k = 0; k < 2; ++k) {
        core::SampleRequest request;
        request.model = bundle;
        request.trustModel = true;
        request.device = device();
        request.batch = 4;
        request.steps = 8 * (k + 1);
        request.cudaGraphs = false;
        const bench::OperationCounter counter;
        ok(engine.sample(request));
        runs[k] = counter.count();
    }
    // The counter must see the operations at all, or the bound below would say nothing.
    EXPECT(forward >= 8 && runs[1] - runs[0] >= 8 * forward,
           "counted " + std::to_string(forward) + " operations per forward pass, " + std::to_string(runs[1] - runs[0]) +
               " for 8 more steps");
    const double beyond = static_cast<double>(runs[1] - runs[0]) / 8.0 - static_cast<double>(forward);
    EXPECT(beyond <= 16.0, std::to_string(beyond) + " operations per step beyond the forward pass's " +
                               std::to_string(forward));
}

// The GPU's free memory as the checkpoint loader weighs it: what a tensor takes is gone from it,
// and comes back once the tensor is freed (LibTorch's allocator keeps the block, and that counts
// as free). The memory estimate weighs a checkpoint against the GPU's capacity and says what is
// free. Asked first, before this process has made any CUDA tensor (the allocator is not set up).
void gpuMemoryIsMeasured() {
    if (!hasCuda()) {
        const core::DeviceMemory none = core::cudaMemory(0);
        EXPECT(none.free == 0.0 && none.total == 0.0, "no CUDA: no GPU memory");
        throw Skip("needs a CUDA GPU");
    }
    const core::DeviceMemory before = core::cudaMemory(0);
    std::printf("    GPU memory: %.2f GB free of %.2f GB\n", before.free / 1e9, before.total / 1e9);
    EXPECT(before.total > 0.0 && before.free > 0.0 && before.free <= before.total, "free within total");
    const double gib = 1024.0 * 1024.0 * 1024.0;
    const double slack = 64.0 * 1024.0 * 1024.0;
    {
        const torch::Tensor block = torch::empty({int64_t(gib / 4)}, torch::TensorOptions().device(torch::kCUDA));
        const core::DeviceMemory held = core::cudaMemory(0);
        EXPECT(std::abs((before.free - held.free) - gib) < slack,
               "a 1 GiB tensor takes 1 GiB: " + std::to_string((before.free - held.free) / gib) + " GiB");
    }
    const core::DeviceMemory after = core::cudaMemory(0);
    EXPECT(std::abs(after.free - before.free) < slack, "the freed block counts as free again");
    const core::CheckpointInfo info = core::inspectCheckpoint(g_sourceDir + "/resources/fixtures/flux/schnell");
    const core::CheckpointMemory memory = core::estimateCheckpointMemory(info);
    EXPECT(memory.gpu && memory.fits && memory.transformerDtype == "bfloat16", memory.summary);
    EXPECT(memory.machineBytes == after.total && std::abs(memory.freeBytes - after.free) < slack, memory.summary);
    EXPECT(memory.summary.find("of the GPU's") != std::string::npos, memory.summary);
}

// DESIGN.md: sample k's noise is torch::randn({C, H, W}) in float32 from a CPU generator seeded
// with seed + k, "the same noise on every machine and LibTorch version". The reference values are
// torch.randn(1, 28, 28, generator=torch.Generator().manual_seed(s)) from PyTorch 1.13's Python
// API: elements 0, 1, 15, 16, 17, 255, 500, 783, and the float64 sum and sum of squares.
void seedGivesTheSameNoiseEverywhere() {
    struct Reference {
        uint64_t seed;
        std::vector<float> values;
        double sum, squares;
    };
    const std::vector<Reference> references{
        {7,
         {-0x1.a3e8acp-1f, 0x1.952056p-2f, 0x1.171510p+0f, -0x1.952982p+0f, -0x1.4c5b32p-2f, -0x1.33a454p-2f,
          0x1.5cef70p-1f, -0x1.9d28e6p+0f},
         -4.9102415243396536,
         766.3076636052198},
        {8,
         {-0x1.306f86p+0f, 0x1.64ab0ap+0f, -0x1.ae4dfcp-4f, 0x1.c3ffa8p-2f, 0x1.516310p-1f, 0x1.269e54p-6f,
          0x1.092de8p+0f, 0x1.aae1ccp-5f},
         28.856558852995022,
         750.3790146643214},
    };
    const std::vector<int64_t> positions{0, 1, 15, 16, 17, 255, 500, 783};
    const torch::Tensor noise = core::NoiseSource({1, 28, 28}, 7, 2).draw();
    for (size_t k = 0; k < references.size(); ++k) {
        const torch::Tensor sample = noise[static_cast<int64_t>(k)].flatten();
        const float* values = sample.data_ptr<float>();
        const std::string label = "seed " + std::to_string(references[k].seed);
        for (size_t i = 0; i < positions.size(); ++i) {
            EXPECT(values[positions[i]] == references[k].values[i],
                   label + ", element " + std::to_string(positions[i]) + ": " + std::to_string(values[positions[i]]) +
                       " here, " + std::to_string(references[k].values[i]) + " from PyTorch 1.13 (LibTorch " +
                       TORCH_VERSION + " draws other noise for the same seed)");
        }
        const torch::Tensor wide = sample.to(torch::kFloat64);
        EXPECT(std::abs(wide.sum().item<double>() - references[k].sum) < 1e-9, label + ": sum");
        EXPECT(std::abs(wide.pow(2).sum().item<double>() - references[k].squares) < 1e-9, label + ": sum of squares");
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: tst_device SOURCE_DIR [case...]\n");
        return 2;
    }
    g_sourceDir = argv[1];
    g_scratch = (std::filesystem::temp_directory_path() / ("flowscope-tst-device-" + std::to_string(::getpid()))).string();
    std::filesystem::create_directories(g_scratch);
    core::configureThreads();
    const std::vector<std::pair<std::string, std::function<void()>>> cases{
        {"gpuMemoryIsMeasured", gpuMemoryIsMeasured},  // first: before any CUDA tensor
        {"graphsReplayThePlainLoop", graphsReplayThePlainLoop},
        {"graphsSurviveASweep", graphsSurviveASweep},
        {"framesMatchTheTrajectory", framesMatchTheTrajectory},
        {"previewSizeShrinksFramesOnly", previewSizeShrinksFramesOnly},
        {"nanStopsTheRun", nanStopsTheRun},
        {"failedCaptureRunsThePlainLoop", failedCaptureRunsThePlainLoop},
        {"outOfMemoryRecovers", outOfMemoryRecovers},
        {"cpuAndCudaAgree", cpuAndCudaAgree},
        {"empiricalDenoiserOnTheDevice", empiricalDenoiserOnTheDevice},
        {"seedGivesTheSameNoiseEverywhere", seedGivesTheSameNoiseEverywhere},
        {"fewOperationsPerStep", fewOperationsPerStep},
    };
    std::printf("tst_device on %s\n", core::describeDevice(torch::Device(device())).c_str());
    int failures = 0, passes = 0, skips = 0;
    for (const auto& [name, body] : cases) {
        bool wanted = argc == 2;
        for (int i = 2; i < argc; ++i) wanted |= name == argv[i];
        if (!wanted) continue;
        try {
            c10::InferenceMode inference;
            body();
            std::printf("PASS   %s\n", name.c_str());
            ++passes;
        } catch (const Skip& skip) {
            std::printf("SKIP   %s: %s\n", name.c_str(), skip.what());
            ++skips;
        } catch (const std::exception& error) {
            std::printf("FAIL   %s: %s\n", name.c_str(), error.what());
            ++failures;
        }
        std::fflush(stdout);
    }
    std::filesystem::remove_all(g_scratch);
    std::printf("Totals: %d passed, %d failed, %d skipped\n", passes, failures, skips);
    return failures == 0 ? 0 : 1;
}
