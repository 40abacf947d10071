#include "core/media/ImageDecoder.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string_view>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace flowscope::media {
namespace {

constexpr size_t kMaxFileBytes = 256ull << 20;

// Only the formats a folder of training images holds reach OpenCV: PNG, JPEG, BMP, TIFF, WebP and
// PNM, recognised by the same signatures OpenCV's own decoders check. OpenCV picks the first
// decoder whose signature matches, and these come before the exotic ones, so bytes never reach
// e.g. its DICOM reader (GDCM), which aborts the process on some malformed files.
bool isSupportedImage(const std::string& bytes) {
    auto startsWith = [&](std::string_view prefix, size_t offset = 0) {
        return bytes.size() >= offset + prefix.size() && bytes.compare(offset, prefix.size(), prefix) == 0;
    };
    // A file whose own decoder's stricter check fails falls through to the next decoders: never
    // let it reach the DICOM reader, whatever it starts with.
    if (startsWith("DICM", 128)) return false;
    if (startsWith("\x89PNG\r\n\x1a\n")) return true;
    if (startsWith("\xff\xd8\xff")) return true;
    if (startsWith("BM")) return true;
    if (startsWith(std::string_view("II*\0", 4)) || startsWith(std::string_view("MM\0*", 4))) return true;
    if (startsWith("RIFF") && startsWith("WEBP", 8)) return true;
    return bytes.size() >= 3 && bytes[0] == 'P' && bytes[1] >= '1' && bytes[1] <= '6' &&
           std::isspace(static_cast<unsigned char>(bytes[2]));
}

// Width and height as the file's header declares them, read before anything is decoded:
// OpenCV allocates the whole image from its header (a 3 MB PNG of zeros may declare 3 GB), and
// the limits it reads from OPENCV_IO_MAX_IMAGE_PIXELS take effect only when set before the
// library loads. Zero when the header cannot be read.
struct DeclaredSize {
    uint64_t width = 0;
    uint64_t height = 0;
};

uint32_t bigEndian(const std::string& bytes, size_t at, int count) {
    uint32_t value = 0;
    for (int i = 0; i < count; ++i) value = (value << 8) | static_cast<unsigned char>(bytes[at + i]);
    return value;
}

uint32_t littleEndian(const std::string& bytes, size_t at, int count) {
    uint32_t value = 0;
    for (int i = count - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[at + i]);
    return value;
}

DeclaredSize jpegSize(const std::string& bytes) {
    // Markers with a length run to the first start-of-frame (SOF0..SOF15 but DHT, JPG and DAC).
    size_t at = 2;
    while (at + 4 <= bytes.size()) {
        if (static_cast<unsigned char>(bytes[at]) != 0xFF) return {};
        const unsigned marker = static_cast<unsigned char>(bytes[at + 1]);
        if (marker == 0xFF) {
            ++at;  // fill byte
            continue;
        }
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
            at += 2;  // no length
            continue;
        }
        if (marker == 0xD9 || marker == 0xDA) return {};  // image end or scan before any frame
        const uint32_t length = bigEndian(bytes, at + 2, 2);
        if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
            if (at + 9 > bytes.size()) return {};
            return {bigEndian(bytes, at + 7, 2), bigEndian(bytes, at + 5, 2)};
        }
        if (length < 2) return {};
        at += 2 + length;
    }
    return {};
}

DeclaredSize tiffSize(const std::string& bytes) {
    if (bytes.size() < 8) return {};
    const bool little = bytes[0] == 'I';
    auto read = [&](size_t at, int count) {
        return little ? littleEndian(bytes, at, count) : bigEndian(bytes, at, count);
    };
    const uint64_t directory = read(4, 4);
    if (directory + 2 > bytes.size()) return {};
    const uint32_t entries = read(directory, 2);
    DeclaredSize size;
    for (uint32_t i = 0; i < entries && directory + 2 + 12 * (i + 1) <= bytes.size(); ++i) {
        const size_t entry = directory + 2 + 12 * i;
        const uint32_t tag = read(entry, 2);
        const uint32_t type = read(entry + 2, 2);
        if (tag != 256 && tag != 257) continue;
        const uint64_t value = type == 3 ? read(entry + 8, 2) : type == 4 ? read(entry + 8, 4) : 0;
        (tag == 256 ? size.width : size.height) = value;
    }
    return size;
}

DeclaredSize webpSize(const std::string& bytes) {
    if (bytes.size() < 30) return {};
    const std::string chunk = bytes.substr(12, 4);
    if (chunk == "VP8 ") return {littleEndian(bytes, 26, 2) & 0x3FFF, littleEndian(bytes, 28, 2) & 0x3FFF};
    if (chunk == "VP8L") {
        const uint32_t bits = littleEndian(bytes, 21, 4);
        return {(bits & 0x3FFF) + 1u, ((bits >> 14) & 0x3FFF) + 1u};
    }
    if (chunk == "VP8X") return {littleEndian(bytes, 24, 3) + 1u, littleEndian(bytes, 27, 3) + 1u};
    return {};
}

