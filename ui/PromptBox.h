#pragma once

#include <QString>
#include <QTimer>
#include <QWidget>

#include "core/api/TextSettings.h"

class QDoubleSpinBox;
class QLabel;
class QPlainTextEdit;
class QSpinBox;

namespace flowscope::ui {

// The prompt of a text-to-image checkpoint (FLUX.1, SD3), shown when the model takes text: a
// multi-line prompt (Ctrl+Enter runs, through the window's Run action), each tokenizer's count
// against its limit as AUTOMATIC1111 shows it ("CLIP-L 12/75"), the words past a limit greyed and
// struck through, SD3's negative prompt, the image's width and height, and FLUX.1 [dev]'s
// distilled guidance.
class PromptBox : public QWidget {
    Q_OBJECT

public:
    explicit PromptBox(QWidget* parent = nullptr);

    // The checkpoint spec whose tokenizers count the prompt; `dev` shows the guidance box,
    // `negative` the negative prompt.
    void setModel(const QString& spec, bool dev, bool negative = false);
    core::TextSettings text() const;
    // The run's device ("auto", "cpu", "cuda"): the memory estimate weighs its memory.
    void setDevice(const QString& device);
    // Restores prompt, size and guidance; the parts named beside a file are kept as given.
    void setText(const core::TextSettings& text);

    QPlainTextEdit* promptEdit() const { return m_prompt; }
    QPlainTextEdit* negativeEdit() const { return m_negative; }
    QLabel* countsLabel() const { return m_counts; }
    // What the checkpoint needs in memory (core::estimateCheckpointMemory), in words.
    QLabel* memoryLabel() const { return m_memory; }
    QSpinBox* widthBox() const { return m_width; }
    QSpinBox* heightBox() const { return m_height; }
    QDoubleSpinBox* guidanceBox() const { return m_guidance; }
    // Counts the prompt now (otherwise a moment after the last key).
    void recount();

Q_SIGNALS:
    void changed();

private:
    // The checkpoint's memory estimate, and its largest side for the size boxes.
    void inspectModel(const QString& path);

    QPlainTextEdit* m_prompt;
    QPlainTextEdit* m_negative;
    QLabel* m_counts;
    QLabel* m_memory;
    QSpinBox* m_width;
    QSpinBox* m_height;
    QDoubleSpinBox* m_guidance;
    QLabel* m_guidanceLabel;
    QTimer m_recount;
    QString m_tokenizers;  // the folder whose tokenizers count ("" when unknown)
    QString m_modelPath;   // the checkpoint inspected ("" when none)
    QString m_device = QStringLiteral("auto");
    core::TextSettings m_parts;
};

}  // namespace flowscope::ui
