// flowscope: the desktop application. All of it lives in ui/; this only starts it.
#include <QApplication>
#include <QIcon>
#include <QScreen>

#include "ui/MainWindow.h"

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    QApplication::setOrganizationName("FlowScope");
    QApplication::setApplicationName("FlowScope");
    QApplication::setApplicationDisplayName("FlowScope");
    QApplication::setDesktopFileName("org.flowscope.FlowScope");
    QApplication::setWindowIcon(
        QIcon::fromTheme("org.flowscope.FlowScope", QIcon(":/org.flowscope.FlowScope.svg")));
    flowscope::ui::MainWindow window;
    if (!window.restoredGeometry()) {
        // First launch: 1280 x 800, or less on a smaller screen (room left for the title bar).
        const QSize screen = window.screen()->availableGeometry().size();
        window.resize(QSize(1280, 800).boundedTo(screen - QSize(0, 40)));
    }
    window.show();
    return QApplication::exec();
}
