// Paths against their closed forms: boundary values, derivatives against central differences,
// the VP family's alpha^2 + sigma^2 = 1, and the log-SNR inverse.
#include <cmath>
#include <numbers>

#include <QtTest/QtTest>

#include "core/api/Errors.h"
#include "core/sampling/ProbabilityPath.h"

using namespace flowscope::core;

class TestProbabilityPath : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void boundaryValues_data();
    void boundaryValues();
    void derivativesMatchFiniteDifferences_data();
    void derivativesMatchFiniteDifferences();
    void variancePreservingPathsStayOnTheCircle();
    void closedFormsAtInteriorPoints();
    void lambdaInverseRoundTrips_data();
    void lambdaInverseRoundTrips();
    void lambdaIsIncreasing();
    void workingRangeMatchesEdm();
    void unknownPathListsValidNames();
};

void TestProbabilityPath::boundaryValues_data() {
    QTest::addColumn<QString>("name");
    QTest::addColumn<double>("alpha0");
    QTest::addColumn<double>("sigma0");
    QTest::addColumn<double>("alpha0Tolerance");
    const double vpAlpha0 = std::exp(-(20.0 - 0.1) / 4.0 - 0.1 / 2.0);
    QTest::newRow("linear") << "linear" << 0.0 << 1.0 << 0.0;
    QTest::newRow("vp") << "vp" << vpAlpha0 << std::sqrt(1.0 - vpAlpha0 * vpAlpha0) << 1e-15;
    QTest::newRow("cosine") << "cosine" << 0.0 << 1.0 << 1e-15;
    QTest::newRow("ve") << "ve" << 1.0 << 80.0 << 0.0;
}

void TestProbabilityPath::boundaryValues() {
    QFETCH(QString, name);
    QFETCH(double, alpha0);
    QFETCH(double, sigma0);
    QFETCH(double, alpha0Tolerance);
    const auto path = makePath(name.toStdString());
    QVERIFY(std::abs(path->alpha(0.0) - alpha0) <= alpha0Tolerance);
    QVERIFY(std::abs(path->sigma(0.0) - sigma0) <= 1e-12);
    // At t = 1 every path is the data: alpha = 1, sigma = 0.
    QCOMPARE(path->alpha(1.0), 1.0);
    QCOMPARE(path->sigma(1.0), 0.0);
}

void TestProbabilityPath::derivativesMatchFiniteDifferences_data() {
    QTest::addColumn<QString>("name");
    for (const auto& name : pathNames()) QTest::newRow(name.c_str()) << QString::fromStdString(name);
}

void TestProbabilityPath::derivativesMatchFiniteDifferences() {
    QFETCH(QString, name);
    const auto path = makePath(name.toStdString());
    const double h = 1e-6;
    for (double t = 0.01; t < 0.995; t += 0.0437) {
        const double alphaFd = (path->alpha(t + h) - path->alpha(t - h)) / (2 * h);
        const double sigmaFd = (path->sigma(t + h) - path->sigma(t - h)) / (2 * h);
        const double scale = 1.0 + std::abs(path->sigmaDot(t)) + std::abs(path->alphaDot(t));
        QVERIFY2(std::abs(alphaFd - path->alphaDot(t)) < 1e-6 * scale, qPrintable(QString("alpha' at t=%1").arg(t)));
        QVERIFY2(std::abs(sigmaFd - path->sigmaDot(t)) < 1e-6 * scale, qPrintable(QString("sigma' at t=%1").arg(t)));
    }
}

void TestProbabilityPath::variancePreservingPathsStayOnTheCircle() {
    for (const char* name : {"vp", "cosine"}) {
        const auto path = makePath(name);
        QVERIFY(path->isVariancePreserving());
        for (double t = 0.0; t <= 1.0; t += 0.01) {
            const double a = path->alpha(t), s = path->sigma(t);
            QVERIFY(std::abs(a * a + s * s - 1.0) < 1e-12);
        }
    }
    QVERIFY(!makePath("linear")->isVariancePreserving());
    QVERIFY(!makePath("ve")->isVariancePreserving());
}

