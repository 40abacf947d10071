#pragma once

#include <string>
#include <utility>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "core/Engine.h"

namespace flowscope::media {

// Engine-space values ([-1, 1]) to 8-bit: clamp, then round((x + 1) * 127.5).
cv::Mat sampleToImage(const core::HostArray& batch, int64_t index);

// The images of a batch [B, C, H, W] in a grid (columns 0 = square-ish), 2-pixel gaps, RGB.
cv::Mat makeImageGrid(const core::HostArray& batch, int columns = 0, int scale = 1);

// A grid of images given row by row (each cell an RGB or gray image of the same size).
cv::Mat tileImages(const std::vector<std::vector<cv::Mat>>& rows, int gap = 2);

// 2-D samples as a scatter plot: the model's final points, optionally their trajectories
// [T, B, 2] as polylines, and reference points (the dataset or mixture means) in grey.
cv::Mat renderScatter(const core::HostArray& finalPoints, const core::HostArray* trajectory,
                      const core::HostArray* reference, int size = 512);

// PNG bytes with tEXt chunks (key, value) inserted after the header.
std::string encodePng(const cv::Mat& rgb, const std::vector<std::pair<std::string, std::string>>& text = {});
// Writes a PNG atomically (temporary file, then rename); throws std::runtime_error with the reason.
void writePng(const std::string& path, const cv::Mat& rgb,
              const std::vector<std::pair<std::string, std::string>>& text = {});
// The tEXt chunks of a PNG file's bytes.
std::vector<std::pair<std::string, std::string>> readPngText(const std::string& bytes);

}  // namespace flowscope::media
