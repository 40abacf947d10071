// flowscope: the desktop application. All of it lives in ui/; this only starts it.
#include <cstdio>
#include <cstdlib>

#include <QApplication>
#include <QIcon>
#include <QScreen>

#include "ui/MainWindow.h"
#include "ui/WorkerThread.h"

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    QApplication::setOrganizationName("FlowScope");
    QApplication::setApplicationName("FlowScope");
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
