#include "core/models/Datasets.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numbers>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/io/IdxFile.h"

namespace flowscope::core {

std::string fashionMnistDirectory() {
    if (const char* dir = std::getenv("FLOWSCOPE_FASHION_MNIST_DIR"); dir && *dir) return dir;
    return "/usr/share/datasets/fashion-mnist";
}

torch::Tensor readIdx(const std::string& path) {
    torch::Tensor out;
    readIdxFile(path, [&](const std::vector<int64_t>& shape) {
        out = torch::empty(shape, torch::kUInt8);
        return out.data_ptr<uint8_t>();
    });
    return out;
}

torch::Tensor bytesToEngine(const torch::Tensor& bytes) { return bytes.to(torch::kFloat32).mul_(1.0 / 127.5).sub_(1.0); }

namespace {

// One of the package's IDX files, with a message naming the package when it is missing.
torch::Tensor readFashionMnistFile(const char* name) {
    namespace fs = std::filesystem;
    const fs::path file = fs::path(fashionMnistDirectory()) / name;
    std::error_code ec;
    if (!fs::exists(file, ec)) {
        throw std::runtime_error("Fashion-MNIST not found at '" + file.string() +
                                 "'. Install the Debian package dataset-fashion-mnist "
                                 "(sudo apt-get install dataset-fashion-mnist), or run ./packaging/run.sh");
    }
    return readIdx(file.string());
}

}  // namespace

torch::Tensor loadFashionMnist(bool train, int64_t limit) {
    const char* name = train ? "train-images-idx3-ubyte.gz" : "t10k-images-idx3-ubyte.gz";
    torch::Tensor images = readFashionMnistFile(name);
    if (images.dim() != 3) throw std::runtime_error(std::string("Fashion-MNIST's ") + name + " does not hold [N, H, W] images");
    if (limit > 0 && limit < images.size(0)) images = images.narrow(0, 0, limit);
    return bytesToEngine(images.unsqueeze(1));
}

const std::vector<std::string>& fashionMnistClassNames() {
    static const std::vector<std::string> names{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    return names;
}

torch::Tensor loadFashionMnistLabels(bool train, int64_t limit) {
    const char* name = train ? "train-labels-idx1-ubyte.gz" : "t10k-labels-idx1-ubyte.gz";
    torch::Tensor labels = readFashionMnistFile(name);
    if (labels.dim() != 1) throw std::runtime_error(std::string("Fashion-MNIST's ") + name + " does not hold [N] labels");
    if (labels.numel() > 0 && labels.max().item<int64_t>() > 9) {
        throw std::runtime_error(std::string("Fashion-MNIST's ") + name + " holds labels above 9; it is damaged");
    }
    if (limit > 0 && limit < labels.size(0)) labels = labels.narrow(0, 0, limit);
    return labels.to(torch::kLong);
}

torch::Tensor makePointCloud(std::string_view name, int64_t count) {
    // A fixed generator, so the cloud is the same on every machine and LibTorch version.
    at::Generator generator = at::detail::createCPUGenerator(20240601);
    const auto options = torch::TensorOptions().dtype(torch::kFloat32);
    const torch::Tensor u = torch::rand({count}, generator, options);
    const torch::Tensor jitter = torch::randn({count, 2}, generator, options);
    torch::Tensor points;
    if (name == "moons") {
        // Two interleaved half circles (as scikit-learn's make_moons), centred and scaled to
        // roughly unit spread, with Gaussian jitter 0.1.
        const int64_t half = count / 2;
        const torch::Tensor angle = u * std::numbers::pi;
        torch::Tensor x = torch::cos(angle);
        torch::Tensor y = torch::sin(angle);
        const torch::Tensor lower = torch::arange(count) >= half;
        x = torch::where(lower, 1.0 - x, x);
        y = torch::where(lower, 0.5 - y, y);
        points = torch::stack({(x - 0.5) * 2.0, (y - 0.25) * 2.0}, 1) + 0.1 * jitter;
    } else if (name == "spiral") {
        // Two arms of an Archimedean spiral out to radius 3, with jitter 0.08.
        const torch::Tensor radius = torch::sqrt(u) * 3.0;
        const torch::Tensor arm = (torch::arange(count) % 2).to(torch::kFloat32) * std::numbers::pi;
        const torch::Tensor angle = radius * 2.2 + arm;
        points = torch::stack({radius * torch::cos(angle), radius * torch::sin(angle)}, 1) + 0.08 * jitter;
    } else if (name == "checkerboard") {
        // Uniform in the 8 dark cells of a 4 x 4 board on [-2, 2]^2.
        const torch::Tensor cell = torch::randint(0, 8, {count}, generator, torch::kLong);
        const torch::Tensor row = cell.div(2, "floor");
        const torch::Tensor col = (cell % 2) * 2 + (row % 2);
        const torch::Tensor inCell = torch::rand({count, 2}, generator, options);
        points = torch::stack({col.to(torch::kFloat32) + inCell.select(1, 0) - 2.0,
                               row.to(torch::kFloat32) + inCell.select(1, 1) - 2.0}, 1);
    } else {
        std::vector<std::string> valid;
        for (const auto& n : pointCloudNames()) valid.push_back(makeSpec(SpecForm::Points, n));
        throw UnknownNameError("model", makeSpec(SpecForm::Points, name), valid);
    }
    return points.contiguous();
}

}  // namespace flowscope::core
