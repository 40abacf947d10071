#pragma once

#include <QWidget>

#include "ui/PromptBox.h"
#include "ui/RunSettings.h"
#include "ui/SampleCanvas.h"

class QComboBox;
class QDoubleSpinBox;
class QLineEdit;
class QSpinBox;
class QPushButton;

namespace flowscope::ui {

// The settings every lane shares: model, seed, batch, device; plus the view and the lane count.
class SettingsPanel : public QWidget {
    Q_OBJECT

public:
    explicit SettingsPanel(QWidget* parent = nullptr);

    // model, seed, batch and device filled in; lane fields left at their defaults.
    RunSettings shared() const;
    void setShared(const RunSettings& settings);
    SampleCanvas::View view() const;
    int laneCount() const;
    void setLaneCount(int count);
    void newRandomSeed();
    // Adds a model spec to the list (once) and selects it.
    void addModel(const QString& spec);

    QComboBox* modelBox() const { return m_model; }
    QComboBox* deviceBox() const { return m_device; }
    QDoubleSpinBox* seedBox() const { return m_seed; }
    QSpinBox* batchBox() const { return m_batch; }
    // "unconditional", then the model's classes (core::Engine::describeModel).
    QComboBox* conditionBox() const { return m_condition; }
    // Whether the model is guided towards an input of the run rather than a class: SD3 towards its
    // prompt (against the negative prompt), a bundle towards its conditioning tensors.
    bool inputGuided() const { return m_inputGuided; }
    // The prompt, size and guidance of a text-to-image checkpoint (hidden for other models).
    PromptBox* promptBox() const { return m_prompt; }
    // A bundle's conditioning files for the run (shown for bundles whose manifest names one):
    // empty means the manifest's tensors, and zeros for the unconditional half.
    QLineEdit* conditioningEdit() const { return m_conditioning; }
    QLineEdit* unconditioningEdit() const { return m_unconditioning; }

Q_SIGNALS:
    void settingsChanged();
    void viewChanged(flowscope::ui::SampleCanvas::View view);
    void laneCountChanged(int count);
    void openModelRequested();

private:
    // Offers the classes of the model now in the box, keeping the chosen class where it has it.
    void refreshClasses();
    void selectCondition(const QString& condition);
    // The two file rows of a bundle's conditioning tensors, in one widget.
    QWidget* makeConditioningRows();

    QComboBox* m_model;
    QComboBox* m_condition;
    PromptBox* m_prompt;
    QWidget* m_conditioningRows;
    QLineEdit* m_conditioning;
    QLineEdit* m_unconditioning;
    QString m_classesOf;  // the model whose classes the condition box lists
    QDoubleSpinBox* m_seed;
    QSpinBox* m_batch;
    QComboBox* m_device;
    QComboBox* m_view;
    QSpinBox* m_lanes;
    // The shared settings no box shows (resolution, dtype, t_end, tolerances), as the last
    // restored PNG or session gave them, so that they are run and exported unchanged.
    RunSettings m_unshown;
    bool m_inputGuided = false;
};

}  // namespace flowscope::ui
