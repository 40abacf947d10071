#include "core/models/TrustList.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "core/io/AtomicFile.h"
#include "core/io/RegularFile.h"

namespace flowscope::core {
namespace {

// A list of hashes and names: a megabyte holds thousands of entries.
constexpr uint64_t kMaxTrustListBytes = 1 << 20;

std::string readAll(const std::string& path) {
    std::error_code missing;
    if (!std::filesystem::exists(path, missing)) return {};  // no list yet: nothing is trusted
    return readRegularFile(path, kMaxTrustListBytes, "the trusted-models list");
}

}  // namespace

bool isSha256Hex(const std::string& text) {
    if (text.size() != 64) return false;
    for (char c : text) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

std::string TrustList::defaultPath() {
    if (const char* explicitPath = std::getenv("FLOWSCOPE_TRUST_LIST"); explicitPath && *explicitPath) {
        return explicitPath;
    }
    std::filesystem::path config;
    if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg && *xdg) {
        config = xdg;
    } else if (const char* home = std::getenv("HOME"); home && *home) {
        config = std::filesystem::path(home) / ".config";
    } else {
        config = ".config";
    }
    return (config / "flowscope" / "trusted-models").string();
}

TrustList::TrustList(std::string path) : m_path(std::move(path)) {}

bool TrustList::contains(const std::string& sha256) const {
    std::istringstream lines(readAll(m_path));
    std::string line;
    while (std::getline(lines, line)) {
        if (line.size() >= 64 && line.compare(0, 64, sha256) == 0 && isSha256Hex(line.substr(0, 64)) &&
            (line.size() == 64 || line[64] == ' ')) {
            return true;
        }
    }
    return false;
}

void TrustList::add(const std::string& sha256, const std::string& file) const {
    if (!isSha256Hex(sha256)) throw std::invalid_argument("not a SHA-256 hash: '" + sha256 + "'");
    if (contains(sha256)) return;
    std::string text = readAll(m_path);
    if (!text.empty() && text.back() != '\n') text.push_back('\n');
    std::string name = file;
    for (char& c : name) {
        if (c == '\n' || c == '\r') c = ' ';
    }
    text += sha256 + "  " + name + "\n";
    const auto folder = std::filesystem::path(m_path).parent_path();
    std::error_code error;
    if (!folder.empty()) std::filesystem::create_directories(folder, error);
    if (error) throw std::runtime_error("cannot create '" + folder.string() + "': " + error.message());
    writeFileAtomically(m_path, text);
}

}  // namespace flowscope::core
