#include "core/media/ImageWriter.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <zlib.h>

#include "core/io/AtomicFile.h"

namespace flowscope::media {
namespace {

uint32_t readBigEndian(const std::string& bytes, size_t offset) {
    return (uint32_t(uint8_t(bytes[offset])) << 24) | (uint32_t(uint8_t(bytes[offset + 1])) << 16) |
           (uint32_t(uint8_t(bytes[offset + 2])) << 8) | uint32_t(uint8_t(bytes[offset + 3]));
}

void appendBigEndian(std::string& bytes, uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes += static_cast<char>((value >> shift) & 0xff);
}

// tEXt holds Latin-1, so text beyond ASCII (a prompt in another script, a path with accents)
// goes into an uncompressed iTXt chunk, which holds UTF-8; readers such as AUTOMATIC1111's and
// Qt's take either.
std::string textChunk(const std::string& key, const std::string& value) {
    const bool ascii = std::all_of(value.begin(), value.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    std::string body = (ascii ? "tEXt" : "iTXt") + key;
    body += '\0';
    // iTXt: not compressed, method 0, no language tag, no translated keyword.
    if (!ascii) body += std::string(4, '\0');
    body += value;
    std::string chunk;
    appendBigEndian(chunk, static_cast<uint32_t>(body.size() - 4));
    chunk += body;
    appendBigEndian(chunk, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size())));
    return chunk;
}

cv::Scalar rgb(int r, int g, int b) { return {double(r), double(g), double(b)}; }

}  // namespace

cv::Mat sampleToImage(const core::HostArray& batch, int64_t index) {
    if (batch.shape.size() != 4) throw std::invalid_argument("images need a [B, C, H, W] batch");
    const int channels = static_cast<int>(batch.shape[1]);
    const int height = static_cast<int>(batch.shape[2]);
    const int width = static_cast<int>(batch.shape[3]);
    const float* base = batch.values.data() + index * channels * height * width;
    cv::Mat image(height, width, CV_8UC3);
    for (int y = 0; y < height; ++y) {
        auto* row = image.ptr<uint8_t>(y);
        for (int x = 0; x < width; ++x) {
            for (int c = 0; c < 3; ++c) {
                const int source = channels == 1 ? 0 : std::min(c, channels - 1);
                row[3 * x + c] = valueToByte(base[(source * height + y) * width + x]);
            }
        }
    }
    return image;
}

cv::Mat tileImages(const std::vector<std::vector<cv::Mat>>& rows, int gap) {
    int cellW = 0, cellH = 0, columns = 0;
    for (const auto& row : rows) {
        columns = std::max<int>(columns, static_cast<int>(row.size()));
        for (const auto& cell : row) {
            cellW = std::max(cellW, cell.cols);
            cellH = std::max(cellH, cell.rows);
        }
    }
    const int width = columns * cellW + (columns + 1) * gap;
    const int height = static_cast<int>(rows.size()) * cellH + (static_cast<int>(rows.size()) + 1) * gap;
    cv::Mat canvas(std::max(height, 1), std::max(width, 1), CV_8UC3, rgb(24, 24, 28));
    for (size_t r = 0; r < rows.size(); ++r) {
        for (size_t c = 0; c < rows[r].size(); ++c) {
            cv::Mat cell = rows[r][c];
            if (cell.channels() == 1) cv::cvtColor(cell, cell, cv::COLOR_GRAY2RGB);
            cell.copyTo(canvas(cv::Rect(gap + int(c) * (cellW + gap), gap + int(r) * (cellH + gap), cell.cols, cell.rows)));
        }
    }
    return canvas;
}

cv::Mat makeImageGrid(const core::HostArray& batch, int columns, int scale) {
    const int count = static_cast<int>(batch.shape.at(0));
    if (columns <= 0) columns = static_cast<int>(std::ceil(std::sqrt(double(count))));
    std::vector<std::vector<cv::Mat>> rows;
    for (int i = 0; i < count; ++i) {
        if (i % columns == 0) rows.emplace_back();
        cv::Mat image = sampleToImage(batch, i);
        if (scale > 1) cv::resize(image, image, cv::Size(), scale, scale, cv::INTER_NEAREST);
        rows.back().push_back(image);
    }
    return tileImages(rows);
}

