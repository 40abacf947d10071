#pragma once
// How Gaussian a set of values is: the figures Engine::invert reports for the noise it recovers.
// Torch-free, so tests check it against closed forms.
#include <vector>

namespace flowscope::core {

struct NormalityFigures {
    double mean = 0.0;
    double std = 0.0;       // population standard deviation
    double skewness = 0.0;  // third standardized moment (0 for a Gaussian)
    double kurtosis = 0.0;  // excess kurtosis: fourth standardized moment - 3 (0 for a Gaussian)
    // Kolmogorov-Smirnov: the largest distance between the values' empirical distribution and
    // N(0, 1)'s, and the asymptotic p-value of that distance for this many values.
    double distance = 0.0;
    double p = 1.0;
};

// Sorts a copy. Empty input gives the default figures.
NormalityFigures normalityOf(std::vector<double> values);

// The standard normal distribution function.
double standardNormalCdf(double x);
// Kolmogorov's limiting distribution's tail, Q(lambda) = 2 sum_{j>=1} (-1)^{j-1} exp(-2 j^2 lambda^2).
double kolmogorovTail(double lambda);

}  // namespace flowscope::core
