#pragma once

#include <QDir>
#include <QFileInfo>
#include <QString>

namespace flowscope::ui {

// Where a file dialog may open for `folder`: the folder itself, or its nearest existing parent,
// or the home folder for system folders (/proc, /sys, /dev), where Qt's dialog can block for good
// reading a file such as /proc/kmsg to learn its type.
inline QString safeDialogFolder(const QString& folder) {
    QString path = folder.isEmpty() ? QString() : QDir::cleanPath(QDir(folder).absolutePath());
    for (const char* system : {"/proc", "/sys", "/dev"}) {
        if (path == system || path.startsWith(QString(system) + '/')) return QDir::homePath();
    }
    while (!path.isEmpty() && !QFileInfo(path).isDir()) {
        const QString parent = QFileInfo(path).path();
        if (parent == path) break;
        path = parent;
    }
    return path.isEmpty() || !QFileInfo(path).isDir() || path == "/" ? QDir::homePath() : path;
}

}  // namespace flowscope::ui
