// The desktop app driven through its real widgets, offscreen: live frames, the newest-wins rule
// under a storm of changes, shared noise across lanes, export and restore, a failed export, the
// event loop's latency during a run, and screenshots of the main views.
#include <QChart>
#include <QChartView>
#include <QCheckBox>
#include <QComboBox>
#include <QDockWidget>
#include <QLabel>
#include <QLegend>
#include <QLineSeries>
#include <QLineEdit>
#include <QValueAxis>
#include <QLogValueAxis>
#include <QProgressBar>
#include <QDir>
#include <QElapsedTimer>
#include <QImageReader>
#include <QSettings>
#include <QSignalSpy>
#include <QSlider>
#include <QSpinBox>
#include <QStyleOptionComboBox>
#include <QStandardPaths>
#include <QPlainTextEdit>
#include <QTemporaryDir>
#include <QApplication>
#include <QMessageBox>
#include <QPushButton>
#include <QTimer>
#include <QToolButton>
#include <QScopeGuard>
#include <QWheelEvent>
#include <QtTest/QtTest>

#include <QAction>
#include <QImageWriter>
#include <QJsonArray>
#include <QJsonDocument>
#include <QtEndian>
#include <QJsonObject>
#include <QProcess>
#include <QStatusBar>

#include "core/io/NpyFile.h"
#include "core/io/Sha256.h"
#include "ui/AppSettings.h"
#include "ui/DialogFolder.h"
#include "ui/DifferenceView.h"
#include "ui/EngineController.h"
#include "ui/GeometryCharts.h"
#include "ui/GuidanceFigures.h"
#include "ui/InvertDialog.h"
#include "ui/LaneView.h"
#include "ui/MainWindow.h"
#include "ui/SettingsPanel.h"
#include "ui/SweepView.h"
#include "ui/TrainPanel.h"
#include "ui/WorkerThread.h"

using namespace flowscope::ui;

namespace {

// Generous: under the sanitizers on a busy two-core machine, the first launch's runs over all of
// Fashion-MNIST and their reference solves took more than two minutes (more than five with two
// builds beside them).
constexpr int kRunTimeoutMs = 600000;

// Waits until no run is pending, queued or running and every queued signal has been delivered.
bool settle(MainWindow& window) {
    QElapsedTimer timer;
    timer.start();
    while (timer.elapsed() < kRunTimeoutMs) {
        // Waits between looks instead of spinning: a spinning UI thread takes a core from the
        // engine's niced worker threads, and OpenMP's parallel regions then wait on the starved one.
        QTest::qWait(20);
        if (!window.isWorking()) {
            QCoreApplication::processEvents();
            QTest::qWait(50);
            QCoreApplication::processEvents();
            if (!window.isWorking()) return true;
        }
    }
    return false;
}

// Answers the next trust dialog by clicking `button` ("trustButton" or "refuseButton"), the way a
// user would; records the dialog's text. The dialog is modal, so this polls from a timer.
class TrustAnswer : public QObject {
public:
    explicit TrustAnswer(const QString& button) : m_button(button) {
        m_timer.setInterval(20);
        QObject::connect(&m_timer, &QTimer::timeout, this, [this] {
            auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
            if (!box || box->objectName() != "trustDialog") return;
            text = box->text() + "\n" + box->informativeText();
            ++asked;
            box->findChild<QPushButton*>(m_button)->click();
        });
        m_timer.start();
    }
    QString text;
    int asked = 0;

private:
    QString m_button;
    QTimer m_timer;
};

const QString kBundles = QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/fixtures/bundles/");

void useModel(MainWindow& window, const QString& model, int batch) {
    window.settingsPanel()->batchBox()->setValue(batch);
    window.settingsPanel()->modelBox()->setEditText(model);
}

// Settings as FlowScope stores them (JSON), with `changes` on top of valid ones.
QByteArray settingsJson(const QJsonObject& changes) {
    QJsonObject json = QJsonDocument::fromJson(RunSettings().toJson()).object();
    json["model"] = "gmm:8gaussians";
    json["batch"] = 4;
    for (auto it = changes.begin(); it != changes.end(); ++it) json[it.key()] = it.value();
    return QJsonDocument(json).toJson(QJsonDocument::Compact);
}

// Runs `flowscope-cli sample --out PATH` with the settings of a PNG's `flowscope` chunk; false
// with the CLI's output when it fails.
bool cliPictureOfSettings(const QString& json, const QString& path, QString* output) {
    const QJsonObject settings = QJsonDocument::fromJson(json.toUtf8()).object();
    QStringList arguments{"sample", "--out", path};
    for (const char* key : {"model", "path", "solver", "schedule", "steps", "seed", "batch", "resolution", "device",
                             "dtype", "t_end"}) {
        const QJsonValue value = settings.value(key);
        arguments << QStringLiteral("--") + QString::fromLatin1(key).replace('_', '-')
                  << (value.isString() ? value.toString() : QString::number(value.toDouble(), 'g', 17));
    }
    QProcess cli;
    cli.setProcessChannelMode(QProcess::MergedChannels);
    cli.start(QStringLiteral(FLOWSCOPE_CLI_PATH), arguments);
    const bool ok = cli.waitForFinished(kRunTimeoutMs) && cli.exitStatus() == QProcess::NormalExit && cli.exitCode() == 0;
    *output = QString::fromUtf8(cli.readAll());
    return ok;
}

// A PNG with FlowScope's settings chunk holding `json`, as an export (or a hand edit) would.
QString pngWithSettings(const QTemporaryDir& dir, const QString& name, const QByteArray& json) {
    const QString path = dir.filePath(name);
    QImage image(8, 8, QImage::Format_RGB32);
    image.fill(Qt::gray);
    QImageWriter writer(path, "png");
    writer.setText("flowscope", QString::fromUtf8(json));
    return writer.write(image) ? path : QString();
}

// The rectangle of a canvas's pixels that a plot covers (plots are light, the canvas dark).
QRect plotArea(const QImage& canvas) {
    QRect area;
    for (int y = 0; y < canvas.height(); ++y) {
        for (int x = 0; x < canvas.width(); ++x) {
            if (qGray(canvas.pixel(x, y)) > 200) area |= QRect(x, y, 1, 1);
        }
    }
    return area;
}

}  // namespace

class TestMainWindow : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase();
    void init();
    void firstLaunchShowsTwoLanes();
    void fourLanesFitALaptopScreen();
    void dialogsAvoidSystemFoldersAndScrollingEditsNothing();
    void changingStepsDeliversLiveFrames();
    void stormOfChangesEndsInOneResult();
    void lanesShareTheNoise();
    void exportThenRestoreGivesIdenticalPixels();
    void failedExportReportsAndLeavesNothing();
    void restoreRefusesForeignPng();
    void eventLoopStaysResponsiveDuringARun();
    void timelineScrubsAndPlays();
    void exportsWriteEveryFormat();
    void referenceErrorAndDifferenceMap();
    void timelinesAlignByTime();
    void logScaleKeepsEveryLaneVisible();
    void refusedSettingsClearTheLane();
    void sweepFillsTheGridAndChart();
    void zoomIsCrispAtTenTimes();
    void settingsPersistAndResetAndSurviveCorruption();
    void cancelLeavesNoLaneWaiting();
    void screenshots();
    void forkImageToImageAndInversionThroughTheWindow();
    void bundleAsksTrustOnceAndShowsLatents();
    void failingNetworkLeavesTheAppWorking();
    void trainPanelTrainsPausesAndOffersTheModel();
    void trainPanelCancelKeepsACheckpointAndResumes();
    void unknownNamesAreRefusedWithAMessage();
    void everySeedAndBatchTheEngineTakesSurvives();
    void settingsShareTheTrustListsFolder();
    void unwritableSettingsAreReportedOnce();
    void failedRunShowsInTheStatusBar();
    void pointModelsFillTheLaneOnFixedAxes();
    void firstLaunchUsesMostOfTheScreen();
    void quitDuringALongStepEndsPromptly();
    void openPathTakesAPngOrABundleFolder();
    void conditionAndGuidanceDriveARun();
    void promptBoxRunsAFluxCheckpoint();
    void negativePromptGuidesAnSd3Checkpoint();
    void laneRunsAnotherCheckpoint();
    void conditioningFilesGuideABundle();
    void sweepMeasuresGuidanceAgainstW();

private:
    QTemporaryDir m_settingsDir;
};

void TestMainWindow::initTestCase() {
    QVERIFY(m_settingsDir.isValid());
    // The settings file lives under XDG_CONFIG_HOME; Qt's default place (where earlier versions
    // kept it) in the temporary folder too.
    qputenv("XDG_CONFIG_HOME", QDir(m_settingsDir.path()).filePath("config").toUtf8());
    QSettings::setPath(QSettings::NativeFormat, QSettings::UserScope, m_settingsDir.path());
    QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, m_settingsDir.path());
    QCoreApplication::setOrganizationName("FlowScopeTest");
    QCoreApplication::setApplicationName("FlowScopeTest");
}

void TestMainWindow::init() {
    QSettings().clear();
    AppSettings::open()->clear();
}

void TestMainWindow::firstLaunchShowsTwoLanes() {
    MainWindow window;
    window.show();
    QCOMPARE(window.laneCount(), 2);
    QCOMPARE(window.lane(0)->pathBox()->currentText(), QString("linear"));
    QCOMPARE(window.lane(1)->pathBox()->currentText(), QString("vp"));
    QCOMPARE(window.settingsPanel()->modelBox()->currentText(), QString("fashion-mnist"));
    QCOMPARE(window.settingsPanel()->batchBox()->value(), 16);
    QCOMPARE(window.lane(0)->stepsBox()->value(), 8);
    QVERIFY(settle(window));
    for (int i = 0; i < 2; ++i) {
        QVERIFY2(window.lane(i)->hasResult(), qPrintable(window.lane(i)->metricsText()));
        QCOMPARE(window.lane(i)->frames().size(), 9);
        QCOMPARE(window.lane(i)->canvas()->states().size(), 16);
        QCOMPARE(window.lane(i)->canvas()->states().front().size(), QSize(28, 28));
    }
}

void TestMainWindow::fourLanesFitALaptopScreen() {
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 16);
    window.settingsPanel()->setLaneCount(4);
    QTRY_COMPARE(window.laneCount(), 4);
    QVERIFY(settle(window));
    // 1280 x 800 and 1366 x 768 are common laptop screens; a window that cannot shrink to them
    // runs off the screen. Every lane is still usable at its smallest.
    const QSize smallest = window.minimumSizeHint().expandedTo(window.minimumSize());
    qInfo() << "smallest window with four lanes" << smallest;
    QVERIFY2(smallest.width() <= 1280 && smallest.height() <= 720,
             qPrintable(QString("%1 x %2").arg(smallest.width()).arg(smallest.height())));
    window.resize(1280, 720);
    QTRY_COMPARE(window.width(), 1280);
    for (int i = 0; i < 4; ++i) {
        LaneView* lane = window.lane(i);
        QVERIFY(lane->canvas()->width() >= 150);
        QVERIFY(lane->geometry().right() <= window.width());
        // Too narrow for the title and the boxes on one line: the title moves above them, and the
        // boxes have room for their names.
        QTRY_VERIFY(lane->isCompact());
        for (QComboBox* box : {lane->pathBox(), lane->solverBox()}) {
            QStyleOptionComboBox option;
            option.initFrom(box);
            const QSize text(box->fontMetrics().horizontalAdvance(box->currentText()), box->fontMetrics().height());
            const int needed = box->style()->sizeFromContents(QStyle::CT_ComboBox, &option, text, box).width();
            QVERIFY2(box->width() >= needed,
                     qPrintable(QString("%1: %2 < %3").arg(box->currentText()).arg(box->width()).arg(needed)));
        }
        QVERIFY(lane->timeline()->width() >= 40);
    }
    // Two lanes have room for one line again.
    window.settingsPanel()->setLaneCount(2);
    QTRY_COMPARE(window.laneCount(), 2);
    QTRY_VERIFY(!window.lane(0)->isCompact() && !window.lane(1)->isCompact());
    // Through one lane (where the difference map can only compare lane 1 with itself) and back:
    // it compares two lanes again.
    window.settingsPanel()->setLaneCount(1);
    QTRY_COMPARE(window.laneCount(), 1);
    window.settingsPanel()->setLaneCount(4);
    QTRY_COMPARE(window.laneCount(), 4);
    QCOMPARE(window.difference()->laneA(), 0);
    QCOMPARE(window.difference()->laneB(), 1);
}