void TestProbabilityPath::closedFormsAtInteriorPoints() {
    // DESIGN.md's tables, evaluated independently here.
    const double t = 0.3, s = 1.0 - t;
    QCOMPARE(makePath("linear")->alpha(t), t);
    QCOMPARE(makePath("linear")->sigma(t), s);
    const double vpAlpha = std::exp(-s * s * (20.0 - 0.1) / 4.0 - s * 0.1 / 2.0);
    QVERIFY(std::abs(makePath("vp")->alpha(t) - vpAlpha) < 1e-15);
    QVERIFY(std::abs(makePath("vp")->alphaDot(t) - vpAlpha * (s * 19.9 / 2 + 0.05)) < 1e-13);
    const double s0 = 0.008;
    const double cosAlpha = std::cos(std::numbers::pi / 2 * (s + s0) / (1 + s0)) / std::cos(std::numbers::pi / 2 * s0 / (1 + s0));
    QVERIFY(std::abs(makePath("cosine")->alpha(t) - cosAlpha) < 1e-15);
    QVERIFY(std::abs(makePath("cosine")->sigma(t) - std::sqrt(1 - cosAlpha * cosAlpha)) < 1e-14);
    QCOMPARE(makePath("ve")->sigma(t), 80.0 * s);
    QCOMPARE(makePath("ve")->sigmaDot(t), -80.0);
}

void TestProbabilityPath::lambdaInverseRoundTrips_data() { derivativesMatchFiniteDifferences_data(); }

void TestProbabilityPath::lambdaInverseRoundTrips() {
    QFETCH(QString, name);
    const auto path = makePath(name.toStdString());
    for (double t = 0.001; t < 0.9999; t += 0.00731) {
        const double lambda = path->lambda(t);
        QCOMPARE(lambda, std::log(path->alpha(t) / path->sigma(t)));
        QVERIFY2(std::abs(path->timeForLambda(lambda) - t) < 1e-9, qPrintable(QString("t=%1").arg(t)));
    }
    // Out-of-range SNRs clamp to the ends.
    QCOMPARE(path->timeForLambda(std::numeric_limits<double>::infinity()), 1.0);
    QCOMPARE(path->timeForLambda(-std::numeric_limits<double>::infinity()), 0.0);
    QCOMPARE(path->timeForLambda(-1000.0), 0.0);
    QCOMPARE(path->timeForLambda(1000.0), 1.0);
}

void TestProbabilityPath::lambdaIsIncreasing() {
    for (const auto& name : pathNames()) {
        const auto path = makePath(name);
        double previous = path->lambda(0.0);
        for (double t = 0.01; t < 1.0; t += 0.01) {
            const double current = path->lambda(t);
            QVERIFY(current > previous);
            previous = current;
        }
        QVERIFY(std::isinf(path->lambda(1.0)) && path->lambda(1.0) > 0);
    }
}

void TestProbabilityPath::workingRangeMatchesEdm() {
    // Linear and cosine start at infinite noise: the range begins at VE-equivalent sigma 80.
    QVERIFY(std::abs(makePath("linear")->lambdaMin() + std::log(80.0)) < 1e-12);
    QVERIFY(std::abs(makePath("ve")->lambdaMin() + std::log(80.0)) < 1e-12);
    QVERIFY(std::abs(makePath("cosine")->lambdaMin() + std::log(80.0)) < 1e-12);
    // VP starts at lambda(0) = -5.02 < -log 80, so its range starts at sigma 80 too.
    QVERIFY(std::abs(makePath("vp")->lambdaMin() + std::log(80.0)) < 1e-12);
    for (const auto& name : pathNames()) QVERIFY(std::abs(makePath(name)->lambdaMax() + std::log(0.002)) < 1e-12);
    // On the linear path sigma/alpha = 80 happens at t = 1/81.
    QVERIFY(std::abs(makePath("linear")->timeForLambda(-std::log(80.0)) - 1.0 / 81.0) < 1e-12);
}

void TestProbabilityPath::unknownPathListsValidNames() {
    try {
        makePath("straight");
        QFAIL("no exception");
    } catch (const UnknownNameError& error) {
        const QString message = error.what();
        QVERIFY(message.contains("straight"));
        for (const char* name : {"linear", "vp", "cosine", "ve"}) QVERIFY(message.contains(name));
    }
}

QTEST_GUILESS_MAIN(TestProbabilityPath)
#include "tst_probabilitypath.moc"
