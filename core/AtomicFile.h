#pragma once

#include <functional>
#include <ostream>
#include <string>

namespace flowscope::core {

// Writes a file so that readers only ever see the old file or the complete new one: the content
// goes to a temporary file in the same folder, is flushed to disk, then renamed over the target.
// On any failure the temporary file is removed and std::runtime_error says why.
void writeFileAtomically(const std::string& path, const std::function<void(std::ostream&)>& write);
void writeFileAtomically(const std::string& path, const std::string& bytes);

// The permissions a file written in place of `path` should get: the existing file's, or 0666
// less the process umask for a new file.
unsigned modeForReplacement(const std::string& path);

}  // namespace flowscope::core
