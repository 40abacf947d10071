#include "ui/PromptBox.h"

#include <algorithm>

#include <QDoubleSpinBox>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QTextBlock>

#include "core/api/Checkpoints.h"
#include "core/api/Names.h"
#include "ui/RunSettings.h"

namespace flowscope::ui {
namespace {

QString sizeTip() { return QObject::tr("Multiples of 16: FLUX.1 and SD3 take 2x2 patches of their 1/8-size latents"); }

QSpinBox* sideBox(QWidget* parent, const QString& name) {
    auto* box = new QSpinBox(parent);
    box->setObjectName(name);
    box->setRange(16, 4096);
    box->setSingleStep(16);
    box->setValue(1024);
    box->setSuffix(QObject::tr(" px"));
    box->setToolTip(sizeTip());
    return box;
}

}  // namespace

PromptBox::PromptBox(QWidget* parent) : QWidget(parent) {
    m_prompt = new QPlainTextEdit(this);
    m_prompt->setObjectName("promptEdit");
    m_prompt->setPlaceholderText(tr("Prompt (Ctrl+Enter runs)"));
    m_prompt->setTabChangesFocus(true);
    m_prompt->setFixedHeight(m_prompt->fontMetrics().lineSpacing() * 4 + 12);
    m_negative = new QPlainTextEdit(this);
    m_negative->setObjectName("negativePromptEdit");
    m_negative->setPlaceholderText(tr("Negative prompt"));
    m_negative->setToolTip(tr("What classifier-free guidance steers away from: the unconditional half of each step"));
    m_negative->setTabChangesFocus(true);
    m_negative->setFixedHeight(m_negative->fontMetrics().lineSpacing() * 2 + 12);
    m_counts = new QLabel(this);
    m_counts->setObjectName("promptTokenCounts");
    m_counts->setToolTip(tr("Tokens of the prompt against each text encoder's limit; the words past a limit "
                            "are greyed and struck through: the model never sees them"));
    m_memory = new QLabel(this);
    m_memory->setObjectName("memoryEstimate");
    m_memory->setWordWrap(true);
    m_memory->setToolTip(tr("What the model's parts need on the CPU, as the engine loads them: float32, or bfloat16 "
                            "where float32 would not fit; the text encoders one at a time before the transformer"));
    m_width = sideBox(this, "widthBox");
    m_height = sideBox(this, "heightBox");
    m_guidance = new QDoubleSpinBox(this);
    m_guidance->setObjectName("fluxGuidanceBox");
    m_guidance->setRange(0.0, 30.0);
    m_guidance->setSingleStep(0.5);
    m_guidance->setValue(core::TextSettings{}.fluxGuidance);
    m_guidance->setToolTip(tr("FLUX.1 [dev]'s distilled guidance: an input of the network, not classifier-free guidance "
                              "(one network call a step)"));
    m_guidanceLabel = new QLabel(tr("Guidance"), this);

    auto* size = new QHBoxLayout;
    size->addWidget(m_width);
    size->addWidget(new QLabel(QStringLiteral("x"), this));
    size->addWidget(m_height);
    auto* form = new QFormLayout(this);
    form->setContentsMargins(0, 0, 0, 0);
    form->addRow(m_prompt);
    form->addRow(m_counts);
    form->addRow(m_negative);
    form->addRow(tr("Size"), size);
    form->addRow(m_guidanceLabel, m_guidance);
    form->addRow(m_memory);

    m_recount.setSingleShot(true);
    m_recount.setInterval(250);
    connect(&m_recount, &QTimer::timeout, this, &PromptBox::recount);
    connect(m_prompt, &QPlainTextEdit::textChanged, this, [this] {
        m_recount.start();
        Q_EMIT changed();
    });
    connect(m_negative, &QPlainTextEdit::textChanged, this, &PromptBox::changed);
    for (QSpinBox* box : {m_width, m_height}) connect(box, &QSpinBox::valueChanged, this, &PromptBox::changed);
    connect(m_guidance, &QDoubleSpinBox::valueChanged, this, &PromptBox::changed);
    setModel({}, false, false);
}

void PromptBox::setModel(const QString& spec, bool dev, bool negative) {
    QString path;
    specHasForm(spec, core::SpecForm::Checkpoint, &path);
    const QFileInfo info(path);
    m_tokenizers = path.isEmpty() ? QString() : info.isDir() ? info.absoluteFilePath() : info.absolutePath();
    m_guidance->setVisible(dev);
    m_guidanceLabel->setVisible(dev);
    m_negative->setVisible(negative);
    inspectModel(path);
    recount();
}

void PromptBox::setDevice(const QString& device) {
    if (device == m_device) return;
    m_device = device;
    if (!m_modelPath.isEmpty()) inspectModel(m_modelPath);
}

void PromptBox::inspectModel(const QString& path) {
    m_modelPath = path;
    m_memory->clear();
    m_memory->setVisible(!path.isEmpty());
    for (QSpinBox* box : {m_width, m_height}) {
        box->setMaximum(4096);
        box->setToolTip(sizeTip());
    }
    if (path.isEmpty()) return;
    try {
        const core::CheckpointInfo info = core::inspectCheckpoint(path.toStdString(), m_parts);
        // SD3's position table bounds the image's sides: the boxes offer no more.
        const int largest = info.maxSide > 0 ? int(std::min<int64_t>(info.maxSide, 4096)) : 4096;
        for (QSpinBox* box : {m_width, m_height}) {
            box->setMaximum(largest);
            box->setToolTip(sizeTip() + (info.maxSide > 0 ? tr(" (this model: up to %1 px)").arg(largest) : QString()));
        }
        const core::CheckpointMemory memory = core::estimateCheckpointMemory(info, 0.0, m_device.toStdString());
        m_memory->setText(QString::fromStdString(memory.summary));
        // A model that will not fit says so in the warning colour, before anything loads.
        m_memory->setStyleSheet(memory.fits ? QString() : QStringLiteral("color: #c0392b;"));
    } catch (const std::exception& error) {
        m_memory->setText(QString::fromStdString(error.what()));
        m_memory->setStyleSheet(QStringLiteral("color: #c0392b;"));
    }
}

core::TextSettings PromptBox::text() const {
    core::TextSettings text = m_parts;
    text.prompt = m_prompt->toPlainText().toStdString();
    if (!m_negative->isHidden()) text.negativePrompt = m_negative->toPlainText().toStdString();
    text.width = m_width->value();
    text.height = m_height->value();
    text.fluxGuidance = m_guidance->value();
    return text;
}

void PromptBox::setText(const core::TextSettings& text) {
    const QSignalBlocker b1(m_prompt), b2(m_width), b3(m_height), b4(m_guidance), b5(m_negative);
    m_parts = text;
    m_parts.prompt.clear();
    m_parts.negativePrompt.clear();
    m_prompt->setPlainText(QString::fromStdString(text.prompt));
    m_negative->setPlainText(QString::fromStdString(text.negativePrompt));
    m_width->setValue(text.width > 0 ? text.width : 1024);
    m_height->setValue(text.height > 0 ? text.height : 1024);
    m_guidance->setValue(text.fluxGuidance);
    recount();
}

void PromptBox::recount() {
    m_recount.stop();
    QList<QTextEdit::ExtraSelection> marks;
    const QString directory = m_parts.tokenizers.empty() ? m_tokenizers : QString::fromStdString(m_parts.tokenizers);
    if (directory.isEmpty()) {
        m_counts->clear();
        m_prompt->setExtraSelections(marks);
        return;
    }
    const std::string prompt = m_prompt->toPlainText().toStdString();
    QStringList counts;
    size_t cutByte = std::string::npos;
    bool cut = false;
    try {
        for (const core::PromptTokens& tokens : core::tokenizePrompt(directory.toStdString(), prompt, 256)) {
            const QString name = tokens.tokenizer == "clip_l"   ? tr("CLIP-L")
                                 : tokens.tokenizer == "clip_g" ? tr("CLIP-G")
                                 : tokens.tokenizer == "t5"     ? tr("T5")
                                                                : QString::fromStdString(tokens.tokenizer);
            counts << tr("%1 %2/%3").arg(name).arg(tokens.promptTokens).arg(tokens.limit);
            if (tokens.cut) {
                cut = true;
                cutByte = std::min(cutByte, tokens.cutByte);
            }
        }
        m_counts->setText(counts.join(QStringLiteral("  ·  ")) + (cut ? tr("  (cut)") : QString()));
        m_counts->setStyleSheet(cut ? QStringLiteral("color: #b3261e") : QString());
    } catch (const std::exception& error) {
        m_counts->setText(tr("Tokenizers: %1").arg(QString::fromStdString(error.what())));
        m_counts->setStyleSheet(QStringLiteral("color: #b3261e"));
    }
    if (cut && cutByte < prompt.size()) {
        // The cut's byte offset as a character position in the editor's text.
        const int position = QString::fromUtf8(prompt.data(), qsizetype(cutByte)).size();
        QTextEdit::ExtraSelection mark;
        mark.cursor = QTextCursor(m_prompt->document());
        mark.cursor.setPosition(position);
        mark.cursor.movePosition(QTextCursor::End, QTextCursor::KeepAnchor);
        mark.format.setForeground(QColor(140, 140, 140));
        mark.format.setFontStrikeOut(true);
        marks << mark;
    }
    m_prompt->setExtraSelections(marks);
}

}  // namespace flowscope::ui
