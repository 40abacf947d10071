// The facade's name tables and checks, without LibTorch: front ends validate settings with them
// (and the settings parser's fuzz target links them) before any engine runs.
#include <algorithm>

#include "core/api/Engine.h"
#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/sampling/ProbabilityPath.h"
#include "core/sampling/Schedule.h"

namespace flowscope::core {

std::vector<std::string> Engine::names(NameKind kind) {
    switch (kind) {
        case NameKind::Path: return pathNames();
        case NameKind::Solver: return solverNames();
        case NameKind::Device: return deviceNames();
        case NameKind::Schedule: break;
    }
    std::vector<std::string> schedules = scheduleNames();
    std::replace(schedules.begin(), schedules.end(), std::string("shift:S"), std::string("shift:3"));
    return schedules;
}

std::string Engine::checkName(NameKind kind, const std::string& name) {
    try {
        switch (kind) {
            case NameKind::Path: makePath(name); break;
            case NameKind::Solver:
                if (std::find(solverNames().begin(), solverNames().end(), name) == solverNames().end()) {
                    throw UnknownNameError("solver", name, solverNames());
                }
                break;
            case NameKind::Schedule: parseSchedule(name); break;
            case NameKind::Device:
                if (std::find(deviceNames().begin(), deviceNames().end(), name) == deviceNames().end()) {
                    throw UnknownNameError("device", name, deviceNames());
                }
                break;
        }
    } catch (const std::exception& error) {
        return error.what();
    }
    return {};
}

}  // namespace flowscope::core
