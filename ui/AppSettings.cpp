#include "ui/AppSettings.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QSettings>
#include <QStandardPaths>

namespace flowscope::ui {

QString AppSettings::folder() {
    // GenericConfigLocation is $XDG_CONFIG_HOME, or ~/.config without it: TrustList's rule.
    return QDir(QStandardPaths::writableLocation(QStandardPaths::GenericConfigLocation)).filePath("flowscope");
}

QString AppSettings::filePath() { return QDir(folder()).filePath("flowscope.conf"); }

std::unique_ptr<QSettings> AppSettings::open() {
    const bool fresh = !QFileInfo::exists(filePath());
    auto settings = std::make_unique<QSettings>(filePath(), QSettings::IniFormat);
    if (fresh) {
        // Qt's default place for the application's organisation and name.
        const QSettings earlier;
        const QStringList keys = earlier.allKeys();
        for (const QString& key : keys) settings->setValue(key, earlier.value(key));
        if (!keys.isEmpty()) settings->sync();
    }
    return settings;
}

QString AppSettings::unwritableReason() {
    const QString where = folder();
    if (!QDir().mkpath(where)) {
        return QCoreApplication::translate("AppSettings", "the folder %1 cannot be created").arg(where);
    }
    const QFileInfo file(filePath());
    if (file.exists() ? !file.isWritable() : !QFileInfo(where).isWritable()) {
        return QCoreApplication::translate("AppSettings", "%1 is read-only").arg(file.exists() ? file.filePath() : where);
    }
    return {};
}

}  // namespace flowscope::ui