DeclaredSize pnmSize(const std::string& bytes) {
    // "P6", then width and height as decimal tokens, with '#' comments to the end of a line.
    size_t at = 2;
    uint64_t values[2] = {0, 0};
    for (uint64_t& value : values) {
        for (;;) {
            while (at < bytes.size() && std::isspace(static_cast<unsigned char>(bytes[at]))) ++at;
            if (at < bytes.size() && bytes[at] == '#') {
                while (at < bytes.size() && bytes[at] != '\n') ++at;
                continue;
            }
            break;
        }
        const size_t first = at;
        while (at < bytes.size() && std::isdigit(static_cast<unsigned char>(bytes[at])) && at - first < 10) {
            value = value * 10 + static_cast<uint64_t>(bytes[at] - '0');
            ++at;
        }
        if (at == first) return {};
    }
    return {values[0], values[1]};
}

DeclaredSize declaredSize(const std::string& bytes) {
    // isSupportedImage has matched the signature; each branch checks the length it reads.
    if (bytes[0] == '\x89') {
        if (bytes.size() < 24) return {};
        return {bigEndian(bytes, 16, 4), bigEndian(bytes, 20, 4)};
    }
    if (bytes[0] == '\xff') return jpegSize(bytes);
    if (bytes[0] == 'B') {
        if (bytes.size() < 26) return {};
        // BITMAPCOREHEADER (12 bytes) keeps 16-bit sizes; the later headers signed 32-bit ones,
        // a negative height meaning rows from the top.
        if (littleEndian(bytes, 14, 4) == 12) return {littleEndian(bytes, 18, 2), littleEndian(bytes, 20, 2)};
        const auto height = static_cast<int32_t>(littleEndian(bytes, 22, 4));
        return {littleEndian(bytes, 18, 4), static_cast<uint64_t>(height < 0 ? -int64_t(height) : int64_t(height))};
    }
    if (bytes[0] == 'I' || bytes[0] == 'M') return tiffSize(bytes);
    if (bytes[0] == 'R') return webpSize(bytes);
    return pnmSize(bytes);
}

// A PNG with only the chunks that make its pixels: the critical ones (upper-case first letter) and
// tRNS. OpenCV's PNG reader leaves libpng's warning handler at its default, which prints to
// stderr for ancillary chunks FlowScope ignores anyway (colour profiles, text with a bad CRC).
// Bytes that do not parse as chunks are returned as they are, for the decoder to refuse.
std::string withoutAncillaryChunks(const std::string& png) {
    std::string kept = png.substr(0, 8);
    size_t at = 8;
    while (at + 12 <= png.size()) {
        const uint64_t length = bigEndian(png, at, 4);
        if (length > png.size() - at - 12) return png;
        const std::string type = png.substr(at + 4, 4);
        if (std::isupper(static_cast<unsigned char>(type[0])) || type == "tRNS") kept.append(png, at, 12 + length);
        at += 12 + length;
    }
    return at == png.size() ? kept : png;
}

}  // namespace

bool imageSizeIsAcceptable(const std::string& bytes) {
    const DeclaredSize size = declaredSize(bytes);
    return size.width > 0 && size.height > 0 && size.width <= kMaxImageSide && size.height <= kMaxImageSide &&
           size.width * size.height <= kMaxImagePixels;
}

cv::Mat decodeWholeImage(const std::string& bytes) {
    if (bytes.empty() || bytes.size() > kMaxFileBytes || !isSupportedImage(bytes) || !imageSizeIsAcceptable(bytes)) {
        return {};
    }
    try {
        const std::string decodable = bytes[0] == '\x89' ? withoutAncillaryChunks(bytes) : bytes;
        const cv::Mat buffer(1, static_cast<int>(decodable.size()), CV_8U, const_cast<char*>(decodable.data()));
        cv::Mat image = cv::imdecode(buffer, cv::IMREAD_COLOR);
        if (image.empty() || image.type() != CV_8UC3) return {};
        cv::cvtColor(image, image, cv::COLOR_BGR2RGB);
        return image;
    } catch (const cv::Exception&) {
        return {};
    }
}

cv::Mat decodeSquareImage(const std::string& bytes, int resolution) {
    if (resolution < 1) return {};
    cv::Mat image = decodeWholeImage(bytes);
    if (image.empty()) return {};
    try {
        const int side = std::min(image.cols, image.rows);
        const cv::Rect crop((image.cols - side) / 2, (image.rows - side) / 2, side, side);
        cv::Mat resized;
        cv::resize(image(crop), resized, cv::Size(resolution, resolution), 0, 0,
                   side > resolution ? cv::INTER_AREA : cv::INTER_LINEAR);
        return resized;
    } catch (const cv::Exception&) {
        return {};
    }
}

}  // namespace flowscope::media
