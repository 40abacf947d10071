#include "app/bench/ConvNet.h"

#include <cmath>
#include <filesystem>
#include <sstream>

#include <torch/script.h>
#include <torch/torch.h>

#include "core/io/AtomicFile.h"

namespace flowscope::bench {
namespace {

torch::Tensor convWeight(int64_t out, int64_t in, double gain, torch::Generator& generator) {
    return torch::randn({out, in, 3, 3}, generator) * (gain / std::sqrt(9.0 * static_cast<double>(in)));
}

}  // namespace

std::string writeConvNetBundle(const std::string& directory, const ConvNetShape& shape, uint64_t seed) {
    namespace fs = std::filesystem;
    fs::create_directories(directory);
    torch::Generator generator = at::detail::createCPUGenerator(seed);
    torch::NoGradGuard noGrad;

    torch::jit::Module module("__torch__.FlowScopeBenchNet");
    module.register_parameter("w_in", convWeight(shape.channels, shape.imageChannels, 1.0, generator), false);
    module.register_parameter("b_in", torch::zeros({shape.channels}), false);
    module.register_parameter("w_time", torch::randn({1, shape.channels, 1, 1}, generator), false);
    std::ostringstream source;
    source << "def forward(self, x, time):\n"
           << "    h = torch.conv2d(x, self.w_in, self.b_in, [1, 1], [1, 1])\n"
           << "    h = h + self.w_time * time.view(-1, 1, 1, 1)\n";
    // Residual branches scaled down so that the sum of `blocks` of them keeps unit scale.
    const double branchGain = 1.0 / std::sqrt(static_cast<double>(shape.blocks));
    for (int64_t i = 0; i < shape.blocks; ++i) {
        std::string w = "w", b = "b";  // appended, not "w" + ...: GCC 12 warns wrongly on that
        w += std::to_string(i);
        b += std::to_string(i);
        module.register_parameter(w, convWeight(shape.channels, shape.channels, branchGain, generator), false);
        module.register_parameter(b, torch::zeros({shape.channels}), false);
        source << "    h = h + torch.conv2d(torch.relu(h), self." << w << ", self." << b << ", [1, 1], [1, 1])\n";
    }
    module.register_parameter("w_out", convWeight(shape.imageChannels, shape.channels, 0.5, generator), false);
    module.register_parameter("b_out", torch::zeros({shape.imageChannels}), false);
    source << "    return torch.conv2d(torch.relu(h), self.w_out, self.b_out, [1, 1], [1, 1])\n";
    module.define(source.str());

    const std::string modelFile = (fs::path(directory) / "model.pt").string();
    module.save(modelFile);
    std::ostringstream manifest;
    manifest << "{\n  \"name\": \"bench-convnet-" << shape.channels << "x" << shape.blocks << "\",\n"
             << "  \"format\": \"torchscript\",\n  \"file\": \"model.pt\",\n"
             << "  \"prediction\": \"velocity\",\n  \"path\": \"linear\",\n  \"time_input\": \"t\",\n"
             << "  \"sample_shape\": [" << shape.imageChannels << ", " << shape.size << ", " << shape.size << "],\n"
             << "  \"value_range\": [-1.0, 1.0]\n}\n";
    core::writeFileAtomically((fs::path(directory) / "flowscope.json").string(), manifest.str());
    return modelFile;
}

double convNetFlops(const ConvNetShape& shape, int64_t batch) {
    const double pixels = static_cast<double>(batch * shape.size * shape.size);
    const double hidden = 2.0 * 9.0 * static_cast<double>(shape.channels * shape.channels) * shape.blocks;
    const double ends = 2.0 * 2.0 * 9.0 * static_cast<double>(shape.channels * shape.imageChannels);
    return pixels * (hidden + ends);
}

}  // namespace flowscope::bench
