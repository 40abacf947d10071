#include "core/models/Weights.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <exception>
#include <mutex>
#include <set>

#include <torch/torch.h>

#include "core/io/Json.h"
#include "core/io/RegularFile.h"
#include "core/io/SafeTensors.h"

namespace flowscope::core {
namespace fs = std::filesystem;

namespace {

bool endsWith(const std::string& text, const std::string& suffix) {
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The shard files a Hugging Face index names, in order of first appearance.
std::vector<std::string> shardsOf(const std::string& indexPath) {
    JsonValue json;
    try {
        json = parseJson(readRegularFile(indexPath, 64ull << 20, "the shard index"));
    } catch (const std::invalid_argument& error) {
        throw CheckpointError("'" + indexPath + "' is not valid JSON (" + error.what() + ")");
    } catch (const FileReadError& error) {
        throw CheckpointError(error.what());
    }
    const auto* map = json.isObject() ? &json.object() : nullptr;
    const auto weightMap = map ? map->find("weight_map") : decltype(map->end()){};
    if (!map || weightMap == map->end() || !weightMap->second.isObject()) {
        throw CheckpointError("'" + indexPath + "' has no \"weight_map\" object naming each tensor's shard");
    }
    std::vector<std::string> shards;
    const fs::path folder = fs::path(indexPath).parent_path();
    for (const auto& [name, file] : weightMap->second.object()) {
        if (!file.isString() || file.string().find('/') != std::string::npos || file.string().empty()) {
            throw CheckpointError("'" + indexPath + "' names a shard for '" + name +
                                  "' that is not a file name beside the index");
        }
        const std::string path = (folder / file.string()).string();
        if (std::find(shards.begin(), shards.end(), path) == shards.end()) shards.push_back(path);
    }
    return shards;
}

}  // namespace

namespace {

std::mutex g_observerMutex;
LoadObserver g_observer;
thread_local ScopedLoad* t_currentLoad = nullptr;

void notify(const std::string& part, uint64_t done, uint64_t total) {
    LoadObserver observer;
    {
        const std::lock_guard<std::mutex> lock(g_observerMutex);
        observer = g_observer;
    }
    if (observer) observer(part, done, total);
}

}  // namespace

void setLoadObserver(LoadObserver observer) {
    const std::lock_guard<std::mutex> lock(g_observerMutex);
    g_observer = std::move(observer);
}

ScopedLoad::ScopedLoad(std::string part, uint64_t totalBytes)
    : m_part(std::move(part)), m_total(totalBytes), m_outer(t_currentLoad) {
    t_currentLoad = this;
    notify(m_part, 0, m_total);
}

ScopedLoad::~ScopedLoad() {
    t_currentLoad = m_outer;
    // A part may not read every tensor under its prefix (the decoder without the encoder): its
    // load is complete when it ends without an exception.
    if (std::uncaught_exceptions() == 0 && m_done < m_total) notify(m_part, m_total, m_total);
}

void ScopedLoad::add(uint64_t bytes) {
    ScopedLoad* load = t_currentLoad;
    if (!load) return;
    load->m_done += bytes;
    notify(load->m_part, std::min(load->m_done, load->m_total), load->m_total);
}

std::string describeShape(const std::vector<int64_t>& shape) {
    std::string text = "[";
    for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
}

std::shared_ptr<const WeightFiles> WeightFiles::open(const std::vector<std::string>& paths) {
    auto files = std::make_shared<WeightFiles>();
    for (const std::string& given : paths) {
        const std::vector<std::string> expanded =
            endsWith(given, ".index.json") ? shardsOf(given) : std::vector<std::string>{given};
        for (const std::string& path : expanded) {
            if (std::find(files->m_paths.begin(), files->m_paths.end(), path) != files->m_paths.end()) continue;
            SafeTensorsFile file;
            try {
                file = SafeTensorsFile::map(path);
            } catch (const SafeTensorsError& error) {
                throw CheckpointError(error.what());
            }
            files->m_files.push_back(std::make_unique<SafeTensorsFile>(std::move(file)));
            files->m_paths.push_back(path);
            const SafeTensorsFile* stored = files->m_files.back().get();
            for (const auto& entry : stored->entries()) {
                if (!files->m_index.emplace(entry.name, Tensor{stored, &entry}).second) {
                    throw CheckpointError("the tensor '" + entry.name + "' is in two of the files (the second: '" + path +
                                          "'); give each part once");
                }
            }
        }
    }
    return files;
}

const WeightFiles::Tensor* WeightFiles::find(const std::string& name) const {
    const auto it = m_index.find(name);
    return it == m_index.end() ? nullptr : &it->second;
}

bool WeightFiles::hasPrefix(const std::string& prefix) const {
    const auto it = m_index.lower_bound(prefix);
    return it != m_index.end() && it->first.rfind(prefix, 0) == 0;
}

std::vector<std::string> WeightFiles::names() const {
    std::vector<std::string> out;
    out.reserve(m_index.size());
    for (const auto& [name, ignored] : m_index) out.push_back(name);
    return out;
}

uint64_t WeightFiles::bytes() const {
    uint64_t total = 0;
    for (const auto& file : m_files) total += file->fileSize();
    return total;
}

torch::Tensor WeightFiles::load(const std::string& name, torch::ScalarType dtype, torch::Device device) const {
    const Tensor* tensor = find(name);
    if (!tensor) throw CheckpointError("the checkpoint has no tensor '" + name + "'");
    const auto& entry = *tensor->entry;
    const bool isFloat = entry.dtype == "F32" || entry.dtype == "F16" || entry.dtype == "BF16" || entry.dtype == "F64" ||
                         entry.dtype == "F8_E4M3" || entry.dtype == "F8_E5M2";
    if (!isFloat) {
        throw CheckpointError("the tensor '" + name + "' is stored as " + entry.dtype + "; weights must be floating point");
    }
    // One copy out of the mapping, converted on the way where the types differ.
    torch::Tensor stored = tensor->file->tensor(name);
    torch::Tensor out = stored.to(device, dtype);
    if (!torch::isfinite(out).all().item<bool>()) {
        throw CheckpointError("the tensor '" + name + "' holds values that are not finite (NaN or infinity) in " +
                              std::string(c10::toString(dtype)) + "; the file is damaged or of another format");
    }
    return out;
}

Weights::Weights(std::shared_ptr<const WeightFiles> files, std::string prefix, torch::ScalarType dtype,
                 torch::Device device, const std::atomic<bool>* cancel, bool packFloat8)
    : m_files(std::move(files)),
      m_prefix(std::move(prefix)),
      m_dtype(dtype),
      m_device(device),
      m_cancel(cancel),
      m_packFloat8(packFloat8) {}

Weights Weights::sub(const std::string& prefix) const {
    Weights view = *this;
    view.m_prefix += prefix;
    return view;
}

bool Weights::has(const std::string& key) const { return m_files && m_files->find(m_prefix + key) != nullptr; }

std::vector<int64_t> Weights::shape(const std::string& key) const {
    const auto* tensor = m_files ? m_files->find(m_prefix + key) : nullptr;
    if (!tensor) throw CheckpointError("the checkpoint lacks the tensor '" + m_prefix + key + "'");
    return tensor->entry->shape;
}

int64_t Weights::size(const std::string& key, int dim) const {
    const auto sizes = shape(key);
    if (dim < 0 || size_t(dim) >= sizes.size()) {
        throw CheckpointError("the tensor '" + m_prefix + key + "' has the shape " + describeShape(sizes) + ", with no dimension " +
                              std::to_string(dim));
    }
    return sizes[size_t(dim)];
}

const SafeTensorsFile::Entry& Weights::checkedEntry(const std::string& key, const std::vector<int64_t>& expected) const {
    const auto sizes = shape(key);
    bool matches = expected.empty() || expected.size() == sizes.size();
    for (size_t i = 0; matches && i < expected.size(); ++i) matches = expected[i] < 0 || expected[i] == sizes[i];
    if (!matches) {
        std::string text = "[";
        for (size_t i = 0; i < expected.size(); ++i) {
            text += (i ? ", " : "") + (expected[i] < 0 ? std::string("*") : std::to_string(expected[i]));
        }
        throw CheckpointError("the tensor '" + m_prefix + key + "' has the shape " + describeShape(sizes) + " where " +
                              text + "] was expected from the rest of the checkpoint");
    }
    return *m_files->find(m_prefix + key)->entry;
}

torch::Tensor Weights::get(const std::string& key, const std::vector<int64_t>& expected) const {
    const SafeTensorsFile::Entry& entry = checkedEntry(key, expected);
    checkCancelled();
    torch::Tensor tensor = m_files->load(m_prefix + key, m_dtype, m_device);
    ScopedLoad::add(entry.end - entry.begin);
    return tensor;
}

torch::Tensor Weights::getMatrix(const std::string& key, const std::vector<int64_t>& expected) const {
    const SafeTensorsFile::Entry& entry = checkedEntry(key, expected);
    if (!m_packFloat8 || entry.dtype != "F8_E4M3") return get(key, expected);
    checkCancelled();
    const std::string_view bytes = m_files->find(m_prefix + key)->file->data(entry);
    torch::Tensor stored = torch::empty(entry.shape, torch::kByte);
    if (!bytes.empty()) std::memcpy(stored.data_ptr(), bytes.data(), bytes.size());
    // S.1111.111 is E4M3's NaN (it has no infinities).
    if (torch::bitwise_and(stored, 0x7F).eq(0x7F).any().item<bool>()) {
        throw CheckpointError("the tensor '" + m_prefix + key + "' holds float8 NaN values; the file is damaged or of another format");
    }
    ScopedLoad::add(entry.end - entry.begin);
    return stored.to(m_device);
}

torch::Tensor Weights::float8Table() const { return float8E4M3Values().to(m_device, m_dtype); }

torch::Tensor Weights::optional(const std::string& key, const std::vector<int64_t>& expected) const {
    return has(key) ? get(key, expected) : torch::Tensor();
}

int Weights::count(const std::string& key) const {
    int n = 0;
    while (m_files && m_files->hasPrefix(m_prefix + key + std::to_string(n) + ".")) ++n;
    return n;
}

std::vector<std::string> Weights::names() const {
    std::vector<std::string> out;
    if (!m_files) return out;
    for (const std::string& name : m_files->names()) {
        if (name.rfind(m_prefix, 0) == 0) out.push_back(name.substr(m_prefix.size()));
    }
    return out;
}

int64_t Weights::parameters() const {
    int64_t total = 0;
    for (const std::string& name : names()) {
        int64_t count = 1;
        for (int64_t size : shape(name)) count *= size;
        total += count;
    }
    return total;
}

int64_t Weights::float8Parameters() const {
    int64_t total = 0;
    for (const std::string& name : names()) {
        const auto* stored = m_files->find(m_prefix + name);
        if (stored->entry->dtype == "F8_E4M3" && stored->entry->shape.size() == 2) {
            total += int64_t(stored->entry->end - stored->entry->begin);
        }
    }
    return total;
}

uint64_t Weights::storedBytes() const {
    uint64_t total = 0;
    for (const std::string& name : names()) {
        const auto* stored = m_files->find(m_prefix + name);
        total += stored->entry->end - stored->entry->begin;
    }
    return total;
}

std::vector<std::string> Weights::storedDtypes() const {
    std::set<std::string> dtypes;
    for (const std::string& name : names()) dtypes.insert(m_files->find(m_prefix + name)->entry->dtype);
    return {dtypes.begin(), dtypes.end()};
}

void Weights::checkCancelled() const {
    if (m_cancel && m_cancel->load()) throw CancelledError();
}

}  // namespace flowscope::core
