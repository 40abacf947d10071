// Not compiled: the fixture that tests/CMakeLists.txt hands to ui/CheckEngineIncludes.cmake to
// show that it refuses a UI file reaching past the facade.
#include "core/api/Engine.h"
#include "core/models/Bundle.h"
