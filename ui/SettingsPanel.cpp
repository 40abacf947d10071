#include "ui/SettingsPanel.h"

#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QRandomGenerator>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QToolButton>

#include "core/api/Engine.h"

namespace flowscope::ui {

SettingsPanel::SettingsPanel(QWidget* parent) : QWidget(parent) {
    m_model = new QComboBox(this);
    m_model->setEditable(true);
    // The exact denoisers, then the networks FlowScope ships, trained by its own code.
    for (const core::ModelEntry& entry : core::Engine::modelMenu()) {
        m_model->addItem(QString::fromStdString(entry.spec));
        if (!entry.description.empty()) {
            m_model->setItemData(m_model->count() - 1, QString::fromStdString(entry.description), Qt::ToolTipRole);
        }
    }
    m_model->setToolTip(tr("fashion-mnist: the exact denoiser of the 60,000 training images; gmm:*: 2-D Gaussian "
                           "mixtures; points:*: 2-D point clouds; shipped:*: networks trained by FlowScope "
                           "(Train panel); folder:PATH: your own images; bundle:DIR: your own network "
                           "(File > Open model...)"));
    auto* folder = new QPushButton(tr("Image folder..."), this);
    folder->setToolTip(tr("Use the exact denoiser of a folder of your own images"));
    connect(folder, &QPushButton::clicked, this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Folder of images"));
        if (!dir.isEmpty()) m_model->setEditText(modelSpec(core::SpecForm::Folder, dir));
    });

    auto* bundle = new QPushButton(tr("Open model..."), this);
    bundle->setObjectName("openModelButton");
    bundle->setToolTip(tr("Sample your own PyTorch network: a bundle folder with flowscope.json and a TorchScript file"));
    connect(bundle, &QPushButton::clicked, this, &SettingsPanel::openModelRequested);
    auto* modelButtons = new QHBoxLayout;
    modelButtons->addWidget(folder);
    modelButtons->addWidget(bundle);

    m_condition = new QComboBox(this);
    m_condition->setObjectName("conditionBox");
    m_condition->setToolTip(tr("Sample one class of a conditional model (each lane guides towards it), or "
                               "the whole model (unconditional)"));
    m_prompt = new PromptBox(this);
    m_conditioningRows = makeConditioningRows();

    refreshClasses();

    // A QSpinBox holds an int, which stops at 2^31 - 1; seeds run to 2^32 - 1, which a double
    // holds exactly, so every seed the engine takes can be shown and edited.
    m_seed = new QDoubleSpinBox(this);
    m_seed->setDecimals(0);
    m_seed->setRange(0, double(core::kMaxSeed));
    auto* randomSeed = new QPushButton(tr("New seed"), this);
    randomSeed->setToolTip(tr("A new random seed (R)"));
    connect(randomSeed, &QPushButton::clicked, this, &SettingsPanel::newRandomSeed);
    auto* seedRow = new QHBoxLayout;
    seedRow->addWidget(m_seed, 1);
    seedRow->addWidget(randomSeed);

    m_batch = new QSpinBox(this);
    m_batch->setRange(1, core::kMaxBatch);
    m_batch->setValue(16);
    m_device = new QComboBox(this);
    m_device->addItems(engineNames(core::NameKind::Device));
    m_view = new QComboBox(this);
    m_view->addItems({tr("State x_t"), tr("Prediction x̂0"), tr("Both")});
    m_lanes = new QSpinBox(this);
    m_lanes->setRange(1, 4);
    m_lanes->setValue(2);

    auto* form = new QFormLayout(this);
    form->addRow(tr("Model"), m_model);
    form->addRow(QString(), modelButtons);
    form->addRow(tr("Condition"), m_condition);
    form->addRow(m_prompt);
    form->addRow(m_conditioningRows);
    form->addRow(tr("Seed"), seedRow);
    form->addRow(tr("Batch"), m_batch);
    form->addRow(tr("Device"), m_device);
    form->addRow(tr("Show"), m_view);
    form->addRow(tr("Lanes"), m_lanes);

    connect(m_model, &QComboBox::currentTextChanged, this, [this] {
        refreshClasses();
        Q_EMIT settingsChanged();
    });
    connect(m_condition, &QComboBox::currentIndexChanged, this, &SettingsPanel::settingsChanged);
    connect(m_prompt, &PromptBox::changed, this, &SettingsPanel::settingsChanged);
    connect(m_seed, &QDoubleSpinBox::valueChanged, this, &SettingsPanel::settingsChanged);
    connect(m_batch, &QSpinBox::valueChanged, this, &SettingsPanel::settingsChanged);
    connect(m_device, &QComboBox::currentTextChanged, this, &SettingsPanel::settingsChanged);
    connect(m_device, &QComboBox::currentTextChanged, m_prompt, &PromptBox::setDevice);
    connect(m_view, &QComboBox::currentIndexChanged, this, [this] { Q_EMIT viewChanged(view()); });
    connect(m_lanes, &QSpinBox::valueChanged, this, &SettingsPanel::laneCountChanged);
}

RunSettings SettingsPanel::shared() const {
    RunSettings settings = m_unshown;
    settings.model = m_model->currentText().trimmed();
    settings.seed = quint64(m_seed->value());
    settings.batch = m_batch->value();
    settings.device = m_device->currentText();
    settings.condition = m_condition->currentData().toString();
    if (!m_prompt->isHidden()) settings.text = m_prompt->text();
    if (!m_conditioningRows->isHidden()) {
        settings.text.conditioning = m_conditioning->text().trimmed().toStdString();
        settings.text.unconditioning = m_unconditioning->text().trimmed().toStdString();
    } else {
        settings.text.conditioning.clear();  // a restored bundle's files are not another model's
        settings.text.unconditioning.clear();
    }
    return settings;
}