void TestMainWindow::dialogsAvoidSystemFoldersAndScrollingEditsNothing() {
    // Qt's file dialog can block for good in /proc (it reads /proc/kmsg to learn its type): a
    // remembered system folder, or one that is gone, opens the home folder instead.
    AppSettings::open()->setValue("files/lastFolder", "/proc/self");
    MainWindow window;
    window.show();
    QCOMPARE(window.dialogFolder(), QDir::homePath());
    QTemporaryDir dir;
    QCOMPARE(safeDialogFolder("/sys/kernel"), QDir::homePath());
    QCOMPARE(safeDialogFolder(dir.filePath("gone/deeper")), QDir::cleanPath(dir.path()));
    QCOMPARE(safeDialogFolder(dir.path()), QDir::cleanPath(dir.path()));
    // The wheel over a Train setting that has no focus scrolls the panel; it edits nothing.
    auto* batch = window.trainPanel()->findChild<QSpinBox*>("trainBatch");
    QVERIFY(batch);
    const int before = batch->value();
    QWheelEvent wheel(QPointF(5, 5), batch->mapToGlobal(QPointF(5, 5)), QPoint(), QPoint(0, -120), Qt::NoButton,
                      Qt::NoModifier, Qt::NoScrollPhase, false);
    QApplication::sendEvent(batch, &wheel);
    QCOMPARE(batch->value(), before);
    // Once clicked into, the wheel changes it as usual.
    batch->setFocus();
    QTRY_VERIFY(batch->hasFocus());
    QWheelEvent focused(QPointF(5, 5), batch->mapToGlobal(QPointF(5, 5)), QPoint(), QPoint(0, -120), Qt::NoButton,
                        Qt::NoModifier, Qt::NoScrollPhase, false);
    QApplication::sendEvent(batch, &focused);
    QVERIFY(batch->value() != before);
}

void TestMainWindow::changingStepsDeliversLiveFrames() {
    MainWindow window;
    window.show();
    useModel(window, "fashion-mnist:2000", 4);
    QVERIFY(settle(window));
    const QImage before = window.lane(0)->canvas()->states().front();
    QSignalSpy frames(window.controller(), &EngineController::frameReady);
    QSignalSpy finished(window.controller(), &EngineController::runFinished);
    window.lane(0)->stepsBox()->setValue(3);
    QVERIFY(settle(window));
    // Lane 1 with 3 steps: 4 frames (start, 2 intermediate, final); lane 2 with 8 steps: 9 frames.
    QCOMPARE(frames.count(), 4 + 9);
    QCOMPARE(finished.count(), 2);
    QCOMPARE(window.lane(0)->frames().size(), 4);
    QVERIFY(window.lane(0)->frames().back().final);
    QVERIFY(window.lane(0)->canvas()->states().front() != before);
    // Nearest-neighbour zoom: a 28x28 sample is drawn at an integer scale.
    QVERIFY(window.lane(0)->canvas()->pixelScale() >= 1);
}

void TestMainWindow::stormOfChangesEndsInOneResult() {
    MainWindow window;
    window.show();
    useModel(window, "fashion-mnist:2000", 4);
    QVERIFY(settle(window));
    QSignalSpy finished(window.controller(), &EngineController::runFinished);
    for (int i = 0; i < 200; ++i) {
        window.lane(0)->stepsBox()->setValue(1 + i % 37);
        if (i % 3 == 0) window.runNow();  // some changes start runs at once, cancelling the previous one
        QCoreApplication::processEvents();
    }
    window.lane(0)->stepsBox()->setValue(5);
    QVERIFY(settle(window));
    // Exactly one result per lane for the final settings reaches the lanes; stale ones are dropped.
    int current = 0;
    for (const auto& call : finished) {
        const int lane = call.at(0).toInt();
        if (call.at(1).toULongLong() == window.lane(lane)->runId()) ++current;
    }
    QCOMPARE(current, 2);
    QCOMPARE(window.lane(0)->frames().size(), 6);
    QCOMPARE(window.lane(0)->result().steps, 5);
    QVERIFY(!window.controller()->isBusy());
}

void TestMainWindow::lanesShareTheNoise() {
    MainWindow window;
    window.show();
    useModel(window, "fashion-mnist:2000", 4);
    window.lane(1)->pathBox()->setCurrentText("linear");
    QVERIFY(settle(window));
    QVERIFY(window.lane(0)->hasResult() && window.lane(1)->hasResult());
    QCOMPARE(window.lane(0)->result().final.values, window.lane(1)->result().final.values);
    // With different paths the starting states are the same noise: frame 0 shows x = sigma(t0) eps.
    window.lane(1)->pathBox()->setCurrentText("vp");
    QVERIFY(settle(window));
    const QImage a = window.lane(0)->frames().front().states.front();
    const QImage b = window.lane(1)->frames().front().states.front();
    int worst = 0;
    for (int y = 0; y < a.height(); ++y) {
        for (int x = 0; x < a.width(); ++x) worst = std::max(worst, std::abs(qGray(a.pixel(x, y)) - qGray(b.pixel(x, y))));
    }
    QVERIFY2(worst <= 1, qPrintable(QString::number(worst)));
}

void TestMainWindow::exportThenRestoreGivesIdenticalPixels() {
    QTemporaryDir dir;
    const QString first = dir.filePath("first.png");
    const QString second = dir.filePath("second.png");
    {
        MainWindow window;
        window.show();
        useModel(window, "fashion-mnist:2000", 6);
        window.settingsPanel()->seedBox()->setValue(1234);
        window.lane(0)->solverBox()->setCurrentText("heun");
        window.lane(0)->stepsBox()->setValue(5);
        QVERIFY(settle(window));
        QString error;
        QVERIFY2(window.exportLane(0, first, &error), qPrintable(error));
    }
    QImageReader reader(first);
    QVERIFY(reader.text("parameters").contains("Steps: 5, Sampler: heun"));
    QVERIFY(reader.text("flowscope").contains("\"seed\":1234,"));
    // The CLI draws the same run with the same pixels and writes the same chunks: one settings
    // codec and one picture pipeline (core/media) behind both.
    const QString cli = dir.filePath("cli.png");
    QString output;
    QVERIFY2(cliPictureOfSettings(reader.text("flowscope"), cli, &output), qPrintable(output));
    QImageReader cliReader(cli);
    QCOMPARE(cliReader.text("flowscope"), reader.text("flowscope"));
    QCOMPARE(cliReader.text("parameters"), reader.text("parameters"));
    QCOMPARE(QImage(cli).convertToFormat(QImage::Format_RGB888), QImage(first).convertToFormat(QImage::Format_RGB888));

    AppSettings::open()->clear();
    MainWindow fresh;
    fresh.show();
    QString error;
    QVERIFY2(fresh.restoreFromPng(first, &error), qPrintable(error));
    QVERIFY(settle(fresh));
    QCOMPARE(fresh.lane(0)->solverBox()->currentText(), QString("heun"));
    QCOMPARE(fresh.settingsPanel()->seedBox()->value(), 1234);
    QVERIFY2(fresh.exportLane(0, second, &error), qPrintable(error));
    const QImage a(first), b(second);
    QVERIFY(!a.isNull());
    QCOMPARE(a.convertToFormat(QImage::Format_RGB888), b.convertToFormat(QImage::Format_RGB888));
}

void TestMainWindow::failedExportReportsAndLeavesNothing() {
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 8);
    QVERIFY(settle(window));
    QTemporaryDir dir;
    const QString target = dir.filePath("missing-folder/out.png");
    QString error;
    QVERIFY(!window.exportLane(0, target, &error));
    QVERIFY2(error.contains("cannot write"), qPrintable(error));
    QVERIFY(!QFile::exists(target));
    QCOMPARE(QDir(dir.path()).entryList(QDir::AllEntries | QDir::NoDotAndDotDot | QDir::Hidden).size(), 0);
    // An existing file survives a failed export unchanged.
    const QString existing = dir.filePath("keep.png");
    QFile keep(existing);
    QVERIFY(keep.open(QIODevice::WriteOnly));
    keep.write("old");
    keep.close();
    QVERIFY(QFile::setPermissions(dir.path(), QFileDevice::ReadOwner | QFileDevice::ExeOwner));
    const bool rootBypassesPermissions = QFileInfo(dir.path()).isWritable();
    const bool ok = window.exportLane(0, existing, &error);
    QFile::setPermissions(dir.path(), QFileDevice::ReadOwner | QFileDevice::WriteOwner | QFileDevice::ExeOwner);
    if (!rootBypassesPermissions) {
        QVERIFY(!ok);
        QFile check(existing);
        QVERIFY(check.open(QIODevice::ReadOnly));
        QCOMPARE(check.readAll(), QByteArray("old"));
    }
}

void TestMainWindow::restoreRefusesForeignPng() {
    MainWindow window;
    QTemporaryDir dir;
    const QString plain = dir.filePath("plain.png");
    QImage image(8, 8, QImage::Format_RGB32);
    image.fill(Qt::red);
    QVERIFY(image.save(plain));
    QString error;
    QVERIFY(!window.restoreFromPng(plain, &error));
    QVERIFY2(error.contains("no FlowScope settings"), qPrintable(error));
    QVERIFY(!window.restoreFromPng(dir.filePath("absent.png"), &error));
}

void TestMainWindow::eventLoopStaysResponsiveDuringARun() {
    MainWindow window;
    window.show();
    useModel(window, "fashion-mnist", 16);
    window.lane(0)->stepsBox()->setValue(60);
    window.lane(1)->stepsBox()->setValue(60);
    window.runNow();
    QTest::qWait(300);
    QVERIFY(window.controller()->isBusy());
    // A 10 ms timer: the largest gap between its ticks is the event loop's worst latency.
    QElapsedTimer clock;
    clock.start();
    qint64 last = 0, worst = 0;
    QTimer tick;
    tick.setInterval(10);
    QObject::connect(&tick, &QTimer::timeout, [&] {
        const qint64 now = clock.elapsed();
        worst = std::max(worst, now - last);
        last = now;
    });
    tick.start();
    while (clock.elapsed() < 2000 && window.controller()->isBusy()) QCoreApplication::processEvents(QEventLoop::WaitForMoreEvents, 5);
    tick.stop();
    qInfo("worst event-loop gap during a run: %lld ms", worst);
    QVERIFY2(worst < 50, qPrintable(QString("%1 ms").arg(worst)));
    window.cancelRuns();
    QVERIFY(settle(window));
}

