// flowscope: the desktop application. All of it lives in ui/; this only starts it.
#include <cstdio>
#include <cstdlib>

#include <QApplication>
#include <QCommandLineParser>
#include <QIcon>
#include <QScreen>
#include <QStatusBar>
#include <QStringList>

#include "core/api/Engine.h"
#include "ui/MainWindow.h"
#include "ui/WorkerThread.h"

namespace {

void describeApplication() {
    QCoreApplication::setOrganizationName("FlowScope");
    QCoreApplication::setApplicationName("FlowScope");
    QCoreApplication::setApplicationVersion(QString::fromStdString(flowscope::core::Engine::version()));
}

// The arguments, read before the window's application exists, so that --help, --version and a
// mistake answer in a terminal without a display (process() prints and exits for those).
QStringList readArguments(int argc, char** argv) {
    QCoreApplication terminal(argc, argv);
    describeApplication();
    QCommandLineParser parser;
    parser.setApplicationDescription(
        "Watch flow-matching and diffusion models turn noise into images, step by step.\n"
        "flowscope-cli runs the same engine without a window.");
    parser.addHelpOption();
    parser.addVersionOption();
    parser.addPositionalArgument("path", "A PNG FlowScope exported (its run is restored and rerun), or a bundle "
                                         "folder (opened as the model).",
                                 "[PNG|DIR]");
    parser.process(terminal);
    if (parser.positionalArguments().size() > 1) {
        std::fprintf(stderr, "flowscope: give at most one PNG or bundle folder (see flowscope --help)\n");
        std::exit(2);
    }
    return parser.positionalArguments();
}

}  // namespace

int main(int argc, char** argv) {
    const QStringList paths = readArguments(argc, argv);
    QApplication app(argc, argv);
    describeApplication();
    QApplication::setApplicationDisplayName("FlowScope");
    QApplication::setDesktopFileName("org.flowscope.FlowScope");
    QApplication::setWindowIcon(
        QIcon::fromTheme("org.flowscope.FlowScope", QIcon(":/org.flowscope.FlowScope.svg")));
    int code = 0;
    {
        flowscope::ui::MainWindow window;
        if (!window.restoredGeometry()) {
            window.resize(flowscope::ui::MainWindow::firstLaunchSize(window.screen()->availableGeometry().size()));
        }
        window.show();
        QString error;
        if (!paths.isEmpty() && !window.openPath(paths.front(), &error) && !error.isEmpty()) {
            window.statusBar()->showMessage(error);
        }
        code = QApplication::exec();
    }
    // Closing let go of an engine job that did not stop in time (see WorkerThread): end now,
    // without the static destructors that its thread may still be using.
    if (flowscope::ui::WorkerThread::abandonedCount() > 0) {
        std::fflush(nullptr);
        std::_Exit(code);
    }
    return code;
}
