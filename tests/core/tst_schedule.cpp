// Time grids against their defining formulas (EDM, SD3, Flux, DPM-Solver), and the property that
// grids defined in noise level give the same SNRs on every path.
#include <cmath>

#include <QtTest/QtTest>

#include "core/api/Errors.h"
#include "core/sampling/ProbabilityPath.h"
#include "core/sampling/Schedule.h"

using namespace flowscope::core;

namespace {
// VE-equivalent noise sigma/alpha at t on a path.
double veNoise(const ProbabilityPath& path, double t) { return path.sigma(t) / path.alpha(t); }
}  // namespace

class TestSchedule : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void uniformIsUniform();
    void karrasMatchesEdmFormula();
    void karrasStartsAtOneOver81OnLinear();
    void shiftMatchesSd3Formula();
    void fluxMatchesDynamicShift();
    void logSnrIsUniformInLambda();
    void noiseLevelGridsAgreeAcrossPaths();
    void gridsIncreaseAndEndAtOne();
    void leadingTimesBeyondThePathMerge();
    void tEndSqueezesTheGrid();
    void parsing();
};

void TestSchedule::uniformIsUniform() {
    const auto path = makePath("vp");
    const auto grid = makeTimeGrid(parseSchedule("uniform"), *path, 5);
    QCOMPARE(int(grid.size()), 6);
    for (int i = 0; i <= 5; ++i) QVERIFY(std::abs(grid[i] - i / 5.0) < 1e-15);
}

void TestSchedule::karrasMatchesEdmFormula() {
    const int n = 10;
    const auto path = makePath("ve");
    const auto grid = makeTimeGrid(parseSchedule("karras"), *path, n);
    const double rho = 7.0, smax = 80.0, smin = 0.002;
    for (int i = 0; i < n; ++i) {
        const double expected = std::pow(std::pow(smax, 1 / rho) + i / double(n - 1) * (std::pow(smin, 1 / rho) - std::pow(smax, 1 / rho)), rho);
        QVERIFY2(std::abs(veNoise(*path, grid[i]) - expected) < 1e-9 * expected, qPrintable(QString::number(i)));
    }
    QCOMPARE(grid[n], 1.0);
}

void TestSchedule::karrasStartsAtOneOver81OnLinear() {
    const auto grid = makeTimeGrid(parseSchedule("karras"), *makePath("linear"), 8);
    QVERIFY(std::abs(grid[0] - 1.0 / 81.0) < 1e-12);
}

void TestSchedule::shiftMatchesSd3Formula() {
    const double shift = 3.0;
    const int n = 7;
    const auto grid = makeTimeGrid(parseSchedule("shift:3"), *makePath("linear"), n);
    for (int i = 0; i <= n; ++i) {
        const double s = 1.0 - double(i) / n;
        const double expected = shift * s / (1 + (shift - 1) * s);
        QVERIFY(std::abs((1.0 - grid[i]) - expected) < 1e-12);
    }
    // shift:1 is the uniform grid.
    const auto plain = makeTimeGrid(parseSchedule("shift:1"), *makePath("linear"), n);
    for (int i = 0; i <= n; ++i) QVERIFY(std::abs(plain[i] - double(i) / n) < 1e-12);
}

void TestSchedule::fluxMatchesDynamicShift() {
    const double tokens = 4096.0;
    const double m = (1.15 - 0.5) / (4096.0 - 256.0);
    const double b = 0.5 - 256.0 * m;
    const double mu = tokens * m + b;  // = 1.15 at 4096 tokens
    QVERIFY(std::abs(mu - 1.15) < 1e-12);
    const int n = 6;
    const auto grid = makeTimeGrid(parseSchedule("flux:4096"), *makePath("linear"), n);
    for (int i = 0; i < n; ++i) {
        const double s = 1.0 - double(i) / n;
        const double expected = std::exp(mu) / (std::exp(mu) + (1.0 / s - 1.0));
        QVERIFY(std::abs((1.0 - grid[i]) - expected) < 1e-12);
    }
    QCOMPARE(grid[n], 1.0);
    // The token count comes from the sample shape when not given: 2x2 patches.
    QCOMPARE(fluxTokenCount({1, 28, 28}), 196.0);
    QCOMPARE(fluxTokenCount({2}), 1.0);
}

