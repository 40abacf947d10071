#pragma once

#include <QWidget>

#include "core/api/Guidance.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QFrame;
class QSlider;
class QSpinBox;
class QToolButton;

namespace flowscope::ui {

// A lane's guidance (DESIGN.md section 6): the method, the scale w (slider 0 to 15 in steps of
// 0.1, and a box for finer values) and, on demand, the method's own parameters. Disabled while
// the run has no class to guide towards.
class GuidanceBar : public QWidget {
    Q_OBJECT

public:
    static constexpr double kMaxSliderScale = 15.0;

    explicit GuidanceBar(QWidget* parent = nullptr);

    // The settings as shown; parameters of other methods stay at their defaults, so every
    // setting the bar returns passes core::checkGuidance.
    core::GuidanceSettings settings() const;
    // Shows `settings` (which checkGuidance accepted) without emitting changed().
    void setSettings(const core::GuidanceSettings& settings);
    // Whether the run has a class (guidance applies) or not (the bar is disabled).
    void setConditional(bool conditional);

    QComboBox* methodBox() const { return m_method; }
    QSlider* scaleSlider() const { return m_scaleSlider; }
    QDoubleSpinBox* scaleBox() const { return m_scale; }
    QToolButton* parametersButton() const { return m_more; }
    QDoubleSpinBox* intervalLowBox() const { return m_low; }
    QDoubleSpinBox* intervalHighBox() const { return m_high; }
    QDoubleSpinBox* rescaleBox() const { return m_rescale; }
    QDoubleSpinBox* apgEtaBox() const { return m_eta; }
    QDoubleSpinBox* apgMomentumBox() const { return m_momentum; }
    QDoubleSpinBox* apgNormBox() const { return m_norm; }
    QSpinBox* zeroStepsBox() const { return m_zeroSteps; }
    QFrame* parametersPanel() const { return m_parameters; }

Q_SIGNALS:
    void changed();

private:
    // Shows only the parameters of the chosen method.
    void showMethodParameters();

    QComboBox* m_method;
    QSlider* m_scaleSlider;
    QDoubleSpinBox* m_scale;
    QToolButton* m_more;
    QFrame* m_parameters;
    QDoubleSpinBox* m_low;
    QDoubleSpinBox* m_high;
    QDoubleSpinBox* m_rescale;
    QDoubleSpinBox* m_eta;
    QDoubleSpinBox* m_momentum;
    QDoubleSpinBox* m_norm;  // 0: no threshold
    QSpinBox* m_zeroSteps;
};

}  // namespace flowscope::ui