void TestMainWindow::timelineScrubsAndPlays() {
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 32);
    window.lane(0)->stepsBox()->setValue(6);
    QVERIFY(settle(window));
    LaneView* lane = window.lane(0);
    QCOMPARE(lane->frames().size(), 7);
    QVERIFY(lane->frames().front().pointCloud);
    lane->timeline()->setValue(2);
    QCOMPARE(lane->currentFrame(), 2);
    QCOMPARE(lane->canvas()->states().front(), lane->frames()[2].states.front());
    lane->stepBy(-1);
    QCOMPARE(lane->currentFrame(), 1);
    lane->togglePlay();
    QTRY_COMPARE_WITH_TIMEOUT(lane->currentFrame(), 6, 5000);
}

void TestMainWindow::exportsWriteEveryFormat() {
    MainWindow window;
    window.show();
    useModel(window, "fashion-mnist:2000", 4);
    window.lane(0)->stepsBox()->setValue(4);
    QVERIFY(settle(window));
    QTemporaryDir dir;
    QString error;

    QVERIFY2(window.exportFilmstrip(0, dir.filePath("strip.png"), &error), qPrintable(error));
    const QImage strip(dir.filePath("strip.png"));
    QVERIFY(!strip.isNull());
    QVERIFY(strip.width() > 5 * 28 && strip.height() > 4 * 28);  // 5 frames, 4 samples
    QVERIFY(QImageReader(dir.filePath("strip.png")).text("parameters").contains("Steps: 4"));

    QVERIFY2(window.exportComparison(dir.filePath("compare.png"), &error), qPrintable(error));
    QVERIFY(!QImage(dir.filePath("compare.png")).isNull());

    QVERIFY2(window.exportAnimation(0, dir.filePath("run.mp4"), &error), qPrintable(error));
    QVERIFY(QFileInfo(dir.filePath("run.mp4")).size() > 0);
    QVERIFY(!window.exportAnimation(0, dir.filePath("run.gif"), &error));
    QVERIFY2(error.contains("GIF"), qPrintable(error));
    QVERIFY(!QFile::exists(dir.filePath("run.gif")));

    QVERIFY2(window.exportTrajectory(0, dir.filePath("traj.npy"), &error), qPrintable(error));
    const auto trajectory = flowscope::core::readNpy(dir.filePath("traj.npy").toStdString());
    QCOMPARE(trajectory.shape, (std::vector<int64_t>{5, 4, 1, 28, 28}));
    const auto& final = window.lane(0)->result().final.values;
    QVERIFY(std::equal(final.begin(), final.end(), trajectory.data.end() - final.size()));

    QVERIFY2(window.exportMetrics(dir.filePath("metrics.csv"), &error), qPrintable(error));
    QFile csv(dir.filePath("metrics.csv"));
    QVERIFY(csv.open(QIODevice::ReadOnly));
    const QList<QByteArray> lines = csv.readAll().trimmed().split('\n');
    QVERIFY(lines.front().startsWith("lane,model,path,solver,schedule,steps"));
    QCOMPARE(lines.size(), 1 + 5 + 9);  // header, lane 1 (4 steps), lane 2 (8 steps)

    QVERIFY2(window.exportCharts(dir.filePath("charts.svg"), &error), qPrintable(error));
    QFile svg(dir.filePath("charts.svg"));
    QVERIFY(svg.open(QIODevice::ReadOnly));
    QVERIFY(svg.readAll().contains("<svg"));
    QVERIFY2(window.exportCharts(dir.filePath("charts.png"), &error), qPrintable(error));
    QCOMPARE(QImage(dir.filePath("charts.png")).width(), 1500);
    // Nothing but the exports themselves is left in the folder (no temporary files).
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden).size(), 7);
}

void TestMainWindow::referenceErrorAndDifferenceMap() {
    MainWindow window;
    window.show();
    useModel(window, "fashion-mnist:2000", 4);
    window.lane(0)->solverBox()->setCurrentText("dopri5");
    window.lane(1)->pathBox()->setCurrentText("linear");
    window.lane(1)->stepsBox()->setValue(2);
    QVERIFY(settle(window));
    // dopri5 at its default tolerance sits on its own reference; two Euler steps do not.
    QVERIFY(window.lane(0)->referenceError() >= 0.0);
    QVERIFY(window.lane(1)->referenceError() >= 0.0);
    QVERIFY2(window.lane(0)->referenceError() < 1e-2, qPrintable(QString::number(window.lane(0)->referenceError())));
    QVERIFY(window.lane(1)->referenceError() > window.lane(0)->referenceError());
    QVERIFY(window.lane(0)->metricsText().contains("RMSE vs reference"));
    // The heat map compares the two lanes' final images.
    QVERIFY(!window.difference()->heatMap().isNull());
    QVERIFY(window.difference()->meanDifference() > 0.0);
    // Finished while its tab was hidden, the map is enlarged by the largest whole factor that fits
    // once the tab is shown.
    window.resize(1400, 900);
    window.findChild<QDockWidget*>("differenceDock")->raise();
    auto* shown = window.difference()->findChild<QLabel*>("differenceImage");
    const QImage& map = window.difference()->heatMap();
    QTRY_VERIFY(shown->isVisible());
    const int fits = std::min(shown->width() / map.width(), shown->height() / map.height());
    QVERIFY2(fits >= 2, qPrintable(QString("view %1x%2").arg(shown->width()).arg(shown->height())));
    QTRY_COMPARE(shown->pixmap().width(), fits * map.width());
    window.difference()->setLanes(0, 0);
    QCOMPARE(window.difference()->meanDifference(), 0.0);
}

void TestMainWindow::logScaleKeepsEveryLaneVisible() {
    // The ve path's velocities are tens of times the linear path's: on the log scale both lanes
    // fit the axis, and the final state's zero distance (which a log axis cannot show) is left out.
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 16);
    window.lane(1)->pathBox()->setCurrentText("ve");
    QVERIFY(settle(window));
    auto* box = window.charts()->findChild<QCheckBox*>("geometryLogScale");
    QVERIFY(box);
    QVERIFY(!window.charts()->logScale());
    box->click();
    QVERIFY(window.charts()->logScale());
    for (QChartView* view : {window.charts()->velocityView(), window.charts()->distanceView()}) {
        const auto vertical = view->chart()->axes(Qt::Vertical);
        QCOMPARE(vertical.size(), 1);
        auto* axis = qobject_cast<QLogValueAxis*>(vertical.front());
        QVERIFY2(axis, qPrintable(view->chart()->title()));
        QVERIFY(axis->titleText().contains("(log)"));
        const auto series = view->chart()->series();
        QCOMPARE(series.size(), 2);
        double low = 1e300, high = 0.0;
        for (QAbstractSeries* abstract : series) {
            const auto points = static_cast<QLineSeries*>(abstract)->points();
            QVERIFY(!points.isEmpty());
            for (const QPointF& p : points) {
                QVERIFY(p.y() > 0.0);
                low = std::min(low, p.y());
                high = std::max(high, p.y());
            }
        }
        QVERIFY2(axis->min() <= low && axis->max() >= high,
                 qPrintable(QString("%1..%2 for %3..%4").arg(axis->min()).arg(axis->max()).arg(low).arg(high)));
    }
    // Every lane's distance ends at 0 (its own final state): one point fewer than its times.
    const auto distance = window.charts()->distanceView()->chart()->series();
    QCOMPARE(static_cast<QLineSeries*>(distance.front())->count(), 8);
    box->click();
    QVERIFY(qobject_cast<QValueAxis*>(window.charts()->velocityView()->chart()->axes(Qt::Vertical).front()));
}

void TestMainWindow::refusedSettingsClearTheLane() {
    // A schedule the engine refuses: the lane says why, and no longer shows the picture of the
    // settings before (which would pass for the result of these).
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 16);
    QVERIFY(settle(window));
    QVERIFY(!window.lane(0)->canvas()->states().isEmpty());
    window.lane(0)->scheduleBox()->setEditText("shift:-1");
    QVERIFY(settle(window));
    QVERIFY2(window.lane(0)->statusText().contains("shift:S needs S"), qPrintable(window.lane(0)->statusText()));
    QVERIFY(window.lane(0)->canvas()->states().isEmpty());
    QVERIFY(window.lane(0)->frames().isEmpty());
    // The other lane is untouched.
    QVERIFY(!window.lane(1)->canvas()->states().isEmpty());
    // A valid schedule brings the lane back.
    window.lane(0)->scheduleBox()->setEditText("shift:3");
    QVERIFY(settle(window));
    QVERIFY(window.lane(0)->hasResult());
    QVERIFY(!window.lane(0)->canvas()->states().isEmpty());
}

void TestMainWindow::timelinesAlignByTime() {
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 16);
    window.lane(0)->stepsBox()->setValue(4);
    window.lane(1)->stepsBox()->setValue(8);
    QVERIFY(settle(window));
    window.lane(0)->timeline()->setSliderDown(true);
    window.lane(0)->timeline()->triggerAction(QAbstractSlider::SliderToMinimum);
    window.lane(0)->stepBy(2);  // t = 0.5 on lane 1's 4-step grid
    QCOMPARE(window.lane(0)->currentFrame(), 2);
    QCOMPARE(window.lane(1)->currentFrame(), 4);  // t = 0.5 on lane 2's 8-step grid
    window.lane(0)->timeline()->setSliderDown(false);
}

void TestMainWindow::sweepFillsTheGridAndChart() {
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 8);
    QVERIFY(settle(window));
    SweepView* sweep = window.sweepView();
    sweep->setBy(SweepView::By::Path);
    sweep->setSelectedItems({"linear", "vp"});
    sweep->setMaxSteps(8);
    QSignalSpy cells(window.controller(), &EngineController::sweepCellReady);
    QSignalSpy finished(window.controller(), &EngineController::sweepFinished);
    window.runSweep();
    // A lane change during the sweep is served without waiting for the sweep to end.
    window.lane(0)->stepsBox()->setValue(3);
    QVERIFY(settle(window));
    QCOMPARE(cells.count(), 8);  // 2 paths x steps 1, 2, 4, 8
    QCOMPARE(finished.count(), 1);
    QCOMPARE(sweep->cellCount(), 8);
    QCOMPARE(window.lane(0)->result().steps, 3);
    for (const QString& path : {QString("linear"), QString("vp")}) {
        QVector<double> errors;
        for (const SweepCell& cell : sweep->cells()) {
            if (cell.path == path) errors << cell.rmse;
        }
        QCOMPARE(errors.size(), 4);
        QVERIFY2(errors[3] < errors[0], qPrintable(path));
        QVERIFY(!sweep->cells().front().image.isNull());
    }
    QCOMPARE(sweep->chartView()->chart()->series().size(), 2);
    QCOMPARE(sweep->chartView()->chart()->series().front()->name(), QString("linear"));
    QCOMPARE(sweep->chartView()->chart()->legend()->alignment(), Qt::AlignTop);

    // Six solvers (dopri5 among them, run as lanes): six colours, and the legend beside the plot.
    sweep->setBy(SweepView::By::Solver);
    const QStringList solvers{"euler", "heun", "rk4", "dpm++2m", "dopri5", "euler-a"};
    sweep->setSelectedItems(solvers);
    window.runSweep();
    QVERIFY(settle(window));
    QCOMPARE(finished.count(), 2);
    QCOMPARE(sweep->cellCount(), 24);  // steps 1, 2, 4, 8
    QChart* chart = sweep->chartView()->chart();
    QCOMPARE(chart->series().size(), 6);
    QSet<QRgb> colours;
    for (int i = 0; i < 6; ++i) {
        auto* series = qobject_cast<QLineSeries*>(chart->series()[i]);
        QVERIFY(series);
        QVERIFY2(series->name().startsWith(solvers[i]), qPrintable(series->name()));
        colours << series->color().rgb();
    }
    QCOMPARE(colours.size(), 6);
    QCOMPARE(chart->legend()->alignment(), Qt::AlignRight);
}

