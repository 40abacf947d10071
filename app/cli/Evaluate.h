#pragma once

#include <atomic>
#include <string>
#include <vector>

namespace flowscope::app {

// flowscope-cli classifier: trains the feature classifier `evaluate` measures with.
int runClassifier(const std::vector<std::string>& args, const std::atomic<bool>& cancel);
// flowscope-cli evaluate: Frechet distance in the classifier's feature space, straightness and
// path length ratio of an image model at several step counts (and adaptively).
int runEvaluate(const std::vector<std::string>& args, const std::atomic<bool>& cancel);

}  // namespace flowscope::app
