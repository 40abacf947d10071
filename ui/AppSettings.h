#pragma once

#include <memory>

#include <QString>

class QSettings;

namespace flowscope::ui {

// Where the window keeps its settings: $XDG_CONFIG_HOME/flowscope/flowscope.conf (by default
// ~/.config/flowscope/), the folder that holds the trusted-models list (core/models/TrustList.cpp), so
// all of FlowScope's configuration lives in one folder.
class AppSettings {
public:
    static QString folder();
    static QString filePath();
    // The settings file. While it does not exist, the file Qt's default place held for earlier
    // versions (~/.config/FlowScope/FlowScope.conf) is copied in, so users keep their settings.
    static std::unique_ptr<QSettings> open();
    // Empty when the settings can be saved; otherwise why not, in words for the user.
    static QString unwritableReason();
};

}  // namespace flowscope::ui
