#include "core/media/ImageFolder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <torch/torch.h>

#include "core/media/ImageDecoder.h"

namespace flowscope::media {
namespace {

bool hasImageExtension(const std::filesystem::path& file) {
    std::string ext = file.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".webp" || ext == ".bmp";
}

constexpr uintmax_t kMaxFileBytes = 256ull << 20;

}  // namespace

torch::Tensor decodeImage(const std::string& bytes, int resolution) {
    const cv::Mat rgb = decodeSquareImage(bytes, resolution);
    if (rgb.empty()) return {};
    const torch::Tensor pixels = torch::from_blob(rgb.data, {resolution, resolution, 3}, torch::kUInt8).clone();
    return pixels.permute({2, 0, 1}).to(torch::kFloat32) / 127.5 - 1.0;
}

torch::Tensor loadImageFolder(const std::string& folder, int resolution, std::vector<std::string>& notes) {
    namespace fs = std::filesystem;
    configureImageLimits();
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) {
        throw std::invalid_argument("'" + folder + "' is not a folder; give folder:PATH with a folder of images");
    }
    std::vector<fs::path> files;
    int others = 0;
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
        if (!entry.is_regular_file()) continue;
        if (hasImageExtension(entry.path())) {
            files.push_back(entry.path());
        } else {
            ++others;
        }
    }
    std::sort(files.begin(), files.end());
    std::vector<torch::Tensor> images;
    int skipped = 0;
    for (const auto& file : files) {
        if (fs::file_size(file, ec) > kMaxFileBytes) {
            ++skipped;
            continue;
        }
        std::ifstream in(file, std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        torch::Tensor image = decodeImage(bytes, resolution);
        if (!image.defined()) {
            ++skipped;
            continue;
        }
        images.push_back(image);
    }
    if (skipped > 0) {
        notes.push_back(std::to_string(skipped) + " file(s) in '" + folder + "' could not be read as images and were skipped");
    }
    if (images.empty()) {
        throw std::invalid_argument("no readable image in '" + folder + "' (" + std::to_string(files.size()) +
                                    " image file(s), " + std::to_string(skipped) + " unreadable, " +
                                    std::to_string(others) + " other file(s)); FlowScope reads PNG, JPEG, WebP and BMP");
    }
    return torch::stack(images).contiguous();
}

core::HostArray loadImageFolderToHost(const std::string& folder, int resolution, std::vector<std::string>& notes) {
    const torch::Tensor images = loadImageFolder(folder, resolution, notes);
    core::HostArray array;
    array.shape.assign(images.sizes().begin(), images.sizes().end());
    array.values.assign(images.data_ptr<float>(), images.data_ptr<float>() + images.numel());
    return array;
}

}  // namespace flowscope::media