QWidget* SettingsPanel::makeConditioningRows() {
    auto* rows = new QWidget(this);
    auto* form = new QFormLayout(rows);
    form->setContentsMargins(0, 0, 0, 0);
    const auto row = [&](const QString& label, const QString& placeholder, const QString& tip, const QString& name) {
        auto* edit = new QLineEdit(rows);
        edit->setObjectName(name);
        edit->setPlaceholderText(placeholder);
        edit->setToolTip(tip);
        auto* browse = new QToolButton(rows);
        browse->setText(QStringLiteral("…"));
        browse->setToolTip(tr("Choose a .safetensors file"));
        connect(browse, &QToolButton::clicked, this, [this, edit, label] {
            const QString file = QFileDialog::getOpenFileName(this, label, QFileInfo(edit->text()).path(),
                                                              tr("Tensors (*.safetensors)"));
            if (!file.isEmpty()) edit->setText(file);
        });
        connect(edit, &QLineEdit::editingFinished, this, &SettingsPanel::settingsChanged);
        connect(edit, &QLineEdit::textChanged, this, [this, edit] {
            if (!edit->hasFocus()) Q_EMIT settingsChanged();  // chosen in the dialog or restored
        });
        auto* line = new QHBoxLayout;
        line->addWidget(edit, 1);
        line->addWidget(browse);
        form->addRow(label, line);
        return edit;
    };
    m_conditioning = row(tr("Tensors"), tr("the model's own"),
                         tr("A .safetensors file of the conditioning tensors the network takes (as --cond): a "
                            "prompt's embeddings, say. Empty: those named in the bundle's manifest"),
                         "conditioningEdit");
    m_unconditioning = row(tr("Unconditional"), tr("zeros"),
                           tr("The tensors of guidance's unconditional half (as --uncond), with the same names and "
                              "shapes. Empty: zeros"),
                           "unconditioningEdit");
    return rows;
}

void SettingsPanel::refreshClasses() {
    const QString spec = m_model->currentText().trimmed();
    if (spec == m_classesOf && m_condition->count() > 0) return;
    m_classesOf = spec;
    const QString chosen = m_condition->currentData().toString();
    const QSignalBlocker block(m_condition);
    m_condition->clear();
    const core::ModelDescription description = core::Engine::describeModel(spec.toStdString());
    // Text-to-image checkpoints are conditioned on their prompt, and bundles with conditioning
    // tensors but no classes on those tensors, not on a class.
    const bool byTensors = description.takesConditioning && description.classes.empty();
    m_condition->addItem(description.takesText ? tr("the prompt")
                         : byTensors           ? tr("the conditioning tensors")
                                               : tr("unconditional"),
                         QString());
    m_prompt->setVisible(description.takesText);
    m_conditioningRows->setVisible(description.takesConditioning);
    m_inputGuided = description.negativePrompt || byTensors;
    if (description.takesText) {
        m_prompt->setModel(spec, description.family.find("[dev]") != std::string::npos, description.negativePrompt);
    }
    for (const std::string& name : description.classes) {
        m_condition->addItem(QString::fromStdString(name), QString::fromStdString(name));
    }
    m_condition->setEnabled(m_condition->count() > 1);
    const int kept = m_condition->findData(chosen);
    m_condition->setCurrentIndex(kept >= 0 ? kept : 0);
}

void SettingsPanel::selectCondition(const QString& condition) {
    int index = m_condition->findData(condition);
    if (index < 0) {
        // A class the model does not list (a restored file's, say) is kept as it was given, so that
        // the run refuses it in words rather than quietly running another one.
        m_condition->addItem(condition, condition);
        index = m_condition->count() - 1;
    }
    m_condition->setCurrentIndex(index);
}

void SettingsPanel::setShared(const RunSettings& settings) {
    const QSignalBlocker b1(m_model), b2(m_seed), b3(m_batch), b4(m_device), b5(m_condition);
    m_unshown = settings;
    m_model->setEditText(settings.model);
    refreshClasses();
    selectCondition(settings.condition);
    // RunSettings::fromJson refuses what these boxes cannot show (seeds past 2^32 - 1, batches
    // past the engine's limit, unknown devices), so nothing is clamped or replaced here.
    m_seed->setValue(double(settings.seed));
    m_batch->setValue(settings.batch);
    m_device->setCurrentText(settings.device);
    m_prompt->setDevice(m_device->currentText());  // its signals are blocked here
    m_prompt->setText(settings.text);
    const QSignalBlocker b6(m_conditioning), b7(m_unconditioning);
    m_conditioning->setText(QString::fromStdString(settings.text.conditioning));
    m_unconditioning->setText(QString::fromStdString(settings.text.unconditioning));
}

SampleCanvas::View SettingsPanel::view() const {
    switch (m_view->currentIndex()) {
        case 1: return SampleCanvas::View::Prediction;
        case 2: return SampleCanvas::View::Both;
        default: return SampleCanvas::View::State;
    }
}

int SettingsPanel::laneCount() const { return m_lanes->value(); }

void SettingsPanel::setLaneCount(int count) { m_lanes->setValue(count); }

void SettingsPanel::addModel(const QString& spec) {
    if (m_model->findText(spec) < 0) m_model->addItem(spec);
    m_model->setCurrentIndex(m_model->findText(spec));
}

void SettingsPanel::newRandomSeed() { m_seed->setValue(int(QRandomGenerator::global()->bounded(1, 1 << 30))); }

}  // namespace flowscope::ui
