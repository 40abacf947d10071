#include "core/engine/Normality.h"

#include <algorithm>
#include <cmath>

namespace flowscope::core {

double standardNormalCdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

double kolmogorovTail(double lambda) {
    if (lambda < 0.2) return 1.0;  // the series converges slowly here, towards 1
    double sum = 0.0;
    for (int j = 1; j <= 100; ++j) {
        const double term = std::exp(-2.0 * j * j * lambda * lambda);
        sum += (j % 2 ? term : -term);
        if (term < 1e-16) break;
    }
    return std::clamp(2.0 * sum, 0.0, 1.0);
}

NormalityFigures normalityOf(std::vector<double> values) {
    NormalityFigures figures;
    const size_t n = values.size();
    if (n == 0) return figures;
    double sum = 0.0;
    for (double v : values) sum += v;
    figures.mean = sum / double(n);
    double m2 = 0.0, m3 = 0.0, m4 = 0.0;
    for (double v : values) {
        const double d = v - figures.mean;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    m2 /= double(n);
    m3 /= double(n);
    m4 /= double(n);
    figures.std = std::sqrt(m2);
    if (m2 > 0.0) {
        figures.skewness = m3 / std::pow(m2, 1.5);
        figures.kurtosis = m4 / (m2 * m2) - 3.0;
    }
    std::sort(values.begin(), values.end());
    double distance = 0.0;
    for (size_t i = 0; i < n; ++i) {
        const double cdf = standardNormalCdf(values[i]);
        distance = std::max({distance, double(i + 1) / double(n) - cdf, cdf - double(i) / double(n)});
    }
    figures.distance = distance;
    // Stephens' correction makes the limiting law usable from small n on.
    const double root = std::sqrt(double(n));
    figures.p = kolmogorovTail((root + 0.12 + 0.11 / root) * distance);
    return figures;
}

}  // namespace flowscope::core