cv::Mat renderScatter(const core::HostArray& finalPoints, const core::HostArray* trajectory,
                      const core::HostArray* reference, int size) {
    cv::Mat canvas(size, size, CV_8UC3, rgb(250, 250, 250));
    constexpr double kExtent = 4.5;  // world units from the centre to the edge
    auto toPixel = [&](float x, float y) {
        return cv::Point2d((x / kExtent * 0.5 + 0.5) * size, (0.5 - y / kExtent * 0.5) * size);
    };
    cv::line(canvas, toPixel(-kExtent, 0), toPixel(kExtent, 0), rgb(225, 225, 225), 1, cv::LINE_AA);
    cv::line(canvas, toPixel(0, -kExtent), toPixel(0, kExtent), rgb(225, 225, 225), 1, cv::LINE_AA);
    if (reference) {
        const int64_t n = reference->shape.at(0);
        for (int64_t i = 0; i < n; ++i) {
            cv::circle(canvas, toPixel(reference->values[2 * i], reference->values[2 * i + 1]), 2,
                       rgb(190, 190, 190), cv::FILLED, cv::LINE_AA);
        }
    }
    const int64_t batch = finalPoints.shape.at(0);
    if (trajectory && trajectory->shape.size() == 3) {
        const int64_t steps = trajectory->shape[0];
        for (int64_t b = 0; b < batch; ++b) {
            std::vector<cv::Point> line;
            for (int64_t s = 0; s < steps; ++s) {
                const float* p = trajectory->values.data() + (s * batch + b) * 2;
                const cv::Point2d q = toPixel(p[0], p[1]);
                line.emplace_back(int(std::lround(q.x)), int(std::lround(q.y)));
            }
            cv::polylines(canvas, line, false, rgb(70, 130, 200), 1, cv::LINE_AA);
            cv::circle(canvas, line.front(), 2, rgb(120, 120, 120), cv::FILLED, cv::LINE_AA);
        }
    }
    for (int64_t b = 0; b < batch; ++b) {
        cv::circle(canvas, toPixel(finalPoints.values[2 * b], finalPoints.values[2 * b + 1]), 3,
                   rgb(220, 80, 40), cv::FILLED, cv::LINE_AA);
    }
    return canvas;
}

std::string encodePng(const cv::Mat& image, const std::vector<std::pair<std::string, std::string>>& text) {
    cv::Mat bgr;
    if (image.channels() == 3) {
        cv::cvtColor(image, bgr, cv::COLOR_RGB2BGR);
    } else if (image.channels() == 4) {
        cv::cvtColor(image, bgr, cv::COLOR_RGBA2BGRA);
    } else {
        bgr = image;
    }
    std::vector<uchar> buffer;
    if (!cv::imencode(".png", bgr, buffer)) throw std::runtime_error("PNG encoding failed");
    std::string bytes(buffer.begin(), buffer.end());
    if (text.empty()) return bytes;
    // Signature (8) + IHDR chunk (4 length + 4 type + 13 data + 4 CRC) = 33 bytes.
    constexpr size_t kAfterHeader = 33;
    std::string chunks;
    for (const auto& [key, value] : text) chunks += textChunk(key, value);
    bytes.insert(kAfterHeader, chunks);
    return bytes;
}

void writePng(const std::string& path, const cv::Mat& image,
              const std::vector<std::pair<std::string, std::string>>& text) {
    core::writeFileAtomically(path, encodePng(image, text));
}

std::vector<std::pair<std::string, std::string>> readPngText(const std::string& bytes) {
    std::vector<std::pair<std::string, std::string>> text;
    if (bytes.size() < 8 || bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return text;
    size_t offset = 8;
    while (offset + 12 <= bytes.size()) {
        const uint32_t length = readBigEndian(bytes, offset);
        if (length > bytes.size() - offset - 12) break;
        const std::string type = bytes.substr(offset + 4, 4);
        if (type == "tEXt") {
            const std::string body = bytes.substr(offset + 8, length);
            const auto split = body.find('\0');
            if (split != std::string::npos) text.emplace_back(body.substr(0, split), body.substr(split + 1));
        }
        if (type == "iTXt") {  // uncompressed ones only: key, flag 0, method, language, translated key
            const std::string body = bytes.substr(offset + 8, length);
            const auto keyEnd = body.find('\0');
            if (keyEnd != std::string::npos && keyEnd + 3 <= body.size() && body[keyEnd + 1] == '\0') {
                const auto languageEnd = body.find('\0', keyEnd + 3);
                const auto translatedEnd =
                    languageEnd == std::string::npos ? std::string::npos : body.find('\0', languageEnd + 1);
                if (translatedEnd != std::string::npos) {
                    text.emplace_back(body.substr(0, keyEnd), body.substr(translatedEnd + 1));
                }
            }
        }
        if (type == "IEND") break;
        offset += 12 + length;
    }
    return text;
}

}  // namespace flowscope::media