void TestSchedule::logSnrIsUniformInLambda() {
    for (const auto& name : pathNames()) {
        const auto path = makePath(name);
        const int n = 9;
        const auto grid = makeTimeGrid(parseSchedule("logsnr"), *path, n);
        const double step = (path->lambdaMax() - path->lambdaMin()) / (n - 1);
        for (int i = 0; i < n; ++i) {
            QVERIFY2(std::abs(path->lambda(grid[i]) - (path->lambdaMin() + i * step)) < 1e-8,
                     qPrintable(QString("%1 %2").arg(name.c_str()).arg(i)));
        }
        QCOMPARE(grid[n], 1.0);
    }
}

void TestSchedule::noiseLevelGridsAgreeAcrossPaths() {
    for (const char* schedule : {"karras", "shift:3", "flux", "logsnr"}) {
        const auto spec = parseSchedule(schedule);
        const auto reference = makePath("linear");
        const auto referenceGrid = makeTimeGrid(spec, *reference, 12, 196.0);
        for (const char* other : {"vp", "cosine", "ve"}) {
            const auto path = makePath(other);
            const auto grid = makeTimeGrid(spec, *path, 12, 196.0);
            for (int i = 1; i < 12; ++i) {
                QVERIFY2(std::abs(path->lambda(grid[i]) - reference->lambda(referenceGrid[i])) < 1e-7,
                         qPrintable(QString("%1 on %2, i=%3").arg(schedule, other).arg(i)));
            }
        }
    }
}

void TestSchedule::gridsIncreaseAndEndAtOne() {
    for (const auto& path : pathNames()) {
        for (const char* schedule : {"uniform", "karras", "shift:3", "flux", "logsnr"}) {
            for (int requested : {1, 2, 3, 8, 50, 1000}) {
                int n = requested;
                const auto grid = makeTimeGrid(parseSchedule(schedule), *makePath(path), requested);
                // Only noise-level grids on paths with a finite starting SNR may merge leading times.
                const bool mayMerge = path == "vp" || path == "ve";
                QVERIFY(mayMerge ? int(grid.size()) <= n + 1 : int(grid.size()) == n + 1);
                QVERIFY(grid.front() >= 0.0);
                n = int(grid.size()) - 1;
                QCOMPARE(grid.back(), 1.0);
                for (int i = 1; i <= n; ++i) QVERIFY(grid[i] > grid[i - 1]);
            }
        }
    }
}

void TestSchedule::leadingTimesBeyondThePathMerge() {
    // shift:3 with 1000 steps asks for linear noise levels up to 1 - 1e-4; vp cannot go beyond its
    // t = 0 SNR, so those times merge into one start at t = 0 and the rest are kept.
    const auto path = makePath("vp");
    const auto grid = makeTimeGrid(parseSchedule("shift:3"), *path, 1000);
    QVERIFY(int(grid.size()) < 1001);
    QCOMPARE(grid.front(), 0.0);
    QVERIFY(grid[1] > 0.0);
    QVERIFY(path->lambda(grid[1]) > path->lambda(0.0));
}

void TestSchedule::tEndSqueezesTheGrid() {
    const auto grid = makeTimeGrid(parseSchedule("uniform"), *makePath("linear"), 4, 1.0, 0.9);
    for (int i = 0; i <= 4; ++i) QVERIFY(std::abs(grid[i] - 0.9 * i / 4.0) < 1e-15);
    QVERIFY_THROWS_EXCEPTION(InvalidRequestError,
                             makeTimeGrid(parseSchedule("karras"), *makePath("linear"), 4, 1.0, 0.001));
}

void TestSchedule::parsing() {
    QCOMPARE(parseSchedule("shift:2.5").shift, 2.5);
    QCOMPARE(toString(parseSchedule("shift:2.5")), std::string("shift:2.5"));
    QCOMPARE(parseSchedule("flux:1024").tokens, 1024.0);
    QVERIFY_THROWS_EXCEPTION(InvalidRequestError, parseSchedule("shift:abc"));
    QVERIFY_THROWS_EXCEPTION(InvalidRequestError, parseSchedule("shift:-1"));
    try {
        parseSchedule("cosine-ish");
        QFAIL("no exception");
    } catch (const UnknownNameError& error) {
        const QString message = error.what();
        for (const char* name : {"uniform", "karras", "shift:S", "flux", "logsnr"}) QVERIFY(message.contains(name));
    }
}

QTEST_GUILESS_MAIN(TestSchedule)
#include "tst_schedule.moc"
