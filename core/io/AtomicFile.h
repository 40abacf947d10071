#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace flowscope::core {

// Writes a file so that readers only ever see the old file or the complete new one: the content
// goes to a temporary file in the same folder, is flushed to disk, then renamed over the target.
// On any failure the temporary file is removed and std::runtime_error says why.
void writeFileAtomically(const std::string& path, const std::function<void(std::ostream&)>& write);
void writeFileAtomically(const std::string& path, const std::string& bytes);

// Several files written as one: add() writes each to a temporary file beside its target (and
// throws, as writeFileAtomically, when it cannot); commit() writes devices and pipes, then renames
// every temporary file into place. A transaction destroyed before commit() leaves every target as
// it was, so a failure or a cancel between files leaves all of the old files or none of them.
class FileTransaction {
public:
    FileTransaction() = default;
    FileTransaction(const FileTransaction&) = delete;
    FileTransaction& operator=(const FileTransaction&) = delete;
    ~FileTransaction();

    void add(const std::string& path, const std::string& bytes);
    void commit();

private:
    struct Staged {
        std::string requested;  // as the user named it
        std::string path;       // after symbolic links
        std::string temporary;  // empty for devices and pipes, written in place at commit
        std::string bytes;      // for devices and pipes only
    };
    std::vector<Staged> m_files;
};

// The file a path names after following symbolic links (also dangling ones): where a write to it
// lands. Throws std::runtime_error for a link loop.
std::string resolveLinks(const std::string& path);

// Throws std::runtime_error, saying why, when a file could not be written at `path` now (checked
// by making and removing a temporary file beside it), so a long job can refuse before it runs.
void checkCanWrite(const std::string& path);

// The permissions a file written in place of `path` should get: the existing file's, or 0666
// less the process umask for a new file.
unsigned modeForReplacement(const std::string& path);

}  // namespace flowscope::core
