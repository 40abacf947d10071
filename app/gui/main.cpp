// flowscope: the desktop application. All of it lives in ui/; this only starts it.
#include <QApplication>
#include <QIcon>

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
    window.resize(1280, 800);
    window.show();
    return QApplication::exec();
}
