#pragma once

// Named weights read from safetensors files the user downloaded (FLUX.1, SD3, CLIP, T5 and their
// autoencoders), memory-mapped so that a checkpoint of many gigabytes is read only where a part is
// loaded. Networks take their sizes from the tensors' shapes and their tensors through a view with
// the prefix of their part (a ComfyUI all-in-one file keeps every part under its own prefix).

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/api/Errors.h"
#include "core/io/SafeTensorsFile.h"

namespace flowscope::core {

// A checkpoint that lacks a part or a tensor, has one of another shape, or is not a checkpoint
// FlowScope knows. The message names the key or file it concerns and what was found.
class CheckpointError : public InvalidRequestError {
public:
    using InvalidRequestError::InvalidRequestError;
};

// The tensors of one or more safetensors files (the shards of one part, or one file holding
// several parts), each name once.
class WeightFiles {
public:
    // Maps the files; a name in two of them is refused. A `*.safetensors.index.json` among the
    // paths stands for the shards its weight_map names (next to it).
    static std::shared_ptr<const WeightFiles> open(const std::vector<std::string>& paths);

    struct Tensor {
        const SafeTensorsFile* file = nullptr;
        const SafeTensorsFile::Entry* entry = nullptr;
    };
    const Tensor* find(const std::string& name) const;
    bool hasPrefix(const std::string& prefix) const;
    // Every name, sorted.
    std::vector<std::string> names() const;
    const std::vector<std::string>& paths() const { return m_paths; }
    uint64_t bytes() const;

    // The tensor converted to `dtype` (float8 is widened first) and moved to `device`. `cancel`
    // stops between tensors, never inside one.
    torch::Tensor load(const std::string& name, torch::ScalarType dtype, torch::Device device) const;

private:
    std::vector<std::string> m_paths;
    std::vector<std::unique_ptr<SafeTensorsFile>> m_files;
    std::map<std::string, Tensor> m_index;
};

// A part's tensors: the files, a prefix, and the dtype and device its network computes in.
class Weights {
public:
    Weights() = default;
    // `packFloat8`: matrices stored as float8 E4M3 stay one byte per value (getMatrix), for
    // checkpoints whose weights would not fit in memory widened to `dtype`.
    Weights(std::shared_ptr<const WeightFiles> files, std::string prefix, torch::ScalarType dtype, torch::Device device,
            const std::atomic<bool>* cancel = nullptr, bool packFloat8 = false);

    Weights sub(const std::string& prefix) const;  // the view of prefix + `prefix`
    const std::string& prefix() const { return m_prefix; }
    torch::ScalarType dtype() const { return m_dtype; }
    torch::Device device() const { return m_device; }

    bool has(const std::string& key) const;
    // Throws CheckpointError naming the full key when it is missing.
    std::vector<int64_t> shape(const std::string& key) const;
    int64_t size(const std::string& key, int dim) const;
    // The tensor, checked against `expected` (empty: any shape; -1: any size in that dimension).
    torch::Tensor get(const std::string& key, const std::vector<int64_t>& expected = {}) const;
    // Like get, but with packFloat8 a tensor stored as F8_E4M3 comes as its bytes (kByte, on the
    // device): layers widen it through float8Table() when they use it.
    torch::Tensor getMatrix(const std::string& key, const std::vector<int64_t>& expected = {}) const;
    // The 256 E4M3 values in this view's dtype on its device, indexed by the byte.
    torch::Tensor float8Table() const;
    // Like get, or an undefined tensor when the key is absent.
    torch::Tensor optional(const std::string& key, const std::vector<int64_t>& expected = {}) const;
    // The number of consecutive blocks `key`0., `key`1., ... present ("double_blocks." -> depth).
    int count(const std::string& key) const;
    // The names under this prefix (without it), sorted.
    std::vector<std::string> names() const;
    // The parameter count and the stored dtypes of the tensors under this prefix.
    int64_t parameters() const;
    // Of those, the matrices stored as F8_E4M3: the ones layers keep packed (Linear, Embedding).
    int64_t float8Parameters() const;
    uint64_t storedBytes() const;  // of the tensors under this prefix, as stored
    std::vector<std::string> storedDtypes() const;
    // Throws CancelledError when the load was cancelled (checked before each tensor).
    void checkCancelled() const;

private:
    // The stored entry of `key`, its shape checked against `expected` (CheckpointError).
    const SafeTensorsFile::Entry& checkedEntry(const std::string& key, const std::vector<int64_t>& expected) const;

    std::shared_ptr<const WeightFiles> m_files;
    std::string m_prefix;
    torch::ScalarType m_dtype = torch::kFloat32;
    torch::Device m_device = torch::kCPU;
    const std::atomic<bool>* m_cancel = nullptr;
    bool m_packFloat8 = false;
};

// Progress of a part's load, reported to the observer the front end set (the CLI prints it, the
// window shows it): the part in words and its bytes read so far of all. Loads on this thread
// inside a ScopedLoad report after each tensor.
using LoadObserver = std::function<void(const std::string& part, uint64_t done, uint64_t total)>;
void setLoadObserver(LoadObserver observer);
class ScopedLoad {
public:
    ScopedLoad(std::string part, uint64_t totalBytes);
    ~ScopedLoad();
    ScopedLoad(const ScopedLoad&) = delete;
    ScopedLoad& operator=(const ScopedLoad&) = delete;
    static void add(uint64_t bytes);  // from Weights::get

private:
    std::string m_part;
    uint64_t m_total = 0;
    uint64_t m_done = 0;
    ScopedLoad* m_outer = nullptr;
};

// "[3072, 64]": shapes in messages.
std::string describeShape(const std::vector<int64_t>& shape);

}  // namespace flowscope::core
