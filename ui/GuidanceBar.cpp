#include "ui/GuidanceBar.h"

#include <cmath>

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QFrame>
#include <QHBoxLayout>
#include <QLabel>
#include <QSignalBlocker>
#include <QSlider>
#include <QSpinBox>
#include <QToolButton>
#include <QVBoxLayout>

#include "core/api/Engine.h"

namespace flowscope::ui {
namespace {

constexpr int kSliderTicksPerUnit = 10;

QDoubleSpinBox* numberBox(QWidget* parent, double low, double high, double step, int decimals, const QString& tip) {
    auto* box = new QDoubleSpinBox(parent);
    box->setRange(low, high);
    box->setSingleStep(step);
    box->setDecimals(decimals);
    box->setToolTip(tip);
    return box;
}

}  // namespace

GuidanceBar::GuidanceBar(QWidget* parent) : QWidget(parent) {
    m_method = new QComboBox(this);
    for (const std::string& name : core::guidanceMethodNames()) m_method->addItem(QString::fromStdString(name));
    m_method->setCurrentText(QString::fromStdString(core::toString(core::GuidanceMethod::Cfg)));
    m_method->setToolTip(tr("Guidance: cfg (classifier-free), apg (adaptive projected), cfg-zero (CFG-Zero*), or none"));
    m_scaleSlider = new QSlider(Qt::Horizontal, this);
    m_scaleSlider->setRange(0, int(kMaxSliderScale * kSliderTicksPerUnit));
    m_scaleSlider->setValue(kSliderTicksPerUnit);
    m_scaleSlider->setToolTip(tr("Guidance scale w: 1 is the class's own model, 0 the unconditional one"));
    // Four lanes side by side must fit a laptop's screen: the row has no label (the method's box
    // says what it is), the slider may shrink, and the scale's box types without arrows.
    m_scaleSlider->setMinimumWidth(24);
    m_scale = numberBox(this, 0.0, 100.0, 0.1, 2, m_scaleSlider->toolTip());
    m_scale->setValue(1.0);
    m_scale->setButtonSymbols(QAbstractSpinBox::NoButtons);
    m_scale->setPrefix(QStringLiteral("w "));
    m_more = new QToolButton(this);
    m_more->setText(QStringLiteral("…"));
    m_more->setCheckable(true);
    m_more->setToolTip(tr("The method's parameters"));

    m_parameters = new QFrame(this);
    m_parameters->setFrameShape(QFrame::StyledPanel);
    m_low = numberBox(m_parameters, 0.0, 1.0, 0.05, 3, tr("Guidance applies from this noise level (0 noise, 1 data)"));
    m_high = numberBox(m_parameters, 0.0, 1.0, 0.05, 3, tr("... up to this one"));
    m_high->setValue(1.0);
    m_rescale = numberBox(m_parameters, 0.0, 1.0, 0.05, 2, tr("CFG rescale phi: 0 off, 0.7 usual"));
    m_eta = numberBox(m_parameters, -10.0, 10.0, 0.1, 2, tr("APG eta: the weight of the part along D_c (1: cfg)"));
    m_momentum = numberBox(m_parameters, 0.0, 0.99, 0.05, 2, tr("APG momentum beta"));
    m_norm = numberBox(m_parameters, 0.0, 1e6, 0.5, 2, tr("APG norm threshold r (0: none)"));
    m_zeroSteps = new QSpinBox(m_parameters);
    m_zeroSteps->setRange(0, core::kMaxSteps);
    m_zeroSteps->setToolTip(tr("CFG-Zero*: the first K steps hold the state still"));
    auto* interval = new QHBoxLayout;
    interval->addWidget(m_low);
    interval->addWidget(new QLabel(QStringLiteral("–"), m_parameters));
    interval->addWidget(m_high);
    auto* form = new QFormLayout(m_parameters);
    form->setContentsMargins(4, 2, 4, 2);
    form->addRow(tr("Interval"), interval);
    form->addRow(tr("Rescale"), m_rescale);
    form->addRow(tr("APG eta"), m_eta);
    form->addRow(tr("Momentum"), m_momentum);
    form->addRow(tr("Norm r"), m_norm);
    form->addRow(tr("Zero steps"), m_zeroSteps);
    m_parameters->setVisible(false);

    auto* row = new QHBoxLayout;
    row->setContentsMargins(0, 0, 0, 0);
    row->addWidget(m_method);
    row->addWidget(m_scaleSlider, 1);
    row->addWidget(m_scale);
    row->addWidget(m_more);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(2);
    layout->addLayout(row);
    layout->addWidget(m_parameters);

    connect(m_scaleSlider, &QSlider::valueChanged, this,
            [this](int ticks) { m_scale->setValue(double(ticks) / kSliderTicksPerUnit); });
    connect(m_scale, &QDoubleSpinBox::valueChanged, this, [this](double value) {
        const QSignalBlocker block(m_scaleSlider);
        m_scaleSlider->setValue(int(std::lround(std::min(value, kMaxSliderScale) * kSliderTicksPerUnit)));
        Q_EMIT changed();
    });
    connect(m_more, &QToolButton::toggled, m_parameters, &QWidget::setVisible);
    connect(m_method, &QComboBox::currentIndexChanged, this, [this] {
        showMethodParameters();
        Q_EMIT changed();
    });
    for (QDoubleSpinBox* box : {m_low, m_high, m_rescale, m_eta, m_momentum, m_norm}) {
        connect(box, &QDoubleSpinBox::valueChanged, this, &GuidanceBar::changed);
    }
    // The interval's ends never cross.
    connect(m_low, &QDoubleSpinBox::valueChanged, this, [this](double low) { m_high->setMinimum(low); });
    connect(m_high, &QDoubleSpinBox::valueChanged, this, [this](double high) { m_low->setMaximum(high); });
    connect(m_zeroSteps, &QSpinBox::valueChanged, this, &GuidanceBar::changed);
    showMethodParameters();
}

void GuidanceBar::showMethodParameters() {
    const core::GuidanceMethod method = core::parseGuidanceMethod(m_method->currentText().toStdString());
    auto* form = static_cast<QFormLayout*>(m_parameters->layout());
    form->setRowVisible(m_rescale, method == core::GuidanceMethod::Cfg);
    for (QWidget* box : {static_cast<QWidget*>(m_eta), static_cast<QWidget*>(m_momentum), static_cast<QWidget*>(m_norm)}) {
        form->setRowVisible(box, method == core::GuidanceMethod::Apg);
    }
    form->setRowVisible(m_zeroSteps, method == core::GuidanceMethod::CfgZero);
    const bool scaled = method != core::GuidanceMethod::None;
    m_scaleSlider->setEnabled(scaled);
    m_scale->setEnabled(scaled);
}

core::GuidanceSettings GuidanceBar::settings() const {
    core::GuidanceSettings settings;
    settings.method = core::parseGuidanceMethod(m_method->currentText().toStdString());
    if (settings.method == core::GuidanceMethod::None) return settings;
    settings.scale = m_scale->value();
    settings.intervalLow = m_low->value();
    settings.intervalHigh = m_high->value();
    if (settings.method == core::GuidanceMethod::Cfg) settings.rescale = m_rescale->value();
    if (settings.method == core::GuidanceMethod::Apg) {
        settings.apgEta = m_eta->value();
        settings.apgMomentum = m_momentum->value();
        if (m_norm->value() > 0.0) settings.apgNorm = m_norm->value();
    }
    if (settings.method == core::GuidanceMethod::CfgZero) settings.cfgZeroSteps = m_zeroSteps->value();
    return settings;
}

void GuidanceBar::setSettings(const core::GuidanceSettings& settings) {
    const QSignalBlocker b1(m_method), b2(m_scale), b3(m_scaleSlider), b4(m_low), b5(m_high), b6(m_rescale), b7(m_eta),
        b8(m_momentum), b9(m_norm), b10(m_zeroSteps);
    m_method->setCurrentText(QString::fromStdString(core::toString(settings.method)));
    // A run without guidance keeps the scale the bar showed: picking a method again restores it.
    if (settings.method != core::GuidanceMethod::None) {
        m_scale->setValue(settings.scale);
        m_scaleSlider->setValue(int(std::lround(std::min(settings.scale, kMaxSliderScale) * kSliderTicksPerUnit)));
        m_low->setRange(0.0, settings.intervalHigh);
        m_high->setRange(settings.intervalLow, 1.0);
        m_low->setValue(settings.intervalLow);
        m_high->setValue(settings.intervalHigh);
        m_rescale->setValue(settings.rescale);
        m_eta->setValue(settings.apgEta);
        m_momentum->setValue(settings.apgMomentum);
        m_norm->setValue(std::isfinite(settings.apgNorm) ? settings.apgNorm : 0.0);
        m_zeroSteps->setValue(settings.cfgZeroSteps);
    }
    showMethodParameters();
}

void GuidanceBar::setConditional(bool conditional) {
    setEnabled(conditional);
    setToolTip(conditional ? QString() : tr("Choose a class (Condition) to guide towards"));
}

}  // namespace flowscope::ui
