#include "core/media/VideoExport.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "core/io/AtomicFile.h"

namespace flowscope::media {
namespace {

std::string lowerExtension(const std::string& path) {
    std::string ext = std::filesystem::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext;
}

}  // namespace

std::vector<std::string> videoExtensions() { return {".mp4", ".avi"}; }

struct VideoFileWriter::State {
    std::string path;
    std::string temporary;
    cv::Size size;
    cv::Size even;
    cv::VideoWriter writer;
    bool committed = false;
};

VideoFileWriter::VideoFileWriter(const std::string& path, int width, int height, double fps) : m_state(new State) {
    namespace fs = std::filesystem;
    m_state->path = path;
    const std::string ext = lowerExtension(path);
    auto fail = [&](const std::string& why) {
        if (!m_state->temporary.empty()) ::unlink(m_state->temporary.c_str());
        delete m_state;
        throw std::runtime_error(why);
    };
    if (ext == ".gif") {
        fail("GIF cannot be written here: OpenCV's FFmpeg backend cannot encode GIF; export .mp4 instead");
    }
    if (ext != ".mp4" && ext != ".avi") fail("cannot write '" + path + "': video exports are .mp4 or .avi");
    if (width < 1 || height < 1) fail("cannot write '" + path + "': there are no frames");
    const fs::path target(path);
    const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) {
        fail("cannot write '" + path + "': the folder '" + folder.string() + "' does not exist");
    }
    // The temporary keeps the extension, from which the writer picks the container.
    std::string temporary = folder.string();
    temporary.append("/.").append(target.stem().string()).append(".XXXXXX").append(ext);
    const int fd = ::mkstemps(temporary.data(), static_cast<int>(ext.size()));
    if (fd < 0) fail("cannot write '" + path + "': " + std::strerror(errno));
    ::close(fd);
    m_state->temporary = temporary;
    m_state->size = cv::Size(width, height);
    // Even sizes: H.264 and most players need them.
    m_state->even = cv::Size(width + width % 2, height + height % 2);
    const std::vector<int> codecs = ext == ".mp4"
                                        ? std::vector<int>{cv::VideoWriter::fourcc('a', 'v', 'c', '1'),
                                                           cv::VideoWriter::fourcc('m', 'p', '4', 'v')}
                                        : std::vector<int>{cv::VideoWriter::fourcc('M', 'J', 'P', 'G')};
    for (int codec : codecs) {
        if (m_state->writer.open(temporary, cv::CAP_FFMPEG, codec, fps, m_state->even)) break;
    }
    if (!m_state->writer.isOpened()) fail("cannot write '" + path + "': no video encoder for " + ext + " is available");
}

VideoFileWriter::~VideoFileWriter() {
    if (!m_state) return;
    if (!m_state->committed) {
        m_state->writer.release();
        ::unlink(m_state->temporary.c_str());
    }
    delete m_state;
}

void VideoFileWriter::write(const cv::Mat& rgb) {
    if (rgb.size() != m_state->size || rgb.type() != CV_8UC3) {
        throw std::runtime_error("cannot write '" + m_state->path + "': frames differ in size or type");
    }
    cv::Mat bgr, padded;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    cv::copyMakeBorder(bgr, padded, 0, m_state->even.height - m_state->size.height, 0,
                       m_state->even.width - m_state->size.width, cv::BORDER_REPLICATE);
    m_state->writer.write(padded);
}

void VideoFileWriter::commit() {
    m_state->writer.release();
    std::error_code ec;
    if (std::filesystem::file_size(m_state->temporary, ec) == 0 || ec) {
        throw std::runtime_error("cannot write '" + m_state->path + "': the encoder wrote nothing");
    }
    ::chmod(m_state->temporary.c_str(), core::modeForReplacement(m_state->path));
    if (std::rename(m_state->temporary.c_str(), m_state->path.c_str()) != 0) {
        throw std::runtime_error("cannot write '" + m_state->path + "': " + std::strerror(errno));
    }
    m_state->committed = true;
}

void writeVideo(const std::string& path, const std::vector<cv::Mat>& rgbFrames, double fps) {
    const cv::Size size = rgbFrames.empty() ? cv::Size() : rgbFrames.front().size();
    VideoFileWriter writer(path, size.width, size.height, fps);
    for (const cv::Mat& frame : rgbFrames) writer.write(frame);
    writer.commit();
}

}  // namespace flowscope::media
