#pragma once

// Shared by the libFuzzer targets: an input is either accepted or rejected with a message; a
// rejection without one is a bug, reported by aborting so libFuzzer keeps the input.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace flowscope::fuzz {

inline void requireMessage(const std::exception& error) {
    if (std::string(error.what()).empty()) {
        std::fprintf(stderr, "an input was rejected without a message\n");
        std::abort();
    }
}

}  // namespace flowscope::fuzz
