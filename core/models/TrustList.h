#pragma once

#include <string>

namespace flowscope::core {

// TorchScript files are programs: loading one runs its code, and LibTorch has no safe mode for
// it. FlowScope loads one only when the user has said they trust that exact file. The list of
// trusted files is shared by the app and the CLI and written in sha256sum's format
// ("<64 hex digits>  <file>" per line), so it can be read and edited by hand.
class TrustList {
public:
    // $FLOWSCOPE_TRUST_LIST if set, else $XDG_CONFIG_HOME/flowscope/trusted-models (XDG_CONFIG_HOME
    // defaulting to ~/.config).
    static std::string defaultPath();

    explicit TrustList(std::string path = defaultPath());

    const std::string& path() const { return m_path; }
    // Reads the file each time, so a hash trusted in the app is seen by a CLI run at once.
    // A missing file trusts nothing; lines that are not "<hash>  <file>" are ignored.
    bool contains(const std::string& sha256) const;
    // Adds the hash (with the file name as a reminder) unless it is there; the list is rewritten
    // atomically and its folder created. Throws std::runtime_error when it cannot be written.
    void add(const std::string& sha256, const std::string& file) const;

private:
    std::string m_path;
};

bool isSha256Hex(const std::string& text);

}  // namespace flowscope::core
