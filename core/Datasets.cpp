#include "core/Datasets.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numbers>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <zlib.h>

#include "core/Errors.h"

namespace flowscope::core {
namespace {

uint32_t bigEndian32(const std::string& bytes, size_t offset) {
    return (uint32_t(uint8_t(bytes[offset])) << 24) | (uint32_t(uint8_t(bytes[offset + 1])) << 16) |
           (uint32_t(uint8_t(bytes[offset + 2])) << 8) | uint32_t(uint8_t(bytes[offset + 3]));
}

}  // namespace

std::string fashionMnistDirectory() {
    if (const char* dir = std::getenv("FLOWSCOPE_FASHION_MNIST_DIR"); dir && *dir) return dir;
    return "/usr/share/datasets/fashion-mnist";
}

torch::Tensor readIdx(const std::string& path) {
    // The header first, then the payload decompressed straight into the tensor's memory.
    gzFile file = gzopen(path.c_str(), "rb");
    if (!file) throw std::runtime_error("cannot open '" + path + "'");
    struct Closer {
        gzFile file;
        ~Closer() { gzclose(file); }
    } closer{file};
    gzbuffer(file, 1 << 20);
    auto readExactly = [&](void* into, size_t bytes) -> size_t {
        size_t done = 0;
        while (done < bytes) {
            const unsigned chunk = static_cast<unsigned>(std::min<size_t>(bytes - done, 1u << 30));
            const int n = gzread(file, static_cast<char*>(into) + done, chunk);
            if (n < 0) {
                int code = 0;
                throw std::runtime_error("cannot read '" + path + "': " + gzerror(file, &code));
            }
            if (n == 0) break;
            done += static_cast<size_t>(n);
        }
        return done;
    };
    std::string header(4, '\0');
    if (readExactly(header.data(), 4) < 4) throw std::runtime_error("'" + path + "' is too short to be an IDX file");
    if (header[0] != 0 || header[1] != 0 || uint8_t(header[2]) != 0x08) {
        throw std::runtime_error("'" + path + "' is not an IDX file of unsigned bytes");
    }
    const int rank = uint8_t(header[3]);
    std::string dims(4 * size_t(std::max(rank, 0)), '\0');
    if (rank < 1 || rank > 4 || readExactly(dims.data(), dims.size()) < dims.size()) {
        throw std::runtime_error("'" + path + "' has a malformed IDX header");
    }
    std::vector<int64_t> shape;
    uint64_t count = 1;
    for (int i = 0; i < rank; ++i) {
        const uint32_t dim = bigEndian32(dims, 4 * i);
        if (dim == 0 || dim > (1u << 28)) throw std::runtime_error("'" + path + "' declares a bad dimension");
        count *= dim;
        if (count > (uint64_t(1) << 34)) throw std::runtime_error("'" + path + "' declares too many elements");
        shape.push_back(dim);
    }
    torch::Tensor out = torch::empty(shape, torch::kUInt8);
    const size_t got = readExactly(out.data_ptr<uint8_t>(), count);
    char extra = 0;
    if (got != count || readExactly(&extra, 1) != 0) {
        throw std::runtime_error("'" + path + "' is truncated or has trailing data (the header declares " +
                                 std::to_string(count) + " bytes of data)");
    }
    return out;
}

torch::Tensor bytesToEngine(const torch::Tensor& bytes) { return bytes.to(torch::kFloat32).mul_(1.0 / 127.5).sub_(1.0); }

torch::Tensor loadFashionMnist(bool train, int64_t limit) {
    namespace fs = std::filesystem;
    const fs::path dir = fashionMnistDirectory();
    const fs::path file = dir / (train ? "train-images-idx3-ubyte.gz" : "t10k-images-idx3-ubyte.gz");
    std::error_code ec;
    if (!fs::exists(file, ec)) {
        throw std::runtime_error("Fashion-MNIST not found at '" + file.string() +
                                 "'. Install the Debian package dataset-fashion-mnist "
                                 "(sudo apt-get install dataset-fashion-mnist), or run ./packaging/run.sh");
    }
    torch::Tensor images = readIdx(file.string());
    if (images.dim() != 3) throw std::runtime_error("'" + file.string() + "' does not hold [N, H, W] images");
    if (limit > 0 && limit < images.size(0)) images = images.narrow(0, 0, limit);
    return bytesToEngine(images.unsqueeze(1));
}

const std::vector<std::string>& pointCloudNames() {
    static const std::vector<std::string> names{"moons", "spiral", "checkerboard"};
    return names;
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
        for (const auto& n : pointCloudNames()) valid.push_back("points:" + n);
        throw UnknownNameError("model", "points:" + std::string(name), valid);
    }
    return points.contiguous();
}

}  // namespace flowscope::core
