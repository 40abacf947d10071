#include "core/models/LabelledDenoiser.h"

#include <algorithm>
#include <map>

#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/sampling/Device.h"
#include "core/sampling/DeviceTransfer.h"

namespace flowscope::core {

LabelledDenoiser::LabelledDenoiser(std::shared_ptr<EmpiricalDenoiser> all, std::vector<int64_t> labels,
                                   std::vector<std::string> classNames)
    : m_all(std::move(all)), m_labels(std::move(labels)), m_classNames(std::move(classNames)) {
    TORCH_CHECK(static_cast<int64_t>(m_labels.size()) == m_all->size(), "internal: one label per item");
    const auto count = static_cast<int64_t>(m_classNames.size());
    for (const int64_t label : m_labels) {
        TORCH_CHECK(label == kNullClass || (label >= 0 && label < count), "internal: label out of range");
    }
    m_classes.resize(m_classNames.size());
}

torch::Tensor LabelledDenoiser::classData(int64_t c) const {
    std::vector<int64_t> items;
    for (size_t i = 0; i < m_labels.size(); ++i) {
        if (m_labels[i] == c) items.push_back(static_cast<int64_t>(i));
    }
    return m_all->data().index_select(0, torch::tensor(items, torch::kInt64));
}

EmpiricalDenoiser& LabelledDenoiser::denoiserOf(int64_t c) {
    if (c == kNullClass) return *m_all;
    auto& denoiser = m_classes.at(static_cast<size_t>(c));
    if (!denoiser) {
        const auto items = static_cast<double>(std::count(m_labels.begin(), m_labels.end(), c));
        if (items == 0) {
            throw InvalidRequestError("class '" + m_classNames[static_cast<size_t>(c)] + "' of '" + name() +
                                      "' has no items; choose another class");
        }
        double itemBytes = 4.0;
        for (const int64_t size : m_all->sampleShape()) itemBytes *= double(size);
        // The class's copy, and its copy on the run's device in the run's dtype.
        checkFitsInMemory(items * itemBytes * 3.0, 0.5,
                          "the " + std::to_string(int64_t(items)) + " items of class '" +
                              m_classNames[static_cast<size_t>(c)] + "'",
                          "use fewer images (fashion-mnist:N) or a smaller --resolution");
        denoiser = std::make_shared<EmpiricalDenoiser>(name() + "#" + m_classNames[static_cast<size_t>(c)], classData(c),
                                                       m_all->storage());
        if (m_prepared) denoiser->prepare(m_device, m_dtype);
    }
    return *denoiser;
}

void LabelledDenoiser::prepare(torch::Device device, torch::ScalarType dtype) {
    m_all->prepare(device, dtype);
    for (const auto& denoiser : m_classes) {
        if (denoiser) denoiser->prepare(device, dtype);
    }
    m_prepared = true;
    m_device = device;
    m_dtype = dtype;
}

void LabelledDenoiser::setRowClasses(std::vector<int64_t> classes) {
    const auto count = static_cast<int64_t>(m_classNames.size());
    for (const int64_t c : classes) {
        TORCH_CHECK(c == kNullClass || (c >= 0 && c < count), "internal: class index out of range");
    }
    m_rowClasses = std::move(classes);
}

template <typename Body>
torch::Tensor LabelledDenoiser::byClass(const torch::Tensor& x, Body&& body) {
    if (m_rowClasses.empty()) return body(*m_all, std::vector<int64_t>{});
    TORCH_CHECK(static_cast<int64_t>(m_rowClasses.size()) == x.size(0), "internal: one class per row");
    std::map<int64_t, std::vector<int64_t>> rowsByClass;
    for (size_t b = 0; b < m_rowClasses.size(); ++b) rowsByClass[m_rowClasses[b]].push_back(static_cast<int64_t>(b));
    if (rowsByClass.size() == 1) return body(denoiserOf(rowsByClass.begin()->first), std::vector<int64_t>{});
    torch::Tensor out = torch::empty_like(x);
    for (const auto& [c, rows] : rowsByClass) {
        const torch::Tensor index = deviceIndex(rows, x.device());
        out.index_copy_(0, index, body(denoiserOf(c), rows));
    }
    return out;
}

torch::Tensor LabelledDenoiser::denoise(const torch::Tensor& x, double alpha, double sigma) {
    return byClass(x, [&](EmpiricalDenoiser& model, const std::vector<int64_t>& rows) {
        if (rows.empty()) return model.denoise(x, alpha, sigma);
        return model.denoise(x.index_select(0, deviceIndex(rows, x.device())), alpha, sigma);
    });
}

torch::Tensor LabelledDenoiser::denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                                            const std::vector<double>& sigma) {
    return byClass(x, [&](EmpiricalDenoiser& model, const std::vector<int64_t>& rows) {
        if (rows.empty()) return model.denoiseRows(x, alpha, sigma);
        std::vector<double> a, s;
        for (const int64_t row : rows) {
            a.push_back(alpha[static_cast<size_t>(row)]);
            s.push_back(sigma[static_cast<size_t>(row)]);
        }
        return model.denoiseRows(x.index_select(0, deviceIndex(rows, x.device())), a, s);
    });
}

}  // namespace flowscope::core
