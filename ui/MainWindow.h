#pragma once

#include <functional>

#include <QHash>
#include <QMainWindow>
#include <QSet>
#include <QStringList>
#include <QVector>

#include "ui/LaneFrame.h"
#include "ui/RunSettings.h"

class QLabel;
class QProgressBar;
class QSplitter;
class QTimer;

namespace flowscope::ui {

class DifferenceView;
class EngineController;
class GeometryCharts;
class InvertDialog;
class LaneView;
class SettingsPanel;
class SweepView;
class TrainPanel;

// FlowScope's main window: shared settings on the left, 1-4 lanes side by side, each with its
// own path, solver, schedule and steps, all sampled from the same model and noise. Any change
// reruns every lane after a short debounce; the newest request always wins.
class MainWindow : public QMainWindow {
    Q_OBJECT

public:
    explicit MainWindow(QWidget* parent = nullptr);
    ~MainWindow() override;

    // False on first launch (no window geometry saved yet): the caller picks a size.
    bool restoredGeometry() const { return m_restoredGeometry; }
    // The size for a first launch on a screen with `available` room: most of it, the lanes being
    // what the user came for, with room left for the title bar and the desktop's panels.
    static QSize firstLaunchSize(const QSize& available);
    // The folder file dialogs open in: the last one used, unless it is gone or a system folder
    // (/proc, /sys, /dev: Qt's dialog can block for good reading files such as /proc/kmsg).
    QString dialogFolder() const;

    // Makes the bundle in `folder` the model, after the user agreed to trust its TorchScript
    // files (asked once per file, remembered in the trusted list the CLI reads too). False, with
    // the reason shown, when it cannot be used or the user declines.
    bool openBundle(const QString& folder);
    // A FLUX.1 or Stable Diffusion 3 model folder or .safetensors file as checkpoint:PATH, with
    // the lanes set to what the family's card runs; false (and a message) when it is not one.
    bool openCheckpoint(const QString& path);

    EngineController* controller() const { return m_controller; }
    SettingsPanel* settingsPanel() const { return m_panel; }
    GeometryCharts* charts() const { return m_charts; }
    DifferenceView* difference() const { return m_difference; }
    SweepView* sweepView() const { return m_sweep; }
    TrainPanel* trainPanel() const { return m_train; }
    // Starts a sweep of the Sweep panel's choices with lane 1's other settings.
    void runSweep();
    // The Sweep panel's evaluate figures against its selected scales, with lane 1's settings.
    void measureGuidance();
    LaneView* lane(int index) const { return m_lanes.value(index); }
    int laneCount() const { return int(m_lanes.size()); }
    int focusedLane() const { return m_focusedLane; }
    // True from a settings change until every lane's run has finished (debounce included).
    bool isWorking() const;

    // Writes the lane's final images as a PNG grid with the run's settings in its text chunks
    // (`parameters`, A1111 style, and `flowscope`, JSON). Atomic; false and a reason on failure.
    bool exportLane(int lane, const QString& path, QString* error);
    // The other exports (see ui/Exports.h); each atomic, false and a reason on failure.
    bool exportFilmstrip(int lane, const QString& path, QString* error);
    bool exportComparison(const QString& path, QString* error);
    bool exportAnimation(int lane, const QString& path, QString* error);
    bool exportTrajectory(int lane, const QString& path, QString* error);
    bool exportMetrics(const QString& path, QString* error);
    bool exportCharts(const QString& path, QString* error);
    // Reads the settings from a PNG that FlowScope exported, applies them to lane 1 and the shared
    // settings, and reruns. False and a reason when the file has no FlowScope settings.
    bool restoreFromPng(const QString& path, QString* error);
    // Where runs start (ui/MainWindowStarts.cpp). A new lane (up to four) continues lane
    // `lane`'s run from its step `step` with the same settings, which the user then changes;
    // false and a reason when the lane has no finished run with its states, the step is its
    // last, or four lanes are open.
    bool forkLane(int lane, int step, QString* error);
    // Image to image: lane `lane` starts from the picture in `file` (its size must be the
    // model's); false and a reason otherwise.
    bool setStartImage(int lane, const QString& file, QString* error);
    // Inverts the focused sample of lane `lane` with its settings, in the inversion window, with
    // a round-trip sweep of the lanes' solvers; false and a reason when it has no finished run.
    bool invertLane(int lane, QString* error);
    // The same for a picture file (of the model's size), with lane `lane`'s settings.
    bool invertImage(int lane, const QString& file, QString* error);
    InvertDialog* invertDialog() const { return m_invert; }