void TestMainWindow::zoomIsCrispAtTenTimes() {
    MainWindow window;
    window.show();
    useModel(window, "fashion-mnist:2000", 4);
    QVERIFY(settle(window));
    // The lane's own canvas widget, given room for one sample at 10x.
    SampleCanvas canvas;
    canvas.setImages(window.lane(0)->canvas()->states(), window.lane(0)->canvas()->predictions());
    canvas.resize(300, 300);
    canvas.setFocusedSample(0);
    QCOMPARE(canvas.pixelScale(), 10);  // 28 x 10 = 280 fits in 300
    const QImage drawn = canvas.grab().toImage();
    const QImage source = canvas.states().front();
    const int left = (drawn.width() - source.width() * 10) / 2;
    const int top = (drawn.height() - source.height() * 10) / 2;
    // Every pixel of each 10x10 block is its source pixel: nearest neighbour, no smoothing.
    for (int y = 0; y < source.height(); ++y) {
        for (int x = 0; x < source.width(); ++x) {
            const int expected = qGray(source.pixel(x, y));
            for (int dy = 0; dy < 10; dy += 3) {
                for (int dx = 0; dx < 10; dx += 3) {
                    QCOMPARE(qGray(drawn.pixel(left + x * 10 + dx, top + y * 10 + dy)), expected);
                }
            }
        }
    }
    // Ctrl+wheel-style zoom goes beyond the fit.
    canvas.setZoomSteps(2);
    QCOMPARE(canvas.pixelScale(), 12);
}

void TestMainWindow::settingsPersistAndResetAndSurviveCorruption() {
    {
        MainWindow window;
        window.show();
        useModel(window, "gmm:rings", 12);
        window.settingsPanel()->seedBox()->setValue(77);
        window.settingsPanel()->setLaneCount(3);
        window.lane(2)->solverBox()->setCurrentText("rk4");
        window.lane(2)->stepsBox()->setValue(13);
        window.charts()->setLogScale(true);
        QVERIFY(settle(window));
        window.close();  // writes the settings
    }
    {
        MainWindow window;
        QCOMPARE(window.settingsPanel()->modelBox()->currentText(), QString("gmm:rings"));
        QCOMPARE(window.settingsPanel()->seedBox()->value(), 77);
        QCOMPARE(window.settingsPanel()->batchBox()->value(), 12);
        QCOMPARE(window.laneCount(), 3);
        QCOMPARE(window.lane(2)->solverBox()->currentText(), QString("rk4"));
        QCOMPARE(window.lane(2)->stepsBox()->value(), 13);
        QVERIFY(window.charts()->logScale());
        window.resetToDefaults();
        QVERIFY(!window.charts()->logScale());
        QCOMPARE(window.laneCount(), 2);
        QCOMPARE(window.settingsPanel()->modelBox()->currentText(), QString("fashion-mnist"));
        QCOMPARE(window.lane(1)->pathBox()->currentText(), QString("vp"));
        window.cancelRuns();
        QVERIFY(settle(window));
    }
    // A damaged settings file: a warning, the defaults, no crash.
    AppSettings::open()->setValue("run/shared", QByteArray("{not json"));
    QTest::ignoreMessage(QtWarningMsg, QRegularExpression("ignoring saved settings"));
    MainWindow window;
    QCOMPARE(window.settingsPanel()->modelBox()->currentText(), QString("fashion-mnist"));
    QCOMPARE(window.laneCount(), 2);
    window.cancelRuns();
    QVERIFY(settle(window));
}

void TestMainWindow::cancelLeavesNoLaneWaiting() {
    MainWindow window;
    window.show();
    useModel(window, "fashion-mnist:2000", 4);
    window.settingsPanel()->setLaneCount(3);
    for (int i = 0; i < 3; ++i) window.lane(i)->stepsBox()->setValue(200);
    window.runNow();
    QTest::qWait(100);
    window.cancelRuns();
    QVERIFY(settle(window));
    // The running lane and the queued ones all say they were cancelled; none waits forever.
    for (int i = 0; i < 3; ++i) {
        QVERIFY2(!window.lane(i)->hasResult(), qPrintable(QString::number(i)));
        QVERIFY2(window.lane(i)->findChild<QLabel*>() != nullptr, "lane has labels");
    }
    int cancelled = 0;
    for (int i = 0; i < 3; ++i) {
        for (QLabel* label : window.lane(i)->findChildren<QLabel*>()) cancelled += label->text() == "cancelled";
    }
    QCOMPARE(cancelled, 3);
    QString error;
    QVERIFY(!window.exportTrajectory(0, QDir::temp().filePath("never.npy"), &error));
    QVERIFY(error.contains("no finished run"));
}

void TestMainWindow::screenshots() {
    const QString folder = QDir(QCoreApplication::applicationDirPath()).filePath("screenshots");
    QDir().mkpath(folder);
    MainWindow window;
    window.resize(1280, 800);
    window.show();
    QVERIFY(settle(window));
    QVERIFY(window.grab().save(folder + "/compare.png"));
    window.settingsPanel()->setLaneCount(1);
    QVERIFY(settle(window));
    QVERIFY(window.grab().save(folder + "/one-lane.png"));
    window.settingsPanel()->setLaneCount(2);
    useModel(window, "gmm:8gaussians", 64);
    QVERIFY(settle(window));
    QVERIFY(window.grab().save(folder + "/scatter-2d.png"));
    // Guidance: both lanes on the linear path towards the class north, w = 1 beside w = 5.
    QComboBox* condition = window.settingsPanel()->conditionBox();
    condition->setCurrentIndex(condition->findData("north"));
    window.lane(1)->pathBox()->setCurrentText("linear");
    window.lane(1)->guidanceBar()->scaleSlider()->setValue(50);
    QVERIFY(settle(window));
    QVERIFY(window.grab().save(folder + "/guidance-2d.png"));
    qInfo("screenshots in %s", qPrintable(folder));
}

void TestMainWindow::bundleAsksTrustOnceAndShowsLatents() {
    QTemporaryDir config;
    const QString list = config.filePath("trusted-models");
    qputenv("FLOWSCOPE_TRUST_LIST", list.toUtf8());
    const QString bundle = QDir(kBundles + "latent").absolutePath();
    const QString modelHash = QString::fromStdString(flowscope::core::sha256OfFile((bundle + "/model.pt").toStdString()));
    const QString decoderHash =
        QString::fromStdString(flowscope::core::sha256OfFile((bundle + "/decoder.pt").toStdString()));
    {
        MainWindow window;
        window.show();
        useModel(window, "gmm:8gaussians", 4);
        QVERIFY(settle(window));
        {
            TrustAnswer refuse("refuseButton");
            QVERIFY(!window.openBundle(bundle));
            QCOMPARE(refuse.asked, 1);
            // The dialog names both program files by their SHA-256.
            QVERIFY2(refuse.text.contains(modelHash) && refuse.text.contains(decoderHash), qPrintable(refuse.text));
            QVERIFY(refuse.text.contains("runs that code"));
        }
        QVERIFY(!QFile::exists(list));
        QCOMPARE(window.settingsPanel()->modelBox()->currentText(), QString("gmm:8gaussians"));
        {
            TrustAnswer trust("trustButton");
            QVERIFY(window.openBundle(bundle));
            QCOMPARE(trust.asked, 1);
        }
        QCOMPARE(window.settingsPanel()->modelBox()->currentText(), "bundle:" + bundle);
        QVERIFY(settle(window));
        QVERIFY2(window.lane(0)->hasResult(), qPrintable(window.lane(0)->metricsText()));
        // 4 x 3 x 3 latents are shown as 6 x 6 RGB images: latent_rgb between, the decoder at the end.
        const QImage shown = window.lane(0)->canvas()->states().front();
        QCOMPARE(shown.size(), QSize(6, 6));
        QCOMPARE(shown.format(), QImage::Format_RGB888);
        QVERIFY(window.lane(0)->frames().back().final);
        // Further runs do not ask again.
        TrustAnswer none("refuseButton");
        window.lane(0)->stepsBox()->setValue(5);
        QVERIFY(settle(window));
        QCOMPARE(none.asked, 0);
        QCOMPARE(window.lane(0)->frames().size(), 6);
        window.close();
    }
    // The answer is in the trusted list the CLI reads too, in sha256sum's format.
    QFile listFile(list);
    QVERIFY(listFile.open(QIODevice::ReadOnly));
    const QString trusted = QString::fromUtf8(listFile.readAll());
    QVERIFY(trusted.contains(modelHash + "  ") && trusted.contains(decoderHash + "  "));
    // A new window (the next launch) restores the bundle and runs it without asking.
    TrustAnswer none("refuseButton");
    MainWindow again;
    again.show();
    QCOMPARE(again.settingsPanel()->modelBox()->currentText(), "bundle:" + bundle);
    QVERIFY(settle(again));
    QCOMPARE(none.asked, 0);
    QVERIFY(again.lane(0)->hasResult());
}

void TestMainWindow::failingNetworkLeavesTheAppWorking() {
    QTemporaryDir config;
    qputenv("FLOWSCOPE_TRUST_LIST", config.filePath("trusted-models").toUtf8());
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 4);
    QVERIFY(settle(window));
    {
        TrustAnswer trust("trustButton");
        QVERIFY(window.openBundle(kBundles + "faulty-throws"));
    }
    QVERIFY(settle(window));
    QVERIFY(!window.lane(0)->hasResult());
    QVERIFY2(window.lane(0)->statusText().contains("this network refuses to run past t = 0.5"),
             qPrintable(window.lane(0)->statusText()));
    // A bundle that is not one: a message, and the model stays as it was.
    QTimer::singleShot(200, [] {
        if (auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget())) box->accept();
    });
    QVERIFY(!window.openBundle(kBundles + "no-such-bundle"));
    QVERIFY(window.settingsPanel()->modelBox()->currentText().endsWith("faulty-throws"));
    // The next run of a working model succeeds.
    useModel(window, "gmm:8gaussians", 8);
    QVERIFY(settle(window));
    QVERIFY2(window.lane(0)->hasResult(), qPrintable(window.lane(0)->metricsText()));
}

