#include "core/media/VideoExport.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <unistd.h>

namespace flowscope::media {
namespace {

std::string lowerExtension(const std::string& path) {
    std::string ext = std::filesystem::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext;
}

}  // namespace

std::vector<std::string> videoExtensions() { return {".mp4", ".avi"}; }

void writeVideo(const std::string& path, const std::vector<cv::Mat>& rgbFrames, double fps) {
    namespace fs = std::filesystem;
    const std::string ext = lowerExtension(path);
    if (ext == ".gif") {
        throw std::runtime_error("GIF cannot be written here: OpenCV's FFmpeg backend cannot encode GIF; "
                                 "export .mp4 instead");
    }
    if (ext != ".mp4" && ext != ".avi") {
        throw std::runtime_error("cannot write '" + path + "': video exports are .mp4 or .avi");
    }
    if (rgbFrames.empty()) throw std::runtime_error("cannot write '" + path + "': there are no frames");
    const cv::Size size = rgbFrames.front().size();
    const fs::path target(path);
    const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) {
        throw std::runtime_error("cannot write '" + path + "': the folder '" + folder.string() + "' does not exist");
    }
    // The temporary keeps the extension, from which the writer picks the container.
    std::string temporary = folder.string();
    temporary.append("/.").append(target.stem().string()).append(".XXXXXX").append(ext);
    const int fd = ::mkstemps(temporary.data(), static_cast<int>(ext.size()));
    if (fd < 0) throw std::runtime_error("cannot write '" + path + "': " + std::strerror(errno));
    ::close(fd);
    auto fail = [&](const std::string& why) {
        ::unlink(temporary.c_str());
        throw std::runtime_error("cannot write '" + path + "': " + why);
    };
    // Even sizes: H.264 and most players need them.
    const cv::Size even(size.width + size.width % 2, size.height + size.height % 2);
    cv::VideoWriter writer;
    const std::vector<int> codecs = ext == ".mp4"
                                        ? std::vector<int>{cv::VideoWriter::fourcc('a', 'v', 'c', '1'),
                                                           cv::VideoWriter::fourcc('m', 'p', '4', 'v')}
                                        : std::vector<int>{cv::VideoWriter::fourcc('M', 'J', 'P', 'G')};
    for (int codec : codecs) {
        if (writer.open(temporary, cv::CAP_FFMPEG, codec, fps, even)) break;
    }
    if (!writer.isOpened()) fail("no video encoder for " + ext + " is available");
    cv::Mat bgr, padded;
    for (const cv::Mat& frame : rgbFrames) {
        if (frame.size() != size || frame.type() != CV_8UC3) fail("frames differ in size or type");
        cv::cvtColor(frame, bgr, cv::COLOR_RGB2BGR);
        cv::copyMakeBorder(bgr, padded, 0, even.height - size.height, 0, even.width - size.width, cv::BORDER_REPLICATE);
        writer.write(padded);
    }
    writer.release();
    if (fs::file_size(temporary, ec) == 0 || ec) fail("the encoder wrote nothing");
    if (std::rename(temporary.c_str(), path.c_str()) != 0) fail(std::strerror(errno));
}

}  // namespace flowscope::media
