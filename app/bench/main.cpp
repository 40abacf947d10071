// flowscope-bench: engine figures measured side by side in one run (these machines are noisy, so
// only ratios within one run mean much). Prints a table, or JSON with --json.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/Datasets.h"
#include "core/Device.h"
#include "core/EmpiricalDenoiser.h"
#include "core/Engine.h"

using namespace flowscope;

namespace {

struct Figure {
    std::string name;
    double milliseconds;
    std::string note;
};

// Median wall time of `repeats` calls after `warmup` calls, in milliseconds.
double medianMs(const std::function<void()>& body, int repeats, int warmup = 2) {
    for (int i = 0; i < warmup; ++i) body();
    std::vector<double> samples;
    for (int i = 0; i < repeats; ++i) {
        const auto start = std::chrono::steady_clock::now();
        body();
        samples.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
    return samples[samples.size() / 2];
}

void usage() {
    std::printf("usage: flowscope-bench [--json] [--repeats N] [--images N]\n");
}

}  // namespace

int main(int argc, char** argv) {
    bool json = false;
    int repeats = 15;
    int64_t images = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--json") {
            json = true;
        } else if (arg == "--repeats" && i + 1 < argc) {
            repeats = std::max(3, std::atoi(argv[++i]));
        } else if (arg == "--images" && i + 1 < argc) {
            images = std::max(1, std::atoi(argv[++i]));
        } else {
            usage();
            return 2;
        }
    }
    core::configureThreads();
    c10::InferenceMode inference;
    torch::Tensor data;
    try {
        data = core::loadFashionMnist(true, images);
    } catch (const std::exception& error) {
        std::fprintf(stderr, "flowscope-bench: %s\n", error.what());
        return 1;
    }
    core::EmpiricalDenoiser denoiser("fashion-mnist", data);
    const auto n = data.size(0);
    const auto dim = data.numel() / n;
    const torch::Tensor flat = data.reshape({n, dim});
    const double alpha = 0.5, sigma = 0.5;  // mid-way on the linear path, for the batch-64 step

    std::vector<Figure> figures;
    double sink = 0.0;
    const double readPass = medianMs([&] { sink += flat.sum().item<double>(); }, repeats);
    figures.push_back({"read pass over the dataset (sum)", readPass, std::to_string(n) + " x " + std::to_string(dim) + " float32"});

    // States as the sampler meets them on the linear path: x = t d + (1 - t) eps for a training
    // image d. Early (t = 0.05) every weight counts; late (t = 0.95) a few images dominate.
    double worstFusedRatio = 0.0;
    double fused1 = 0.0;
    for (double t : {0.05, 0.5, 0.95}) {
        const torch::Tensor x1 = t * flat.narrow(0, 17, 1) + (1.0 - t) * torch::randn({1, dim});
        const double fused = medianMs([&] { sink += denoiser.denoiseFused(x1, t, 1.0 - t).sum().item<double>(); }, repeats);
        const double matmul = medianMs([&] { sink += denoiser.denoiseMatmul(x1, t, 1.0 - t).sum().item<double>(); }, repeats);
        char label[96];
        std::snprintf(label, sizeof label, "empirical step, batch 1, t = %.2f (fused single pass)", t);
        figures.push_back({label, fused, ""});
        std::snprintf(label, sizeof label, "empirical step, batch 1, t = %.2f (two matrix products)", t);
        figures.push_back({label, matmul, ""});
        if (fused / readPass > worstFusedRatio) {
            worstFusedRatio = fused / readPass;
            fused1 = fused;
        }
    }

    const torch::Tensor x64 = torch::randn({64, dim});
    const torch::Tensor weights = torch::softmax(torch::randn({64, n}), 1);
    const double products64 = medianMs(
        [&] {
            sink += torch::mm(x64, flat.t()).sum().item<double>();
            sink += torch::mm(weights, flat).sum().item<double>();
        },
        std::max(3, repeats / 3));
    figures.push_back({"two matrix products, batch 64 (floor)", products64, "[64,D]x[D,N] and [64,N]x[N,D]"});
    const double step64 = medianMs([&] { sink += denoiser.denoise(x64.reshape(data.sizes().vec().size() == 4 ? std::vector<int64_t>{64, data.size(1), data.size(2), data.size(3)} : std::vector<int64_t>{64, dim}), alpha, sigma).sum().item<double>(); },
                                   std::max(3, repeats / 3));
    figures.push_back({"empirical step, batch 64", step64, ""});

    core::SampleRequest request;
    request.model = images > 0 ? "fashion-mnist:" + std::to_string(images) : "fashion-mnist";
    request.steps = 8;
    core::Engine engine;
    const double sample8 = medianMs([&] { sink += engine.sample(request).nfe; }, 3, 1);
    figures.push_back({"sample, 8 Euler steps, batch 1 (dataset cached)", sample8, ""});

    const double ratio1 = worstFusedRatio;
    const double ratio64 = step64 / products64;
    if (json) {
        std::printf("{\"device\":\"%s\",\"images\":%lld,\"figures\":[", core::describeDevice(torch::kCPU).c_str(),
                    static_cast<long long>(n));
        for (size_t i = 0; i < figures.size(); ++i) {
            std::printf("%s{\"name\":\"%s\",\"ms\":%.4f}", i ? "," : "", figures[i].name.c_str(), figures[i].milliseconds);
        }
        std::printf("],\"batch1_over_read_pass\":%.3f,\"batch64_over_products\":%.3f}\n", ratio1, ratio64);
    } else {
        std::printf("FlowScope engine benchmark (%s), median of %d runs\n\n", core::describeDevice(torch::kCPU).c_str(),
                    repeats);
        for (const auto& figure : figures) {
            std::printf("  %-50s %10.3f ms  %s\n", figure.name.c_str(), figure.milliseconds, figure.note.c_str());
        }
        std::printf("\n  batch 1 step / read pass (slowest t): %.2fx  (target <= 2.0x; %.3f ms)\n", ratio1, fused1);
        std::printf("  batch 64 step / matrix products:      %.2fx  (target <= 1.3x)\n", ratio64);
    }
    return sink == 0.123456789 ? 1 : 0;  // keeps the measured work observable
}
