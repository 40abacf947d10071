// FlowScope's version, in a file of its own: the only one compiled with FLOWSCOPE_VERSION, so the
// shared precompiled header stays usable everywhere else, and without LibTorch.
#include "core/api/Engine.h"

#ifndef FLOWSCOPE_VERSION
#define FLOWSCOPE_VERSION "0.0.0"
#endif

namespace flowscope::core {

std::string Engine::version() { return FLOWSCOPE_VERSION; }

}  // namespace flowscope::core
