#pragma once

#include <string>
#include <vector>

namespace flowscope::core {

// The networks FlowScope ships (resources/models, installed as share/flowscope/models): found
// beside the executable (BIN/../share/flowscope/models, in the build tree as in an install), or
// in $FLOWSCOPE_MODELS_DIR. Torch-free, so the UI can list them.
struct ShippedModel {
    std::string name;       // from its manifest
    std::string directory;  // the bundle folder
    std::string path;       // the probability path it was trained on
    std::vector<long long> sampleShape;
};

// The folder, or "" when there is none.
std::string shippedModelsDirectory();
// The folder names of the shipped bundles (folders holding a flowscope.json), sorted: the NAMEs
// of `shipped:NAME` specs.
std::vector<std::string> shippedModelNames();
// For a bundle FlowScope trained (flowscope-net): the dataset spec it was trained on (for 2-D
// models, what to draw beneath its samples); "" when the manifest does not say or cannot be read.
std::string trainingDatasetOf(const std::string& bundleDirectory);
// Every bundle folder in it whose manifest reads, sorted by folder name; unreadable ones are skipped.
std::vector<ShippedModel> shippedModels();
// The classifier `flowscope-cli evaluate` measures Fashion-MNIST models with, or "" when absent.
std::string shippedClassifierPath();

}  // namespace flowscope::core
