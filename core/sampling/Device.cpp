#include "core/sampling/Device.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <unistd.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/io/RegularFile.h"

namespace flowscope::core {

bool cudaAvailable() { return torch::cuda::is_available(); }

void configureThreads() {
    static std::once_flag once;
    std::call_once(once, [] {
        const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
        at::set_num_threads(static_cast<int>(cores));
#if defined(__GLIBC__)
        // LibTorch's CPU kernels allocate and free activations of a few MB on every call. glibc
        // serves those from mmap or trims them off the heap, and the next call faults the pages
        // in again (zeroed by the kernel): about 30% of a small conv net's forward pass here
        // (bench/RESULTS.md). Keep such blocks on the heap instead, as the GPU's caching
        // allocator does; blocks from 64 MB up (datasets) still come from mmap and go back.
        mallopt(M_MMAP_THRESHOLD, 64 << 20);
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
    });
}

torch::Device resolveDevice(std::string_view name) {
    if (name == "auto") return cudaAvailable() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
    if (name == "cpu") return torch::kCPU;
    if (name == "cuda") {
        if (!cudaAvailable()) {
            throw InvalidRequestError(
                "device 'cuda' requested, but this FlowScope build or machine has no CUDA GPU; "
                "use --device cpu or auto");
        }
        return torch::Device(torch::kCUDA, 0);
    }
    throw UnknownNameError("device", name, {"auto", "cpu", "cuda"});
}

torch::ScalarType resolveDtype(std::string_view name, const torch::Device& device) {
    if (name == "float32") return torch::kFloat32;
    if (name == "float64") return torch::kFloat64;
    if (name == "bfloat16") {
        if (!device.is_cuda()) throw InvalidRequestError("dtype bfloat16 is offered on CUDA only; use float32 on the CPU");
        return torch::kBFloat16;
    }
    throw UnknownNameError("dtype", name, dtypeNames());
}

std::string describeDevice(const torch::Device& device) {
    if (device.is_cuda()) return "CUDA: GPU " + std::to_string(device.index());
    return "CPU, " + std::to_string(at::get_num_threads()) + " threads";
}

double parseMemorySize(std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    double unit = 1.0;
    if (!text.empty()) {
        const char last = char(std::toupper(static_cast<unsigned char>(text.back())));
        const std::string_view units = "KMGT";
        if (const size_t power = units.find(last); power != std::string_view::npos) {
            unit = std::ldexp(1.0, 10 * int(power + 1));
            text.remove_suffix(1);
        }
    }
    if (text.empty() || text.size() > 32) return -1.0;
    const std::string number(text);
    char* end = nullptr;
    const double value = std::strtod(number.c_str(), &end);
    if (end != number.c_str() + number.size() || !std::isfinite(value) || value <= 0.0 || number.find_first_of("xXpP") != std::string::npos) {
        return -1.0;
    }
    return value * unit;
}

namespace {

// A cgroup file's number ("max" or absent: 0).
double cgroupValue(const std::string& path) {
    std::ifstream file(path);
    std::string value;
    if (!(file >> value) || value == "max") return 0.0;
    const double bytes = parseMemorySize(value);
    return bytes > 0.0 ? bytes : 0.0;
}

// The value of `key` in a file of "key value" lines (/proc/meminfo, memory.stat); -1 if absent.
double fieldOf(const std::string& path, const std::string& key) {
    std::ifstream file(path);
    std::string line;
    while (std::getline(file, line)) {
        std::istringstream fields(line);
        std::string name;
        double value = 0.0;
        if (fields >> name >> value && name == key) return value;
    }
    return -1.0;
}

// The tightest memory limit over the process's control group and its ancestors (cgroup v2, or
// v1's memory controller), with what that group holds and how much of it is page cache (which the
// kernel reclaims before it fails). limit 0: none.
struct GroupMemory {
    double limit = 0.0, used = 0.0, cache = 0.0;
};
GroupMemory groupMemory() {
    GroupMemory tightest;
    std::ifstream self("/proc/self/cgroup");
    std::string line;
    while (std::getline(self, line)) {
        const size_t first = line.find(':');
        const size_t second = first == std::string::npos ? first : line.find(':', first + 1);
        if (second == std::string::npos) continue;
        // "0::/path" (v2), or "N:controller,controller:/path" (v1).
        const std::string_view controllers = std::string_view(line).substr(first + 1, second - first - 1);
        const bool v2 = first == 1 && line[0] == '0' && controllers.empty();
        bool memory = false;
        for (size_t at = 0; at < controllers.size();) {
            const size_t end = std::min(controllers.find(',', at), controllers.size());
            memory = memory || controllers.substr(at, end - at) == "memory";
            at = end + 1;
        }
        if (!v2 && !memory) continue;
        const std::string root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
        const std::string path = line.substr(second + 1);
        for (std::string dir = root + (path == "/" ? "" : path);; dir = dir.substr(0, dir.rfind('/'))) {
            const double limit = cgroupValue(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"));
            if (limit > 0.0 && (tightest.limit <= 0.0 || limit < tightest.limit)) {
                tightest.limit = limit;
                tightest.used = cgroupValue(dir + (v2 ? "/memory.current" : "/memory.usage_in_bytes"));
                tightest.cache = std::max(0.0, fieldOf(dir + "/memory.stat", v2 ? "file" : "total_cache"));
            }
            if (dir.size() <= root.size()) break;
        }
    }
    return tightest;
}

}  // namespace

double freeMemoryBytes() {
    const double available = fieldOf("/proc/meminfo", "MemAvailable:");
    double free = available > 0.0 ? available * 1024.0 : 0.0;
    const GroupMemory group = groupMemory();
    if (group.limit > 0.0 && group.used > 0.0) {
        const double left = std::max(0.0, group.limit - std::max(0.0, group.used - group.cache));
        if (free <= 0.0 || left < free) free = left;
    }
    const double machine = machineMemoryBytes();
    return machine > 0.0 ? std::min(free, machine) : free;
}

double cpuRoomBytes(double share) {
    const double machine = machineMemoryBytes();
    const double free = freeMemoryBytes();
    double room = share * machine;
    if (free > 0.0 && (room <= 0.0 || free < room)) room = free;
    return room;
}

double machineMemoryBytes() {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long pageSize = ::sysconf(_SC_PAGESIZE);
    double memory = pages > 0 && pageSize > 0 ? double(pages) * double(pageSize) : 0.0;
    static const double cgroup = groupMemory().limit;
    if (cgroup > 0.0 && (memory <= 0.0 || cgroup < memory)) memory = cgroup;
    if (const char* limit = std::getenv("FLOWSCOPE_MEMORY_LIMIT"); limit && *limit) {
        const double bytes = parseMemorySize(limit);
        if (bytes <= 0.0) {
            throw InvalidRequestError("FLOWSCOPE_MEMORY_LIMIT='" + std::string(limit) +
                                      "' is not a size: write bytes, or a number with K, M, G or T (for example 8G)");
        }
        if (memory <= 0.0 || bytes < memory) memory = bytes;
    }
    return memory;
}

void checkFitsInMemory(double bytes, double share, const std::string& what, const std::string& remedy) {
    const double memory = machineMemoryBytes();
    if (memory <= 0.0 || bytes <= share * memory) return;
    throw InvalidRequestError(what + " needs about " + describeBytes(bytes) + ", more than this machine's memory (" +
                              describeBytes(memory) + ") can hold: " + remedy);
}

}  // namespace flowscope::core
