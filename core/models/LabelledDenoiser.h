#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/models/EmpiricalDenoiser.h"
#include "core/sampling/Model.h"

namespace flowscope::core {

// The empirical denoiser of a labelled dataset as a conditional model: D_c is the ideal denoiser
// of class c's items alone, the null class the denoiser of the whole set (DESIGN.md section 6).
// Rows of one call are grouped by class; each class's denoiser is made the first time a row
// asks for it (a copy of that class's items).
class LabelledDenoiser final : public Model {
public:
    // labels: one per item of `all`'s data, each an index into `classNames` or kNullClass (an
    // item of no class, part of the whole set only).
    LabelledDenoiser(std::shared_ptr<EmpiricalDenoiser> all, std::vector<int64_t> labels,
                     std::vector<std::string> classNames);

    std::string name() const override { return m_all->name(); }
    std::vector<int64_t> sampleShape() const override { return m_all->sampleShape(); }
    torch::Tensor denoise(const torch::Tensor& x, double alpha, double sigma) override;
    torch::Tensor denoiseRows(const torch::Tensor& x, const std::vector<double>& alpha,
                              const std::vector<double>& sigma) override;
    void prepare(torch::Device device, torch::ScalarType dtype) override;
    std::vector<std::string> takeNotes() override { return m_all->takeNotes(); }

    std::vector<std::string> classNames() const override { return m_classNames; }
    void setRowClasses(std::vector<int64_t> classes) override;
    // The items of class c ([N_c, ...]).
    torch::Tensor classData(int64_t c) const;
    const EmpiricalDenoiser& all() const { return *m_all; }

private:
    EmpiricalDenoiser& denoiserOf(int64_t c);
    // Runs `body(model, rows)` on each class's rows of a call and puts the results together.
    template <typename Body>
    torch::Tensor byClass(const torch::Tensor& x, Body&& body);

    std::shared_ptr<EmpiricalDenoiser> m_all;
    std::vector<int64_t> m_labels;
    std::vector<std::string> m_classNames;
    std::vector<std::shared_ptr<EmpiricalDenoiser>> m_classes;  // made on first use
    std::vector<int64_t> m_rowClasses;
    bool m_prepared = false;
    torch::Device m_device = torch::kCPU;
    torch::ScalarType m_dtype = torch::kFloat32;
};

}  // namespace flowscope::core
