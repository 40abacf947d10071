// core/api/Files.h: the torch-free declarations over the engine's file encoders.
#include "core/api/Files.h"

#include <map>

#include "core/engine/HostArrays.h"
#include "core/io/NpyFile.h"
#include "core/io/SafeTensors.h"
#include "core/models/ModelSpec.h"

namespace flowscope::core {

std::string encodeNpyArray(const HostArray& array) { return encodeNpy(array.shape, array.values.data()); }

void writeNpyArray(const std::string& path, const HostArray& array) { writeNpy(path, array.shape, array.values.data()); }

HostArray readNpyArray(const std::string& path) {
    NpyArray array = readNpy(path);
    return {std::move(array.shape), std::move(array.data)};
}

std::string encodeSafeTensorsArray(const std::string& name, const HostArray& array,
                                   const std::vector<std::pair<std::string, std::string>>& metadata) {
    const std::map<std::string, std::string> fields(metadata.begin(), metadata.end());
    return encodeSafeTensors({{name, fromHostArray(array)}}, fields);
}

std::string bundleFolder(const std::string& specOrFolder) {
    const std::string folder = bundleDirectoryOf(specOrFolder);
    return folder.empty() ? specOrFolder : folder;
}

}  // namespace flowscope::core
