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

}  // namespace flowscope::core
