#pragma once

// Reading files that strangers name: only regular files (a FIFO would block forever, a device such
// as /dev/zero never ends, a folder is no data), never more than a stated size, and stopping
// promptly when the user cancels. No LibTorch, so the file parsers that use it can be fuzzed.

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace flowscope::core {

// A file that cannot be read as data; the message names the file and says what to do.
class FileReadError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Throws FileReadError unless `path` (after symbolic links) is a regular file of at most
// `maxBytes`; returns its size. `what` names the file's role in messages ("the checkpoint").
uint64_t checkRegularFile(const std::string& path, uint64_t maxBytes, const std::string& what);

// The whole file, checked as above. The file is opened without blocking (a FIFO that appears
// between the check and the open is still refused) and read in blocks; `*cancel` is checked
// between blocks and throws CancelledError.
std::string readRegularFile(const std::string& path, uint64_t maxBytes, const std::string& what,
                            const std::atomic<bool>* cancel = nullptr);

// The most FlowScope reads of a data file into memory (weights, arrays): half of this machine's
// memory, so that a wrong file is refused in words instead of ending in an allocation failure.
uint64_t memoryReadLimit();

// "12 MB", "3.2 GB": sizes in messages.
std::string describeBytes(double bytes);

}  // namespace flowscope::core
