#pragma once

#include <QWidget>

#include "ui/TrainController.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QScrollArea;
class QSpinBox;

QT_BEGIN_NAMESPACE
class QChartView;
class QLineSeries;
class QValueAxis;
QT_END_NAMESPACE

namespace flowscope::ui {

// Train your own flows: a rectified flow, DDPM or v-prediction network on a dataset, or a reflow or
// one-step distillation of a rectified flow. A live loss curve, previews of the averaged network's
// samples at intervals, ETA, pause/resume and cancel (which keeps a checkpoint: Start resumes).
// A finished model is offered through modelTrained and appears in the model list.
class TrainPanel : public QWidget {
    Q_OBJECT

public:
    explicit TrainPanel(QWidget* parent = nullptr);
    ~TrainPanel() override;

    // The request the form describes.
    core::TrainRequest request() const;
    TrainController* controller() const { return m_controller; }
    // Offers a model (bundle:DIR or shipped:NAME) as a source for reflow and distillation.
    void addSourceModel(const QString& spec);
    int lossPointCount() const;
    QString statusText() const;

public Q_SLOTS:
    void start();
    void togglePause();
    void cancel();

Q_SIGNALS:
    // A training run finished and wrote its bundle (bundle:DIR).
    void modelTrained(const QString& spec);

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void onProgress(const TrainUpdate& update);
    void onFinished(const TrainFinish& finish);
    void updateMode();
    void suggestSettings();
    void suggestOutput();
    void setRunning(bool running);

    TrainController* m_controller;
    QComboBox* m_mode;
    QComboBox* m_dataset;
    QComboBox* m_objective;
    QCheckBox* m_conditional;
    QComboBox* m_source;
    QSpinBox* m_iterations;
    QSpinBox* m_batch;
    QDoubleSpinBox* m_learningRate;
    QSpinBox* m_width;
    QLineEdit* m_output;
    QPushButton* m_browse;
    QScrollArea* m_controlsScroll;
    QPushButton* m_start;
    QPushButton* m_pause;
    QPushButton* m_cancel;
    QProgressBar* m_progress;
    QLabel* m_status;
    QLabel* m_preview;
    QLabel* m_previewCaption;
    QChartView* m_chart;
    QLineSeries* m_rawLoss;
    QLineSeries* m_smoothLoss;
    QValueAxis* m_xAxis;
    QValueAxis* m_yAxis;
    double m_lossMax = 0.0;
    qint64 m_lastIteration = -1;
};

}  // namespace flowscope::ui
