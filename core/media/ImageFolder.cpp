#include "core/media/ImageFolder.h"

#include <algorithm>
#include <filesystem>

#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/io/RegularFile.h"
#include "core/media/ImageDecoder.h"

namespace flowscope::media {
namespace {

bool hasImageExtension(const std::filesystem::path& file) {
    std::string ext = file.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".webp" || ext == ".bmp";
}

constexpr uint64_t kMaxFileBytes = 256ull << 20;

}  // namespace

torch::Tensor decodeImage(const std::string& bytes, int resolution) {
    const cv::Mat rgb = decodeSquareImage(bytes, resolution);
    if (rgb.empty()) return {};
    const torch::Tensor pixels = torch::from_blob(rgb.data, {resolution, resolution, 3}, torch::kUInt8).clone();
    return pixels.permute({2, 0, 1}).to(torch::kFloat32) / 127.5 - 1.0;
}

torch::Tensor loadImageFolder(const std::string& folder, int resolution, std::vector<std::string>& notes,
                              const std::atomic<bool>* cancel) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) {
        throw std::invalid_argument("'" + folder + "' is not a folder; give folder:PATH with a folder of images");
    }
    std::vector<fs::path> files;
    int others = 0;
    int folders = 0;
    int skipped = 0;
    fs::directory_iterator entries(folder, ec);
    if (ec) throw std::invalid_argument("cannot list the folder '" + folder + "': " + ec.message());
    for (const auto& entry : entries) {
        if (cancel && cancel->load()) throw core::CancelledError();
        // The error-code forms: a symbolic-link loop (or a link into an unreadable place) is a
        // file that cannot be read, not a reason to stop.
        std::error_code kind;
        if (entry.is_directory(kind)) {
            ++folders;
        } else if (!entry.is_regular_file(kind)) {
            if (kind || entry.is_symlink(kind)) {
                ++skipped;  // a loop or a dangling link
            } else {
                ++others;
            }
        } else if (hasImageExtension(entry.path())) {
            files.push_back(entry.path());
        } else {
            ++others;
        }
    }
    std::sort(files.begin(), files.end());
    std::vector<torch::Tensor> images;
    for (const auto& file : files) {
        std::string bytes;
        try {
            bytes = core::readRegularFile(file.string(), kMaxFileBytes, "the image", cancel);
        } catch (const core::FileReadError&) {
            ++skipped;
            continue;
        }
        torch::Tensor image = decodeImage(bytes, resolution);
        if (!image.defined()) {
            ++skipped;
            continue;
        }
        images.push_back(image);
    }
    if (skipped > 0) {
        notes.push_back(std::to_string(skipped) + " file(s) in '" + folder +
                        "' could not be read as images (damaged, unreadable links, or larger than " +
                        std::to_string(kMaxImagePixels >> 20) + " megapixels) and were skipped");
    }
    if (folders > 0) {
        notes.push_back("'" + folder + "' has " + std::to_string(folders) +
                        " sub-folder(s); FlowScope reads only the images directly in it");
    }
    if (images.empty()) {
        throw std::invalid_argument("no readable image in '" + folder + "' (" + std::to_string(files.size()) +
                                    " image file(s), " + std::to_string(skipped) + " unreadable or above " +
                                    std::to_string(kMaxImagePixels >> 20) + " megapixels, " +
                                    std::to_string(others) + " other file(s), " + std::to_string(folders) +
                                    " sub-folder(s) not searched); FlowScope reads PNG, JPEG, WebP and BMP");
    }
    return torch::stack(images).contiguous();
}

core::HostArray loadImageFolderToHost(const std::string& folder, int resolution, std::vector<std::string>& notes,
                                      const std::atomic<bool>* cancel) {
    const torch::Tensor images = loadImageFolder(folder, resolution, notes, cancel);
    core::HostArray array;
    array.shape.assign(images.sizes().begin(), images.sizes().end());
    array.values.assign(images.data_ptr<float>(), images.data_ptr<float>() + images.numel());
    return array;
}

}  // namespace flowscope::media