void TestMainWindow::unknownNamesAreRefusedWithAMessage() {
    // Saved settings naming a solver the engine does not know: the lane keeps its default, the
    // box does not offer the name, the user is told, and the name is not written back.
    {
        const auto settings = AppSettings::open();
        settings->setValue("run/shared", settingsJson({}));
        settings->setValue("run/lanes", 2);
        settings->setValue("run/lane0", settingsJson({{"solver", "bogus"}}));
        settings->setValue("run/lane1", settingsJson({{"path", "vp"}}));
    }
    {
        MainWindow window;
        window.show();
        QCOMPARE(window.lane(0)->solverBox()->currentText(), QString("euler"));
        QCOMPARE(window.lane(0)->solverBox()->findText("bogus"), -1);
        QCOMPARE(window.lane(1)->pathBox()->currentText(), QString("vp"));
        const QString message = window.statusBar()->currentMessage();
        QVERIFY2(message.contains("Lane 1") && message.contains("unknown solver 'bogus'"), qPrintable(message));
        window.cancelRuns();
        QVERIFY(settle(window));
        window.close();
    }
    QVERIFY(!AppSettings::open()->value("run/lane0").toByteArray().contains("bogus"));

    // The same for a PNG's settings; a parametric schedule the engine takes is restored as it is.
    QTemporaryDir dir;
    MainWindow window;
    window.show();
    QString error;
    QVERIFY(!window.restoreFromPng(pngWithSettings(dir, "path.png", settingsJson({{"path", "warp"}})), &error));
    QVERIFY2(error.contains("unknown path 'warp'"), qPrintable(error));
    QVERIFY(!window.restoreFromPng(pngWithSettings(dir, "shift.png", settingsJson({{"schedule", "shift:x"}})), &error));
    QVERIFY2(error.contains("shift"), qPrintable(error));
    QVERIFY(!window.restoreFromPng(pngWithSettings(dir, "device.png", settingsJson({{"device", "tpu"}})), &error));
    QVERIFY2(error.contains("unknown device 'tpu'"), qPrintable(error));
    QCOMPARE(window.lane(0)->pathBox()->findText("warp"), -1);
    QVERIFY2(window.restoreFromPng(pngWithSettings(dir, "ok.png", settingsJson({{"schedule", "shift:2.5"}})), &error),
             qPrintable(error));
    QCOMPARE(window.lane(0)->scheduleBox()->currentText(), QString("shift:2.5"));
    QVERIFY(settle(window));
    QVERIFY2(window.lane(0)->hasResult(), qPrintable(window.lane(0)->statusText()));
}

void TestMainWindow::everySeedAndBatchTheEngineTakesSurvives() {
    QTemporaryDir dir;
    const QString exported = dir.filePath("seed.png");
    {
        MainWindow window;
        window.show();
        useModel(window, "gmm:8gaussians", 4);
        window.settingsPanel()->seedBox()->setValue(4000000000.0);
        QVERIFY(settle(window));
        QCOMPARE(window.lane(0)->runSettings().seed, quint64(4000000000));
        QString error;
        QVERIFY2(window.exportLane(0, exported, &error), qPrintable(error));
    }
    QVERIFY(QImageReader(exported).text("flowscope").contains("\"seed\":4000000000,"));
    {
        // 2-D models too: the CLI's scatter plot of the same run is the window's export.
        const QString cli = dir.filePath("seed-cli.png");
        QString output;
        QVERIFY2(cliPictureOfSettings(QImageReader(exported).text("flowscope"), cli, &output), qPrintable(output));
        QCOMPARE(QImageReader(cli).text("flowscope"), QImageReader(exported).text("flowscope"));
        QCOMPARE(QImage(cli).convertToFormat(QImage::Format_RGB888), QImage(exported).convertToFormat(QImage::Format_RGB888));
    }
    MainWindow window;
    window.show();
    QString error;
    QVERIFY2(window.restoreFromPng(exported, &error), qPrintable(error));
    QCOMPARE(window.settingsPanel()->shared().seed, quint64(4000000000));
    QVERIFY(settle(window));
    QCOMPARE(window.lane(0)->runSettings().seed, quint64(4000000000));
    // A seed past 32 bits cannot be shown, nor run: refused, and the seed shown stays.
    QVERIFY(!window.restoreFromPng(pngWithSettings(dir, "big.png", settingsJson({{"seed", "4294967296"}})), &error));
    QVERIFY2(error.contains("seed"), qPrintable(error));
    QCOMPARE(window.settingsPanel()->shared().seed, quint64(4000000000));
    // The window offers every batch the engine (and the CLI) takes, and no more.
    QCOMPARE(window.settingsPanel()->batchBox()->maximum(), flowscope::core::kMaxBatch);
    QVERIFY2(window.restoreFromPng(pngWithSettings(dir, "batch.png", settingsJson({{"batch", 256}})), &error),
             qPrintable(error));
    QCOMPARE(window.settingsPanel()->batchBox()->value(), 256);
    QVERIFY(!window.restoreFromPng(
        pngWithSettings(dir, "huge.png", settingsJson({{"batch", flowscope::core::kMaxBatch + 1}})), &error));
    QCOMPARE(window.settingsPanel()->batchBox()->value(), 256);
    window.cancelRuns();
    QVERIFY(settle(window));
}

void TestMainWindow::settingsShareTheTrustListsFolder() {
    // Beside the trusted-models list: $XDG_CONFIG_HOME/flowscope.
    const QString config = qEnvironmentVariable("XDG_CONFIG_HOME");
    QCOMPARE(AppSettings::folder(), QDir(config).filePath("flowscope"));
    QVERIFY(AppSettings::filePath().startsWith(AppSettings::folder() + "/"));
    // Settings an earlier version kept in Qt's default place are read once, into the new file.
    QFile::remove(AppSettings::filePath());
    {
        QSettings earlier;
        earlier.setValue("run/shared", settingsJson({{"seed", "31337"}}));
        earlier.sync();
    }
    {
        MainWindow window;
        QCOMPARE(window.settingsPanel()->shared().seed, quint64(31337));
        QCOMPARE(window.settingsPanel()->modelBox()->currentText(), QString("gmm:8gaussians"));
        window.cancelRuns();
        QVERIFY(settle(window));
    }
    QVERIFY(QFile::exists(AppSettings::filePath()));
    QSettings(AppSettings::filePath(), QSettings::IniFormat).setValue("run/shared", settingsJson({{"seed", "5"}}));
    MainWindow window;
    QCOMPARE(window.settingsPanel()->shared().seed, quint64(5));
    window.cancelRuns();
    QVERIFY(settle(window));
}

void TestMainWindow::unwritableSettingsAreReportedOnce() {
    // A settings folder that cannot be made (its parent is a file: read-only even for root).
    QTemporaryDir dir;
    QFile blocker(dir.filePath("file"));
    QVERIFY(blocker.open(QIODevice::WriteOnly));
    blocker.close();
    const QByteArray saved = qgetenv("XDG_CONFIG_HOME");
    qputenv("XDG_CONFIG_HOME", dir.filePath("file/config").toUtf8());
    {
        MainWindow window;
        window.show();
        const QString message = window.statusBar()->currentMessage();
        QVERIFY2(message.contains("will not be saved") && message.contains(dir.filePath("file")), qPrintable(message));
        window.cancelRuns();
        QVERIFY(settle(window));
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression("could not be saved"));
        window.close();
    }
    qputenv("XDG_CONFIG_HOME", saved);
    // A writable folder: nothing to say.
    MainWindow window;
    QVERIFY(window.statusBar()->currentMessage().isEmpty());
    window.cancelRuns();
    QVERIFY(settle(window));
}

void TestMainWindow::failedRunShowsInTheStatusBar() {
    MainWindow window;
    window.show();
    window.settingsPanel()->setLaneCount(1);
    window.lane(0)->stepsBox()->setValue(100);
    useModel(window, "gmm:no-such-mixture", 4);
    QVERIFY(settle(window));
    QVERIFY(!window.lane(0)->hasResult());
    auto* progress = window.statusBar()->findChild<QProgressBar*>();
    QVERIFY(progress);
    QVERIFY2(progress->text().contains("failed"), qPrintable(progress->text()));
    // What stays once the failure's message has timed out.
    window.statusBar()->clearMessage();
    QStringList shown;
    for (QLabel* label : window.statusBar()->findChildren<QLabel*>()) {
        if (label->isVisible()) shown << label->text();
    }
    const QString status = shown.join(" | ");
    QVERIFY2(!status.contains("starting the engine"), qPrintable(status));
    QVERIFY2(status.contains("Lane 1 failed") && status.contains("no-such-mixture"), qPrintable(status));
    // The next run that succeeds counts steps again and names the device.
    useModel(window, "gmm:8gaussians", 4);
    QVERIFY(settle(window));
    QVERIFY(window.lane(0)->hasResult());
    QVERIFY2(progress->text().contains("100/100"), qPrintable(progress->text()));
}

void TestMainWindow::pointModelsFillTheLaneOnFixedAxes() {
    MainWindow window;
    window.resize(1600, 1000);
    window.show();
    auto* hint = window.findChild<QLabel*>("laneHint");
    QVERIFY(hint);
    QVERIFY(hint->text().contains("clean images"));
    useModel(window, "gmm:8gaussians", 64);
    QVERIFY(settle(window));
    // The hint speaks of points for a 2-D model.
    QVERIFY2(hint->text().contains("points") && !hint->text().contains("images"), qPrintable(hint->text()));
    QSize plotSize;
    for (int i = 0; i < window.laneCount(); ++i) {
        LaneView* lane = window.lane(i);
        // The plot fills the lane's canvas across its narrower side.
        SampleCanvas* canvas = lane->canvas();
        const QRect area = plotArea(canvas->grab().toImage());
        const int room = std::min(canvas->width(), canvas->height());
        QVERIFY2(std::max(area.width(), area.height()) >= room * 0.95,
                 qPrintable(QString("%1 x %2 in %3 x %4").arg(area.width()).arg(area.height()).arg(canvas->width()).arg(canvas->height())));
        // Every frame of every lane on the same axes.
        for (const LaneFrame& frame : lane->frames()) {
            if (plotSize.isEmpty()) plotSize = frame.states.front().size();
            QCOMPARE(frame.states.front().size(), plotSize);
        }
        // The data (8 Gaussians at radius 2) spans most of the plot, and the noise at the start
        // fits in it.
        const auto spread = [](const QImage& image) {
            QRect points;
            for (int y = 0; y < image.height(); ++y) {
                for (int x = 0; x < image.width(); ++x) {
                    if (image.pixel(x, y) == QColor(220, 80, 40).rgb()) points |= QRect(x, y, 1, 1);
                }
            }
            return points;
        };
        const QRect final = spread(lane->frames().back().predictions.front());
        QVERIFY2(final.width() >= plotSize.width() * 0.6, qPrintable(QString::number(final.width())));
        const QRect start = spread(lane->frames().front().states.front());
        QVERIFY(QRect(QPoint(0, 0), plotSize).adjusted(1, 1, -1, -1).contains(start));
    }
    // Back to images: the hint speaks of images again.
    useModel(window, "fashion-mnist:2000", 4);
    QVERIFY(settle(window));
    QVERIFY(hint->text().contains("clean images"));
}