    // What `flowscope PATH` opens: a folder as a bundle (openBundle), a file as a PNG FlowScope
    // exported, whose settings it restores. False and a reason for anything else.
    bool openPath(const QString& path, QString* error);

public Q_SLOTS:
    void runNow();
    void scheduleRun();
    void cancelRuns();
    void resetToDefaults();

protected:
    void closeEvent(QCloseEvent* event) override;
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;

private:
    // Whether a lane with these settings is guided: towards the Settings' class or an input of the
    // run (SD3's prompt, a bundle's tensors), or, for a lane's own checkpoint, towards the prompt.
    bool guidable(const RunSettings& settings) const;
    void applyCard(LaneView* lane, const core::ModelDescription& description);
    void refreshLaneModels();
    // Why the Sweep panel cannot measure guidance for the model and class chosen ("" when it can).
    QString whyNotMeasurable() const;
    void updateMeasurable();
    void createWidgets();
    void createActions();
    void readSettings();
    // Remembers the folder of a file the user saved or opened (ordinary folders only).
    void rememberFolder(const QString& folder);
    void writeSettings() const;
    void setLaneCount(int count);
    // The lane's context menu and dropped files (ui/MainWindowStarts.cpp).
    void connectStarts(LaneView* lane);
    void createStartActions(class QMenu* menu);
    void chooseStartImage(int lane);
    // A picture file as the model's images [1, C, H, W] (its size must be the model's).
    bool readModelImage(const QString& file, core::HostArray* pixels, QString* error) const;
    bool invertData(int lane, const RunSettings& settings, const core::HostArray& images, bool isData,
                    const QString& title, QString* error);
    void focusLane(int index);
    void onFrame(int lane, quint64 runId, const LaneFrame& frame);
    void onFinished(int lane, quint64 runId, const LaneResult& result);
    void onFailed(int lane, quint64 runId, const QString& message, bool cancelled);
    void exportWithDialog();
    // Asks for a file name (with `filter`) and runs `write`; reports failures in a message box.
    void exportWith(const QString& title, const QString& fileName, const QString& filter,
                    const std::function<bool(const QString&, QString*)>& write);
    struct LaneSnapshot snapshot(int lane) const;
    void openWithDialog();
    void openModelWithDialog();
    void openCheckpointFileWithDialog();
    // For a bundle spec: true when its program files are trusted, asking the user if needed.
    bool ensureTrusted(const QString& spec);
    void applyDefaults();
    // The hint above the lanes, for a model whose samples are 2-D points or images.
    void showHint(bool points);

    EngineController* m_controller;
    SettingsPanel* m_panel = nullptr;
    GeometryCharts* m_charts = nullptr;
    DifferenceView* m_difference = nullptr;
    SweepView* m_sweep = nullptr;
    mutable QHash<QString, bool> m_promptGuided;  // per checkpoint a lane runs on its own
    mutable QHash<QString, bool> m_measurableModels;  // per model and resolution: whyNotMeasurable
    InvertDialog* m_invert = nullptr;
    TrainPanel* m_train = nullptr;
    QSplitter* m_laneSplitter = nullptr;
    QVector<LaneView*> m_lanes;
    QTimer* m_debounce = nullptr;
    QLabel* m_hint = nullptr;
    bool m_hintForPoints = false;
    QLabel* m_device = nullptr;
    bool m_deviceKnown = false;  // a run has finished and named the device
    QLabel* m_rate = nullptr;
    QProgressBar* m_progress = nullptr;
    int m_focusedLane = 0;
    qint64 m_runStartedMs = 0;
    QString m_lastFolder;
    bool m_restoredGeometry = false;
    QStringList m_recentBundles;
    // Bundle folders whose files (names, sizes, times) were trusted, so runs need not re-hash them.
    QHash<QString, QString> m_trustedStamps;
    QSet<QString> m_declined;
    bool m_askingTrust = false;  // the trust dialog is open (its event loop may fire the debounce)  // untrusted hashes the user said no to, not asked again until reopened
};

}  // namespace flowscope::ui
