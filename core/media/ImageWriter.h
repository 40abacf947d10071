#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "core/api/Engine.h"

namespace flowscope::media {

// Engine-space values ([-1, 1]) to 8-bit: clamp, then round((x + 1) * 127.5); NaN shows as black.
// The one mapping every picture FlowScope draws uses (the window's too).
inline uint8_t valueToByte(float value) {
    const float v = std::isnan(value) ? -1.0f : std::clamp(value, -1.0f, 1.0f);
    return static_cast<uint8_t>(std::lround((v + 1.0f) * 127.5f));
}

// One sample of a [B, C, H, W] batch as an RGB image (gray replicated), by valueToByte.
cv::Mat sampleToImage(const core::HostArray& batch, int64_t index);

// The images of a batch [B, C, H, W] in a grid (columns 0 = square-ish), 2-pixel gaps, RGB.
cv::Mat makeImageGrid(const core::HostArray& batch, int columns = 0, int scale = 1);

// A grid of images given row by row (each cell an RGB or gray image of the same size).
cv::Mat tileImages(const std::vector<std::vector<cv::Mat>>& rows, int gap = 2);

// 2-D samples as a scatter plot: the model's final points, optionally their trajectories
// [T, B, 2] as polylines, and reference points (the dataset or mixture means) in grey.
cv::Mat renderScatter(const core::HostArray& finalPoints, const core::HostArray* trajectory,
                      const core::HostArray* reference, int size = 512);

// How many reference points a run's scatter plot draws beneath it.
inline constexpr int kScatterReferencePoints = 1000;

// The picture of a run's final samples, as `flowscope-cli sample --out` writes it and the window
// exports it: `finalImage` [B, C, H, W] (the samples, or what a decoder made of them) in a grid,
// enlarged 4 times when under 64 pixels a side; or, for 2-D models (finalImage empty), the final
// points and their trajectory [T, B, 2] (when recorded) over the reference points of `model`.
cv::Mat runPicture(const std::string& model, const core::HostArray& finalImage, const core::HostArray& finalPoints,
                   const core::HostArray& trajectory);

// PNG bytes of an 8-bit grey, RGB or RGBA image with text chunks (key, value) inserted after the
// header: tEXt, or uncompressed iTXt (UTF-8) for values beyond ASCII.
std::string encodePng(const cv::Mat& rgb, const std::vector<std::pair<std::string, std::string>>& text = {});
// Writes a PNG atomically (temporary file, then rename); throws std::runtime_error with the reason.
void writePng(const std::string& path, const cv::Mat& rgb,
              const std::vector<std::pair<std::string, std::string>>& text = {});
// The text chunks of a PNG file's bytes: tEXt and uncompressed iTXt.
std::vector<std::pair<std::string, std::string>> readPngText(const std::string& bytes);

}  // namespace flowscope::media