void TestMainWindow::conditionAndGuidanceDriveARun() {
    MainWindow window;
    window.resize(1600, 1000);
    window.show();
    useModel(window, "gmm:8gaussians", 64);
    QVERIFY(settle(window));
    QComboBox* condition = window.settingsPanel()->conditionBox();
    // "unconditional", then the model's eight classes; guidance waits for a class.
    QCOMPARE(condition->count(), 9);
    QCOMPARE(condition->itemText(3), QString("north"));
    QVERIFY(!window.lane(1)->guidanceBar()->isEnabled());
    QVERIFY(window.lane(0)->runSettings().condition.isEmpty());
    condition->setCurrentIndex(condition->findData("north"));
    QVERIFY(settle(window));
    QVERIFY(window.lane(1)->guidanceBar()->isEnabled());
    QCOMPARE(window.lane(0)->runSettings().condition, QString("north"));
    // Lane 2 guides with w = 5 from the same noise, by its slider.
    window.lane(1)->guidanceBar()->scaleSlider()->setValue(50);
    QVERIFY(settle(window));
    const RunSettings guided = window.lane(1)->runSettings();
    QVERIFY(guided.guidance.method == flowscope::core::GuidanceMethod::Cfg);
    QCOMPARE(guided.guidance.scale, 5.0);
    const auto meanY = [](const LaneResult& result) {
        double sum = 0.0;
        const size_t count = result.final.values.size() / 2;
        for (size_t b = 0; b < count; ++b) sum += result.final.values[2 * b + 1];
        return sum / double(count);
    };
    QVERIFY(window.lane(0)->hasResult() && window.lane(1)->hasResult());
    const double plain = meanY(window.lane(0)->result()), pushed = meanY(window.lane(1)->result());
    // w = 1 samples the north component (0, 2); w = 5 pushes the particles past it.
    QVERIFY2(std::abs(plain - 2.0) < 0.3, qPrintable(QString::number(plain)));
    QVERIFY2(pushed > plain + 0.1, qPrintable(QString("%1 vs %2").arg(pushed).arg(plain)));
    // The class's own points are drawn in colour over the grey mixture.
    const QImage plot = window.lane(1)->frames().back().states.front();
    bool coloured = false;
    for (int y = 0; y < plot.height() && !coloured; ++y) {
        for (int x = 0; x < plot.width() && !coloured; ++x) coloured = plot.pixel(x, y) == QColor(150, 90, 210).rgb();
    }
    QVERIFY(coloured);
    // The PNG chunks carry the class and the scale, and restore them.
    const auto chunks = guided.pngChunks(window.lane(1)->result().nfe, {2});
    QVERIFY2(chunks.front().second.contains("CFG scale: 5") && chunks.front().second.contains("Class: north"),
             qPrintable(chunks.front().second));
    RunSettings restored;
    QString why;
    QVERIFY2(RunSettings::fromJson(chunks.back().second.toUtf8(), &restored, &why), qPrintable(why));
    QCOMPARE(restored, guided);
    // The method's parameters on demand: APG's appear for apg only.
    GuidanceBar* bar = window.lane(1)->guidanceBar();
    bar->parametersButton()->click();
    QVERIFY(bar->parametersPanel()->isVisible());
    QVERIFY(!bar->apgEtaBox()->isVisible());
    bar->methodBox()->setCurrentText("apg");
    QVERIFY(bar->apgEtaBox()->isVisible() && !bar->rescaleBox()->isVisible());
    QVERIFY(settle(window));
    QVERIFY(window.lane(1)->runSettings().guidance.method == flowscope::core::GuidanceMethod::Apg);
    QVERIFY2(window.lane(1)->hasResult(), qPrintable(window.lane(1)->statusText()));
    // The Sweep tab sweeps the scale: w = 1 and w = 3 at 1, 2, 4 and 8 steps, each against its
    // own guided reference.
    SweepView* sweep = window.sweepView();
    sweep->setBy(SweepView::By::Guidance);
    sweep->setSelectedItems({"1", "3"});
    QCOMPARE(sweep->selectedScales(), (std::vector<double>{1.0, 3.0}));
    sweep->setMaxSteps(8);
    window.runSweep();
    QVERIFY(settle(window));
    QCOMPARE(sweep->cellCount(), 8);
    QCOMPARE(sweep->cells().front().cfg, 1.0);
    QCOMPARE(sweep->cells().back().cfg, 3.0);
    QCOMPARE(sweep->chartView()->chart()->series().size(), 2);
    QCOMPARE(sweep->chartView()->chart()->series().back()->name(), QString("w = 3"));
    // Back to unconditional: the bars rest and the runs are unguided.
    condition->setCurrentIndex(0);
    QVERIFY(settle(window));
    QVERIFY(!bar->isEnabled());
    QVERIFY(window.lane(1)->runSettings().guidance.method == flowscope::core::GuidanceMethod::None);
}

void TestMainWindow::firstLaunchUsesMostOfTheScreen() {
    const QSize large = MainWindow::firstLaunchSize(QSize(1680, 1050));
    QVERIFY2(large.width() >= 1450 && large.height() >= 900,
             qPrintable(QString("%1 x %2").arg(large.width()).arg(large.height())));
    // A laptop's screen: the window fits it, title bar included, and can be that small.
    const QSize laptop = MainWindow::firstLaunchSize(QSize(1280, 800));
    QVERIFY(laptop.width() <= 1280 && laptop.height() <= 760);
    MainWindow window;
    window.resize(laptop);
    window.show();
    QTRY_COMPARE(window.size(), laptop);
    window.cancelRuns();
    QVERIFY(settle(window));
}

void TestMainWindow::quitDuringALongStepEndsPromptly() {
    // A step that runs for seconds without looking at its cancel flag (the exact denoiser over
    // 60,000 images at a large batch) must not hold the window's closing.
    // Whatever happens here, the step let go ends before the next test (or the process's exit).
    const auto drain = qScopeGuard([] {
        if (!QTest::qWaitFor([] { return WorkerThread::abandonedCount() == 0; }, kRunTimeoutMs)) {
            qWarning("a step let go is still running");
        }
    });
    auto window = std::make_unique<MainWindow>();
    window->show();
    window->settingsPanel()->setLaneCount(1);
    window->lane(0)->stepsBox()->setValue(2);
    useModel(*window, "fashion-mnist", 2048);
    window->runNow();
    QTRY_VERIFY_WITH_TIMEOUT(!window->lane(0)->frames().isEmpty(), kRunTimeoutMs);
    QAction* quit = nullptr;
    for (QAction* action : window->findChildren<QAction*>()) {
        if (action->text() == MainWindow::tr("&Quit")) quit = action;
    }
    QVERIFY(quit);
    QElapsedTimer timer;
    timer.start();
    quit->trigger();
    QVERIFY(!window->isVisible());
    window.reset();
    const qint64 closing = timer.elapsed();
    QVERIFY2(closing < 2500, qPrintable(QString("%1 ms").arg(closing)));
    QTRY_COMPARE_WITH_TIMEOUT(WorkerThread::abandonedCount(), 0, kRunTimeoutMs);
}

// A fork from the Run menu at the step the timeline shows, image to image from a picture file,
// and the inversion window, driven through the window's own actions and widgets.
void TestMainWindow::forkImageToImageAndInversionThroughTheWindow() {
    MainWindow window;
    window.resize(1600, 1000);
    window.show();
    useModel(window, "gmm:8gaussians", 16);
    QVERIFY(settle(window));
    QCOMPARE(window.laneCount(), 2);
    LaneView* parent = window.lane(0);
    QVERIFY(parent->hasResult());
    parent->timeline()->setValue(3);

    QAction* fork = nullptr;
    for (QAction* action : window.findChildren<QAction*>()) {
        if (action->text() == MainWindow::tr("&Fork focused lane at this step")) fork = action;
    }
    QVERIFY(fork);
    fork->trigger();
    QVERIFY(settle(window));
    QCOMPARE(window.laneCount(), 3);
    LaneView* child = window.lane(2);
    QVERIFY2(child->hasResult(), qPrintable(child->statusText()));
    QVERIFY(child->startBar()->isVisible());
    QVERIFY2(child->startBar()->text().contains("fork of lane 1 at step 3"), qPrintable(child->startBar()->text()));
    // The parent's settings from its step 3 on: its own remaining steps, to the last bit.
    QCOMPARE(child->frames().front().t, parent->frames()[3].t);
    QCOMPARE(child->result().final.values, parent->result().final.values);
    // Its filmstrip begins with three of the parent's steps before the fork, greyed, then its own six.
    QCOMPARE(child->frames().size(), 6);
    QCOMPARE(child->filmstrip()->thumbnailCount(), 9);
    // Another solver from the same state: the same start, another end.
    child->solverBox()->setCurrentText("heun");
    QVERIFY(settle(window));
    QVERIFY(child->startBar()->isVisible());
    QCOMPARE(child->frames().front().t, parent->frames()[3].t);
    QVERIFY(child->result().final.values != parent->result().final.values);
    const QString folder = QDir(QCoreApplication::applicationDirPath()).filePath("screenshots");
    QDir().mkpath(folder);
    QVERIFY(window.grab().save(folder + "/fork.png"));

    // Image to image: a new model drops the fork; a picture of the model's size starts lane 1.
    useModel(window, "fashion-mnist:300", 2);
    QVERIFY(settle(window));
    QVERIFY(!child->startBar()->isVisible());
    QTemporaryDir dir;
    QImage picture(28, 28, QImage::Format_Grayscale8);
    for (int y = 0; y < 28; ++y) {
        for (int x = 0; x < 28; ++x) picture.setPixel(x, y, qRgb((x * 9) % 256, (x * 9) % 256, (x * 9) % 256));
    }
    const QString file = dir.filePath("start.png");
    QVERIFY(picture.save(file));
    QString error;
    QImage wrong(32, 32, QImage::Format_Grayscale8);
    wrong.fill(Qt::gray);
    QVERIFY(wrong.save(dir.filePath("wrong.png")));
    QVERIFY(!window.setStartImage(0, dir.filePath("wrong.png"), &error));
    QVERIFY2(error.contains("32x32") && error.contains("28x28"), qPrintable(error));
    QVERIFY2(window.setStartImage(0, file, &error), qPrintable(error));
    parent->startBar()->strengthSlider()->setValue(0);  // strength 0: the picture itself
    QVERIFY(settle(window));
    QVERIFY2(parent->hasResult(), qPrintable(parent->statusText()));
    QCOMPARE(parent->result().nfe, 0);
    for (int i = 0; i < 28 * 28; ++i) {
        QCOMPARE(parent->result().final.values[size_t(i)], float((i % 28) * 9 % 256) / 127.5f - 1.0f);
    }
    parent->startBar()->strengthSlider()->setValue(50);
    QVERIFY(settle(window));
    QCOMPARE(parent->frames().front().t, 0.5);
    QCOMPARE(parent->result().steps, parent->stepsBox()->value() / 2);
    QVERIFY(window.grab().save(folder + "/image-to-image.png"));
    // A picture file inverts too, with a lane's settings.
    QVERIFY2(window.invertImage(0, file, &error), qPrintable(error));
    QTRY_VERIFY_WITH_TIMEOUT(window.invertDialog()->hasInversion(), kRunTimeoutMs);
    QVERIFY(window.invertDialog()->windowTitle().contains("start.png"));
    QVERIFY(settle(window));

    // Inversion of a sample of the exact mixture (the ideal image denoiser's samples are its
    // training images, whose round trips close exactly): the figures and the round-trip chart.
    parent->clearStart();
    window.settingsPanel()->setLaneCount(2);
    window.lane(1)->solverBox()->setCurrentText("heun");
    useModel(window, "gmm:8gaussians", 4);
    QVERIFY(settle(window));
    QVERIFY2(window.invertLane(1, &error), qPrintable(error));
    InvertDialog* inversion = window.invertDialog();
    QVERIFY(inversion->isVisible());
    QTRY_VERIFY_WITH_TIMEOUT(inversion->hasInversion(), kRunTimeoutMs);
    QVERIFY(settle(window));
    QVERIFY2(inversion->figuresText().contains("Round trip: RMSE"), qPrintable(inversion->figuresText()));
    QVERIFY(!inversion->curves().isEmpty());
    for (auto it = inversion->curves().cbegin(); it != inversion->curves().cend(); ++it) {
        QString points;
        for (const QPointF& point : it.value()) points += QString(" (%1, %2)").arg(point.x()).arg(point.y());
        QVERIFY2(it.value().size() == 6, qPrintable(it.key() + points));
        // More steps close the round trip better.
        QVERIFY2(it.value().back().y() < it.value().front().y(), qPrintable(it.key() + points));
    }
    QVERIFY(inversion->grab().save(folder + "/inversion.png"));
}

