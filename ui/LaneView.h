#pragma once

#include <memory>

#include <QVector>
#include <QWidget>

#include "ui/FilmstripBar.h"
#include "ui/GuidanceBar.h"
#include "ui/LaneFrame.h"
#include "ui/RunSettings.h"
#include "ui/SampleCanvas.h"
#include "ui/StartBar.h"

class QComboBox;
class QGridLayout;
class QLabel;
class QSlider;
class QSpinBox;
class QTimer;
class QToolButton;

namespace flowscope::ui {

// Where a forked lane comes from: a snapshot of its parent's run (settings and record), so the
// fork survives the parent's next run and can be retried with the child's changed settings.
struct ForkSource {
    int parentLane = 0;
    int step = 0;  // the engine's step index of the parent's state (LaneFrame::index)
    double t = 0.0;
    core::SampleRequest parent;
    core::SampleResult parentRun;  // times, trajectory, predictions, stepSizes, noiseDraws
    // A few of the parent's frames before the fork, shown greyed at the head of the filmstrip.
    QVector<LaneFrame> history;
};

// One lane: its own path, solver, schedule and steps; a canvas with the lane's current frame; a
// timeline over every frame of the latest run (scrub, play, step); and the run's measures.
class LaneView : public QWidget {
    Q_OBJECT

public:
    LaneView(int index, QWidget* parent = nullptr);

    int index() const { return m_index; }
    // The lane's own settings on top of the shared ones (model, seed, batch, device).
    RunSettings settings(const RunSettings& shared) const;
    void setLaneSettings(const RunSettings& settings);

    // A new run began with these settings: forget the old frames and result.
    void beginRun(quint64 runId, const RunSettings& settings);
    // The settings of the run shown (not the widgets' current values, which may have changed).
    const RunSettings& runSettings() const { return m_runSettings; }
    quint64 runId() const { return m_runId; }
    // Shows a frame of the run `runId`; false (and nothing shown) for a run that was replaced.
    bool addFrame(quint64 runId, const LaneFrame& frame);
    void finishRun(quint64 runId, const LaneResult& result);
    void failRun(quint64 runId, const QString& message, bool cancelled);

    const QVector<LaneFrame>& frames() const { return m_frames; }
    int currentFrame() const;
    void showFrame(int index);
    bool hasResult() const { return m_hasResult; }
    const LaneResult& result() const { return m_result; }
    SampleCanvas* canvas() const { return m_canvas; }
    QSpinBox* stepsBox() const { return m_steps; }
    QComboBox* pathBox() const { return m_path; }
    QComboBox* solverBox() const { return m_solver; }
    QComboBox* scheduleBox() const { return m_schedule; }
    QSlider* timeline() const { return m_timeline; }
    GuidanceBar* guidanceBar() const { return m_guidance; }
    // Text-to-image checkpoints: the lane may run another checkpoint the window has open (a FLUX.1
    // lane beside SD3 lanes), with the shared prompt, size, seed and batch, so from the same noise.
    // `specs` are the other checkpoints offered (none hides the choice); "" follows the Settings.
    void setModelChoices(const QStringList& specs);
    QString ownModel() const;
    // Chooses the lane's model (one of the choices, or "") without emitting anything.
    void setOwnModel(const QString& spec);
    QComboBox* modelBox() const { return m_model; }
    // Whether the lane's run is guided towards something: the shared settings' class, an input of
    // the run (SD3's prompt, a bundle's tensors), or the prompt of the lane's own SD3 checkpoint.
    // The lane's guidance applies only then.
    void setConditional(bool conditional) {
        m_conditional = conditional;
        m_guidance->setConditional(conditional);
    }
    QString metricsText() const;
    // What the lane's status line shows now: progress, the metrics, or why the run failed.
    QString statusText() const;

    void togglePlay();
    void stepBy(int delta);
    void setView(SampleCanvas::View view) { m_canvas->setView(view); }

    // Shows the frame whose t is nearest to `t` (used to keep lanes aligned by t).
    void showNearestTime(double t);
    // True while the lane is too narrow for its title and boxes on one line (three or four lanes
    // on a laptop's screen): the title then has a line of its own and the step label is shorter.
    bool isCompact() const { return m_compact; }
    FilmstripBar* filmstrip() const { return m_filmstrip; }
    // Where the lane's runs start: the seed's noise, an image (image to image, at the start
    // bar's strength) or a fork of another lane's run.
    void setStartImage(const QString& name, const core::HostArray& pixels);
    void setFork(std::shared_ptr<const ForkSource> fork);
    void clearStart();
    bool hasStartImage() const { return !m_startImage.values.empty(); }
    const ForkSource* fork() const { return m_fork.get(); }
    StartBar* startBar() const { return m_startBar; }
    // The start of a run with these settings. A fork whose parent ran another model, seed, batch
    // or resolution no longer applies: it is dropped, and `*dropped` says so.
    core::RunStart start(const RunSettings& settings, QString* dropped);
    // The engine's step index of the frame shown (what a fork from here starts at).
    int currentStepIndex() const;

    // RMSE of the final samples against a dopri5 reference solve from the same noise; NaN when
    // the measurement was cancelled.
    void setReferenceError(quint64 runId, double rmse);
    double referenceError() const { return m_referenceError; }

Q_SIGNALS:
    void settingsChanged();
    // The user chose another model for the lane ("" for the Settings' own).
    void ownModelChanged(const QString& spec);
    // The user moved this lane's timeline (not a programmatic change).
    void scrubbed(double t);
    // From the lane's context menu (or a dropped file): fork at the shown step, pick or use a
    // start image, invert the focused sample.
    void forkRequested(int step);
    void startImageRequested();
    void imageDropped(const QString& path);
    void invertRequested();
    void invertImageRequested();

protected:
    void resizeEvent(QResizeEvent* event) override;
    void contextMenuEvent(QContextMenuEvent* event) override;
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;

private:
    void updateStepLabel();
    void arrangeHeader(bool compact);

    int m_index;
    QComboBox* m_path;
    QComboBox* m_solver;
    QComboBox* m_schedule;
    QSpinBox* m_steps;
    QSlider* m_stepsSlider;
    GuidanceBar* m_guidance;
    QWidget* m_modelRow;
    QComboBox* m_model;
    bool m_conditional = false;
    StartBar* m_startBar;
    core::HostArray m_startImage;
    std::shared_ptr<const ForkSource> m_fork;
    SampleCanvas* m_canvas;
    QSlider* m_timeline;
    QToolButton* m_play;
    QLabel* m_stepLabel;
    QLabel* m_title;
    QLabel* m_stepsTitle;
    QGridLayout* m_header;
    bool m_compact = false;
    QLabel* m_metrics;
    FilmstripBar* m_filmstrip;
    QTimer* m_playTimer;

    quint64 m_runId = 0;
    QVector<LaneFrame> m_frames;
    bool m_followLive = true;
    bool m_hasResult = false;
    LaneResult m_result;
    double m_referenceError = -1.0;  // -1 while measuring, NaN when not measured
    RunSettings m_runSettings;
    qsizetype m_frameBytes = 0;
    void refreshFilmstrip();
};

}  // namespace flowscope::ui
