// Parameterization conversions: every prediction type round-trips to x̂0 on every path, and the
// velocity conversion agrees with the path's derivative of x_t.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/api/Names.h"
#include "core/sampling/Parameterization.h"
#include "tests/TestSupport.h"

using namespace flowscope::core;
using flowscope::test::maxAbsDiff;

class TestParameterization : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void roundTripsOnEveryPath();
    void velocityIsTheTimeDerivativeOfTheInterpolant();
    void vNeedsAVariancePreservingPath();
    void namesParse();
};

void TestParameterization::roundTripsOnEveryPath() {
    torch::manual_seed(1);
    const auto data = torch::randn({4, 3, 5, 5}, torch::kFloat64);
    const auto eps = torch::randn({4, 3, 5, 5}, torch::kFloat64);
    for (const auto& pathName : pathNames()) {
        const auto path = makePath(pathName);
        for (double t : {0.05, 0.3, 0.5, 0.77, 0.98}) {
            const PathPoint p = path->at(t);
            const auto x = p.alpha * data + p.sigma * eps;
            for (const auto& kindName : parameterizationNames()) {
                const auto kind = parseParameterization(kindName);
                if (kind == Parameterization::V && !path->isVariancePreserving()) continue;
                const auto prediction = dataToPrediction(kind, data, x, p);
                const auto back = predictionToData(kind, prediction, x, p);
                QVERIFY2(maxAbsDiff(back, data) < 1e-9,
                         qPrintable(QString("%1 on %2 at t=%3").arg(kindName.c_str(), pathName.c_str()).arg(t)));
            }
            // Each prediction type has its meaning: epsilon is the noise, data is x0.
            QVERIFY(maxAbsDiff(dataToPrediction(Parameterization::Epsilon, data, x, p), eps) < 1e-9);
            if (path->isVariancePreserving()) {
                // Salimans and Ho: v = alpha eps - sigma x0.
                QVERIFY(maxAbsDiff(dataToPrediction(Parameterization::V, data, x, p), p.alpha * eps - p.sigma * data) < 1e-9);
            }
        }
    }
}

void TestParameterization::velocityIsTheTimeDerivativeOfTheInterpolant() {
    torch::manual_seed(2);
    const auto data = torch::randn({2, 8}, torch::kFloat64);
    const auto eps = torch::randn({2, 8}, torch::kFloat64);
    for (const auto& pathName : pathNames()) {
        const auto path = makePath(pathName);
        const double t = 0.4, h = 1e-6;
        const auto xAt = [&](double tt) { return path->alpha(tt) * data + path->sigma(tt) * eps; };
        const auto finiteDifference = (xAt(t + h) - xAt(t - h)) / (2 * h);
        const auto velocity = velocityFromData(data, xAt(t), path->at(t));
        QVERIFY2(maxAbsDiff(velocity, finiteDifference) < 1e-5 * (1 + finiteDifference.abs().max().item<double>()),
                 pathName.c_str());
    }
    // On the linear path the velocity is x0 - eps, constant along the line.
    const auto linear = makePath("linear");
    QVERIFY(maxAbsDiff(velocityFromData(data, 0.3 * data + 0.7 * eps, linear->at(0.3)), data - eps) < 1e-12);
}

void TestParameterization::vNeedsAVariancePreservingPath() {
    QVERIFY(makePath("vp")->isVariancePreserving());
    QVERIFY(!makePath("linear")->isVariancePreserving());
}

void TestParameterization::namesParse() {
    QVERIFY(parseParameterization("velocity") == Parameterization::Velocity);
    QVERIFY(parseParameterization("epsilon") == Parameterization::Epsilon);
    QVERIFY(parseParameterization("data") == Parameterization::Data);
    QVERIFY(parseParameterization("v") == Parameterization::V);
    QVERIFY_THROWS_EXCEPTION(UnknownNameError, parseParameterization("score"));
}

QTEST_GUILESS_MAIN(TestParameterization)
#include "tst_parameterization.moc"