QTEST_MAIN(TestMainWindow)
void TestMainWindow::trainPanelTrainsPausesAndOffersTheModel() {
    MainWindow window;
    window.show();
    QVERIFY(settle(window));
    TrainPanel* panel = window.trainPanel();
    QTemporaryDir out;
    panel->findChild<QComboBox*>("trainDataset")->setEditText("points:moons");
    panel->findChild<QSpinBox*>("trainIterations")->setValue(3000);
    panel->findChild<QSpinBox*>("trainWidth")->setValue(32);
    panel->findChild<QLineEdit*>("trainOutput")->setText(out.filePath("moons"));
    QSignalSpy trained(panel, &TrainPanel::modelTrained);
    QSignalSpy progressed(panel->controller(), &TrainController::progressed);
    auto* progress = panel->findChild<QProgressBar*>("trainProgress");
    panel->findChild<QPushButton*>("trainStart")->click();
    QVERIFY(!panel->findChild<QPushButton*>("trainStart")->isEnabled());
    QTRY_VERIFY_WITH_TIMEOUT(progressed.count() > 0 && progress->value() > 0, 60000);

    // Paused, the iteration stops advancing; resumed, it goes on.
    auto* pause = panel->findChild<QPushButton*>("trainPause");
    pause->click();
    QCOMPARE(pause->text(), QString("Resume"));
    QTest::qWait(400);
    const int pausedAt = progress->value();
    QTest::qWait(600);
    QCOMPARE(progress->value(), pausedAt);
    QVERIFY2(pausedAt < 3000, "the run ended before it could be paused");
    pause->click();
    QTRY_VERIFY_WITH_TIMEOUT(trained.count() == 1, 120000);

    QCOMPARE(progress->value(), 3000);
    QVERIFY(panel->lossPointCount() > 5);
    const QPixmap preview = panel->findChild<QLabel*>("trainPreview")->pixmap();
    QVERIFY(!preview.isNull());
    const QString spec = "bundle:" + out.filePath("moons");
    QCOMPARE(trained.front().front().toString(), spec);
    QVERIFY(QFile::exists(out.filePath("moons/flowscope.json")));
    QVERIFY(panel->statusText().contains("Done"));
    // The model list offers it, selected: the lanes sample the new network.
    QCOMPARE(window.settingsPanel()->modelBox()->currentText(), spec);
    QVERIFY(settle(window));
    QCOMPARE(window.lane(0)->result().steps, window.lane(0)->stepsBox()->value());
    const auto& samples = window.lane(0)->result().final;
    QCOMPARE(samples.shape.size(), size_t(2));
    QCOMPARE(samples.shape[1], int64_t(2));
    // And the Reflow mode offers it as a source.
    QVERIFY(panel->findChild<QComboBox*>("trainSource")->findText(spec) >= 0);
}

void TestMainWindow::trainPanelCancelKeepsACheckpointAndResumes() {
    MainWindow window;
    window.show();
    TrainPanel* panel = window.trainPanel();
    QTemporaryDir out;
    panel->findChild<QComboBox*>("trainDataset")->setEditText("gmm:8gaussians");
    panel->findChild<QSpinBox*>("trainIterations")->setValue(1'000'000);
    panel->findChild<QSpinBox*>("trainWidth")->setValue(16);
    panel->findChild<QLineEdit*>("trainOutput")->setText(out.filePath("g"));
    QSignalSpy finished(panel->controller(), &TrainController::finished);
    auto* progress = panel->findChild<QProgressBar*>("trainProgress");
    auto* start = panel->findChild<QPushButton*>("trainStart");
    start->click();
    QTRY_VERIFY_WITH_TIMEOUT(progress->value() > 20, 60000);
    panel->findChild<QPushButton*>("trainCancel")->click();
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
    QVERIFY2(panel->statusText().contains("resumes"), qPrintable(panel->statusText()));
    QVERIFY(QFile::exists(out.filePath("g/checkpoint.safetensors")));
    QVERIFY(start->isEnabled());
    // Start again: it continues from the checkpoint.
    start->click();
    QTRY_VERIFY_WITH_TIMEOUT(panel->statusText().contains("resumed at"), 60000);
    panel->findChild<QPushButton*>("trainCancel")->click();
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 2, 60000);
    // A bad request is reported, not crashed on: a dataset that does not exist.
    panel->findChild<QComboBox*>("trainDataset")->setEditText("points:nowhere");
    panel->findChild<QLineEdit*>("trainOutput")->setText(out.filePath("bad"));
    start->click();
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 3, 60000);
    QVERIFY2(panel->statusText().contains("failed") && panel->statusText().contains("points:moons"),
             qPrintable(panel->statusText()));
}

void TestMainWindow::openPathTakesAPngOrABundleFolder() {
    // `flowscope PATH`: a folder is opened as the model (a network FlowScope trained needs no trust).
    MainWindow window;
    window.show();
    QString error;
    const QString bundle = QDir(QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/models/moons-rectified")).absolutePath();
    QVERIFY2(window.openPath(bundle, &error), qPrintable(error));
    QCOMPARE(window.settingsPanel()->modelBox()->currentText(), "bundle:" + bundle);
    // A PNG FlowScope exported: its run comes back, here with another seed and step count.
    useModel(window, "gmm:8gaussians", 8);
    window.settingsPanel()->seedBox()->setValue(4000000000.0);
    window.lane(0)->stepsBox()->setValue(3);
    QVERIFY(settle(window));
    QTemporaryDir dir;
    const QString png = dir.filePath("run.png");
    QVERIFY2(window.exportLane(0, png, &error), qPrintable(error));
    MainWindow fresh;
    fresh.show();
    QVERIFY2(fresh.openPath(png, &error), qPrintable(error));
    QCOMPARE(fresh.settingsPanel()->modelBox()->currentText(), QString("gmm:8gaussians"));
    QCOMPARE(fresh.settingsPanel()->seedBox()->value(), 4000000000.0);
    QCOMPARE(fresh.lane(0)->stepsBox()->value(), 3);
    QVERIFY(settle(fresh));
    // Anything else is refused with the reason.
    QVERIFY(!fresh.openPath(dir.filePath("missing.png"), &error));
    QVERIFY2(error.contains("does not exist"), qPrintable(error));
    QFile plain(dir.filePath("plain.txt"));
    QVERIFY(plain.open(QIODevice::WriteOnly) && plain.write("not a picture") > 0);
    plain.close();
    QVERIFY(!fresh.openPath(dir.filePath("plain.txt"), &error));
    QVERIFY(!error.isEmpty());
}

#include "tst_mainwindow.moc"

// A FLUX.1 model folder (the small fixture with the published layout) through the real widgets:
// opening it shows the prompt box, typed text is counted per tokenizer, a long prompt is marked
// as cut, and a run with the typed prompt and size decodes the autoencoder's image into the lane.
void TestMainWindow::promptBoxRunsAFluxCheckpoint() {
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 1);
    QVERIFY(settle(window));
    PromptBox* prompt = window.settingsPanel()->promptBox();
    QVERIFY(prompt->isHidden());
    // A small image, so that the first run (which starts as the model is chosen) is quick.
    prompt->widthBox()->setValue(48);
    prompt->heightBox()->setValue(32);
    window.lane(0)->stepsBox()->setValue(2);
    const QString checkpoint = QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/fixtures/flux/schnell");
    QVERIFY(window.openCheckpoint(checkpoint));
    QVERIFY(!prompt->isHidden());
    QVERIFY(prompt->guidanceBox()->isHidden());  // [schnell] has no guidance input
    prompt->promptEdit()->setFocus();
    QTest::keyClicks(prompt->promptEdit(), "a cat");
    prompt->recount();
    QVERIFY2(prompt->countsLabel()->text().contains("CLIP-L 2/75"), qPrintable(prompt->countsLabel()->text()));
    QVERIFY(prompt->countsLabel()->text().contains("T5"));
    QVERIFY(settle(window));
    QVERIFY2(window.lane(0)->hasResult(), qPrintable(window.lane(0)->metricsText()));
    QCOMPARE(window.lane(0)->canvas()->states().front().size(), QSize(48, 32));
    QVERIFY(window.lane(0)->frames().back().final);
    const RunSettings& settings = window.lane(0)->runSettings();
    QCOMPARE(settings.text.prompt, std::string("a cat"));
    const QString folder = QDir(QCoreApplication::applicationDirPath()).filePath("screenshots");
    QDir().mkpath(folder);
    QVERIFY(window.grab().save(folder + "/flux-prompt.png"));
    QCOMPARE(settings.text.width, 48);
    // A prompt past CLIP's 75 tokens: the count turns red and the words past the limit are struck.
    QString longPrompt;
    for (int i = 0; i < 40; ++i) longPrompt += QStringLiteral("a photo of a cat ");
    prompt->promptEdit()->setPlainText(longPrompt);
    prompt->recount();
    QVERIFY2(prompt->countsLabel()->text().contains("(cut)"), qPrintable(prompt->countsLabel()->text()));
    QCOMPARE(prompt->promptEdit()->extraSelections().size(), 1);
    QVERIFY(prompt->promptEdit()->extraSelections().front().format.fontStrikeOut());
    QVERIFY(settle(window));
    window.close();
}

// SD3: opening the folder sets the lanes to its card (shift:3, 40 steps, cfg 5), the negative prompt
// shows, and the typed prompts reach the run with the lane's guidance.
namespace {

// A safetensors file of float32 tensors, written out by hand: {name, shape, values}.
struct NamedValues {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> values;
};
bool writeTensors(const QString& path, const std::vector<NamedValues>& tensors) {
    QJsonObject header;
    QByteArray data;
    for (const NamedValues& tensor : tensors) {
        QJsonArray shape;
        for (const int64_t size : tensor.shape) shape.append(qint64(size));
        const qint64 begin = data.size();
        data.append(reinterpret_cast<const char*>(tensor.values.data()), qsizetype(tensor.values.size() * sizeof(float)));
        header[QString::fromStdString(tensor.name)] =
            QJsonObject{{"dtype", "F32"}, {"shape", shape}, {"data_offsets", QJsonArray{begin, qint64(data.size())}}};
    }
    QByteArray json = QJsonDocument(header).toJson(QJsonDocument::Compact);
    while (json.size() % 8 != 0) json.append(' ');
    QByteArray bytes(8, '\0');
    qToLittleEndian<quint64>(quint64(json.size()), bytes.data());
    QFile file(path);
    return file.open(QIODevice::WriteOnly) && file.write(bytes + json + data) == bytes.size() + json.size() + data.size();
}

}  // namespace

