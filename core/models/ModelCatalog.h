#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/models/ModelSpec.h"
#include "core/sampling/Model.h"

namespace flowscope::core {

// Turns a model spec into a model, caching datasets between requests:
//   gmm:8gaussians | gmm:rings | gmm:checkerboard    analytic Gaussian mixtures
//   fashion-mnist[:N]                                 empirical denoiser, first N training images
//   folder:PATH                                       empirical denoiser over the user's images
//                                                     (its sub-folders, if any, are classes)
//   points:moons | points:spiral | points:checkerboard  empirical denoiser over 2-D clouds
//   bundle:DIR                                        the user's network (flowscope.json in DIR)
//   checkpoint:PATH                                   a FLUX.1 model folder or .safetensors file
// The side of `folder:` images when no resolution is asked for (Fashion-MNIST keeps its own 28).
constexpr int kDefaultFolderResolution = 32;
constexpr int kFashionMnistSide = 28;

// The sub-folders of `folder` that hold files, sorted: a folder model's classes (empty: the folder
// is one set of images). Cheap: lists names only.
std::vector<std::string> folderClasses(const std::string& folder);

class ModelCatalog {
public:
    // Loads an image folder as [N, C, R, R] in [-1, 1]; appends notes (skipped files, ...); stops
    // with CancelledError when `*cancel` is set. Provided by core/media (OpenCV); without it
    // `folder:` specs are refused with a message.
    using FolderLoader = std::function<torch::Tensor(const std::string& folder, int resolution,
                                                     std::vector<std::string>& notes, const std::atomic<bool>* cancel)>;

    explicit ModelCatalog(FolderLoader folderLoader = {});

    // resolution 0 keeps the dataset's own (28 for Fashion-MNIST, 32 for folders). `trustModel`
    // allows loading a bundle's TorchScript files that are not in the user's trusted list.
    // `cancel` stops a long load (an image folder) with CancelledError.
    // `text` names the parts beside a checkpoint's transformer file (TextSettings).
    std::shared_ptr<Model> load(const std::string& spec, int resolution, std::vector<std::string>& notes,
                                bool trustModel = false, const std::atomic<bool>* cancel = nullptr,
                                const TextSettings& text = {});

    static std::vector<std::string> specNames();

private:
    std::shared_ptr<Model> loadCheckpoint(const std::string& spec, const std::string& path, const TextSettings& text);
    // folder:PATH: the images in PATH, or, where PATH has sub-folders with files, theirs as
    // classes (a LabelledDenoiser).
    std::shared_ptr<Model> loadFolder(const std::string& spec, const std::string& folder, int size,
                                      std::vector<std::string>& notes, const std::atomic<bool>* cancel);

    FolderLoader m_folderLoader;
    std::map<std::string, std::shared_ptr<Model>> m_cache;
    // Bundles are reloaded when any of their files changes on disk.
    std::map<std::string, std::string> m_bundleStamps;
};

}  // namespace flowscope::core
