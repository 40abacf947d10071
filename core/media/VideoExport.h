#pragma once

#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace flowscope::media {

// Writes RGB frames of one size as a video, atomically (a temporary file in the same folder,
// renamed over the target when complete). The container follows the extension: .mp4 (H.264
// where the installed FFmpeg has an encoder, MPEG-4 Part 2 otherwise) or .avi (MJPEG).
// Throws std::runtime_error with the reason. GIF is refused: OpenCV's FFmpeg backend (4.6 on
// Debian 12) cannot open FFmpeg's GIF encoder, which needs paletted frames.
void writeVideo(const std::string& path, const std::vector<cv::Mat>& rgbFrames, double fps);

// The same, one frame at a time, so a long run never sits in memory whole. Nothing appears at
// `path` until commit(); destroying an uncommitted writer removes its temporary file.
class VideoFileWriter {
public:
    VideoFileWriter(const std::string& path, int width, int height, double fps);  // throws
    ~VideoFileWriter();
    VideoFileWriter(const VideoFileWriter&) = delete;
    VideoFileWriter& operator=(const VideoFileWriter&) = delete;
    void write(const cv::Mat& rgb);  // throws on a frame of another size or type
    void commit();                   // throws

private:
    struct State;
    State* m_state;
};

// The extensions writeVideo accepts, for file dialogs.
std::vector<std::string> videoExtensions();

}  // namespace flowscope::media