// A bundle conditioned by tensors: the window offers its two files, is guided towards them
// without a class, and one Euler step from pure noise lands on m_u + w (m_c - m_u).
void TestMainWindow::conditioningFilesGuideABundle() {
    QTemporaryDir dir;
    qputenv("FLOWSCOPE_TRUST_LIST", dir.filePath("trusted-models").toUtf8());
    QVERIFY(writeTensors(dir.filePath("cond.safetensors"), {{"mean", {1, 6, 6}, std::vector<float>(36, 0.2f)},
                                                            {"std", {1}, {0.4f}}}));
    QVERIFY(writeTensors(dir.filePath("uncond.safetensors"), {{"mean", {1, 6, 6}, std::vector<float>(36, -0.1f)},
                                                              {"std", {1}, {0.3f}}}));
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 2);
    QVERIFY(settle(window));
    SettingsPanel* panel = window.settingsPanel();
    QVERIFY(!panel->conditioningEdit()->isVisible());
    {
        TrustAnswer trust("trustButton");
        QVERIFY(window.openBundle(kBundles + "gauss-conditioned"));
    }
    QVERIFY(settle(window));
    QVERIFY(panel->conditioningEdit()->isVisible());
    QCOMPARE(panel->conditionBox()->itemText(0), QString("the conditioning tensors"));
    LaneView* lane = window.lane(0);
    QVERIFY(lane->guidanceBar()->isEnabled());
    lane->solverBox()->setCurrentText("euler");
    lane->stepsBox()->setValue(1);
    lane->guidanceBar()->methodBox()->setCurrentText("cfg");
    lane->guidanceBar()->scaleBox()->setValue(3.0);
    panel->conditioningEdit()->setText(dir.filePath("cond.safetensors"));
    panel->unconditioningEdit()->setText(dir.filePath("uncond.safetensors"));
    QVERIFY(settle(window));
    QVERIFY2(lane->hasResult(), qPrintable(lane->metricsText()));
    QCOMPARE(lane->runSettings().text.unconditioning, dir.filePath("uncond.safetensors").toStdString());
    for (const float value : lane->result().final.values) QVERIFY2(std::abs(value - 0.8f) < 1e-5f, qPrintable(QString::number(value)));
    QVERIFY(panel->grab().save(QDir(QCoreApplication::applicationDirPath()).filePath("screenshots/conditioning-rows.png")));
    // A file that does not fit is refused in the lane, in words.
    panel->unconditioningEdit()->setText(dir.filePath("missing.safetensors"));
    QVERIFY(settle(window));
    QVERIFY2(lane->statusText().contains("is not a file"), qPrintable(lane->statusText()));
    // Other models hide the rows and run without the files.
    useModel(window, "gmm:8gaussians", 2);
    QVERIFY(settle(window));
    QVERIFY(!panel->conditioningEdit()->isVisible());
    QVERIFY2(window.lane(0)->hasResult(), qPrintable(window.lane(0)->metricsText()));
    window.close();
}

// The Sweep tab's evaluate figures against w: the shipped classifier's accuracy, the Frechet
// distance with its floor, diversity and straightness, a point per selected scale.
void TestMainWindow::sweepMeasuresGuidanceAgainstW() {
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 2);
    QVERIFY(settle(window));
    SweepView* sweep = window.sweepView();
    sweep->setBy(SweepView::By::Guidance);
    // 2-D models have no classifier: the button rests and says why.
    QVERIFY(!sweep->measureButton()->isEnabled());
    QVERIFY2(sweep->measureStatus()->text().contains("Fashion-MNIST"), qPrintable(sweep->measureStatus()->text()));
    useModel(window, "fashion-mnist:2000", 2);
    QVERIFY(!sweep->measureButton()->isEnabled());
    window.settingsPanel()->conditionBox()->setCurrentText("Trouser");
    QVERIFY(settle(window));
    QVERIFY(sweep->measureButton()->isEnabled());
    sweep->setSelectedItems({"1", "3"});
    auto* samples = sweep->findChild<QSpinBox*>("measureSamplesBox");
    auto* steps = sweep->findChild<QSpinBox*>("measureStepsBox");
    QVERIFY(samples && steps);
    samples->setValue(samples->minimum());
    steps->setValue(4);
    sweep->measureButton()->click();
    QVERIFY(sweep->isMeasuring());
    QTRY_VERIFY_WITH_TIMEOUT(!sweep->isMeasuring() && sweep->measureStatus()->text().startsWith("done"), kRunTimeoutMs);
    const auto& rows = sweep->figures()->rows();
    QCOMPARE(rows.size(), size_t(2));
    QCOMPARE(rows.front().cfg, 1.0);
    QCOMPARE(rows.back().cfg, 3.0);
    for (const auto& row : rows) {
        QVERIFY(row.classAccuracy >= 0.0 && row.classAccuracy <= 1.0);
        QVERIFY(row.frechet > 0.0 && row.diversity > 0.0);
    }
    // The exact denoiser of one class draws that class: the classifier names it most of the time.
    QVERIFY2(rows.front().classAccuracy > 0.5, qPrintable(QString::number(rows.front().classAccuracy)));
    for (int figure = 0; figure < 4; ++figure) {
        const auto series = sweep->figures()->chart(figure)->chart()->series();
        QVERIFY(!series.isEmpty());
        QCOMPARE(static_cast<QLineSeries*>(series.front())->count(), 2);
    }
    // The Frechet chart also draws the real images' floor.
    QCOMPARE(sweep->figures()->chart(1)->chart()->series().size(), 2);
    const QString folder = QDir(QCoreApplication::applicationDirPath()).filePath("screenshots");
    QDir().mkpath(folder);
    sweep->resize(1400, 700);
    QVERIFY(sweep->grab().save(folder + "/sweep-measure.png"));
}

// A FLUX.1 lane beside SD3 lanes: the same prompt, seed and noise, each lane as its card says.
void TestMainWindow::laneRunsAnotherCheckpoint() {
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 1);
    QVERIFY(settle(window));
    PromptBox* prompt = window.settingsPanel()->promptBox();
    prompt->widthBox()->setValue(64);
    prompt->heightBox()->setValue(64);
    const QString fluxPath = QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/fixtures/flux/schnell");
    const QString sd3Path = QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/fixtures/sd3/sd3.5_medium");
    // Every change below lands before the debounced run starts, so only two-step runs are made
    // (the cards' 40 SD3 steps would take minutes under the sanitizers).
    QVERIFY(window.openCheckpoint(fluxPath));
    QVERIFY(window.openCheckpoint(sd3Path));
    window.settingsPanel()->setLaneCount(3);
    LaneView* flux = window.lane(2);
    QVERIFY(flux->modelBox()->isVisible());
    const QString fluxSpec = "checkpoint:" + QFileInfo(fluxPath).absoluteFilePath();
    const int choice = flux->modelBox()->findData(fluxSpec);
    QVERIFY2(choice > 0, qPrintable(fluxSpec));
    flux->modelBox()->setCurrentIndex(choice);
    // The lane takes [schnell]'s card, unguided; the SD3 lanes keep theirs.
    QCOMPARE(flux->scheduleBox()->currentText(), QString("shift:1"));
    QCOMPARE(flux->stepsBox()->value(), 4);
    QVERIFY(!flux->guidanceBar()->isEnabled());
    QVERIFY(window.lane(0)->guidanceBar()->isEnabled());
    for (int i = 0; i < window.laneCount(); ++i) window.lane(i)->stepsBox()->setValue(2);
    QTest::keyClicks(prompt->promptEdit(), "a cat");
    QVERIFY(settle(window));
    for (int i = 0; i < window.laneCount(); ++i) {
        QVERIFY2(window.lane(i)->hasResult(), qPrintable(window.lane(i)->statusText()));
    }
    QCOMPARE(flux->runSettings().model, fluxSpec);
    QCOMPARE(flux->runSettings().text.prompt, std::string("a cat"));
    QCOMPARE(window.lane(0)->runSettings().model, "checkpoint:" + QFileInfo(sd3Path).absoluteFilePath());
    const QString folder = QDir(QCoreApplication::applicationDirPath()).filePath("screenshots");
    QDir().mkpath(folder);
    QVERIFY(window.grab().save(folder + "/lane-models.png"));
    // Both families' latents are 16 x H/8 x W/8 drawn from the same seed: the same start.
    const auto& a = window.lane(0)->result().trajectory;
    const auto& b = flux->result().trajectory;
    QVERIFY(!a.values.empty() && !b.values.empty());
    const size_t first = a.values.size() / size_t(a.shape.front());
    QVERIFY(std::equal(a.values.begin(), a.values.begin() + qsizetype(first), b.values.begin()));
    // A model that is no checkpoint takes every lane back.
    useModel(window, "gmm:8gaussians", 1);
    QVERIFY(settle(window));
    QVERIFY(!flux->modelBox()->isVisible());
    QVERIFY(flux->ownModel().isEmpty());
    QCOMPARE(flux->runSettings().model, QString("gmm:8gaussians"));
    window.close();
}

void TestMainWindow::negativePromptGuidesAnSd3Checkpoint() {
    MainWindow window;
    window.show();
    useModel(window, "gmm:8gaussians", 1);
    QVERIFY(settle(window));
    PromptBox* prompt = window.settingsPanel()->promptBox();
    prompt->widthBox()->setValue(64);
    prompt->heightBox()->setValue(64);
    QVERIFY(window.openCheckpoint(QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/fixtures/sd3/sd3.5_medium")));
    QVERIFY(!prompt->negativeEdit()->isHidden());
    QVERIFY(prompt->guidanceBox()->isHidden());
    // The fixture's position table covers 128 px a side: the size boxes offer no more.
    QCOMPARE(prompt->widthBox()->maximum(), 128);
    LaneView* lane = window.lane(0);
    QCOMPARE(lane->stepsBox()->value(), 40);
    QCOMPARE(lane->scheduleBox()->currentText(), QString("shift:3"));
    QVERIFY(lane->guidanceBar()->isEnabled());
    QVERIFY(lane->guidanceBar()->settings().method == flowscope::core::GuidanceMethod::Cfg);
    QCOMPARE(lane->guidanceBar()->settings().scale, 5.0);
    for (int i = 0; i < window.laneCount(); ++i) window.lane(i)->stepsBox()->setValue(3);
    prompt->promptEdit()->setFocus();
    QTest::keyClicks(prompt->promptEdit(), "a cat");
    QTest::keyClicks(prompt->negativeEdit(), "blurry");
    prompt->recount();
    QVERIFY2(prompt->countsLabel()->text().contains("CLIP-G 2/75"), qPrintable(prompt->countsLabel()->text()));
    // What the model needs in memory shows before anything loads.
    QVERIFY2(prompt->memoryLabel()->text().startsWith("Needs about") && prompt->memoryLabel()->text().contains("float32"),
             qPrintable(prompt->memoryLabel()->text()));
    QVERIFY(settle(window));
    QVERIFY2(lane->hasResult(), qPrintable(lane->metricsText()));
    QCOMPARE(lane->canvas()->states().front().size(), QSize(64, 64));
    const RunSettings& settings = lane->runSettings();
    QCOMPARE(settings.text.prompt, std::string("a cat"));
    QCOMPARE(settings.text.negativePrompt, std::string("blurry"));
    QVERIFY(settings.guidance.method == flowscope::core::GuidanceMethod::Cfg);
    QCOMPARE(settings.guidance.scale, 5.0);
    QCOMPARE(lane->result().nfe, 3);
    const QString folder = QDir(QCoreApplication::applicationDirPath()).filePath("screenshots");
    QDir().mkpath(folder);
    QVERIFY(window.grab().save(folder + "/sd3-prompt.png"));
    // FLUX.1 has no negative prompt: the box hides again.
    QVERIFY(window.openCheckpoint(QStringLiteral(FLOWSCOPE_SOURCE_DIR "/resources/fixtures/flux/schnell")));
    QVERIFY(prompt->negativeEdit()->isHidden());
    QVERIFY(!window.lane(0)->guidanceBar()->isEnabled());
    QVERIFY(settle(window));
    // The estimate follows the Settings' device: a GPU weighs bfloat16 against its free memory
    // (unknown on a machine without one), the CPU float32 against the machine's.
    QComboBox* device = window.settingsPanel()->deviceBox();
    device->setCurrentText("cuda");
    QVERIFY2(prompt->memoryLabel()->text().contains("the GPU") && prompt->memoryLabel()->text().contains("bfloat16"),
             qPrintable(prompt->memoryLabel()->text()));
    device->setCurrentText("cpu");
    QVERIFY2(prompt->memoryLabel()->text().contains("on the CPU") && prompt->memoryLabel()->text().contains("float32"),
             qPrintable(prompt->memoryLabel()->text()));
    QVERIFY(settle(window));
    window.close();
}
