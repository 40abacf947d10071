// Runs that start anywhere (RunStart) and runs backwards (Engine::invert), against exact special
// cases and closed forms: a fork with unchanged settings continues its parent bit for bit; a fork
// onto another path equals a run started at the same signal-to-noise ratio (the state moved in
// closed form); image to image at strength 0 and 1; the round trip's measured order of
// convergence per solver; dopri5 recovering the very noise that made a sample; and the noise's
// normality figures on values whose answers are known.
#include <algorithm>
#include <cmath>

#include <QtTest/QtTest>

#include "core/api/Engine.h"
#include "core/engine/Normality.h"

using namespace flowscope::core;

namespace {

SampleRequest mixtureRun(const std::string& solver, int steps) {
    SampleRequest request;
    request.model = "gmm:8gaussians";
    request.solver = solver;
    request.steps = steps;
    request.batch = 6;
    request.seed = 11;
    request.recordTrajectory = true;
    return request;
}

double maxAbsDiff(const HostArray& a, const HostArray& b) {
    if (a.shape != b.shape) return INFINITY;
    double worst = 0.0;
    for (size_t i = 0; i < a.values.size(); ++i) worst = std::max(worst, double(std::abs(a.values[i] - b.values[i])));
    return worst;
}

bool identical(const HostArray& a, const HostArray& b) { return a.shape == b.shape && a.values == b.values; }

HostArray slice(const HostArray& stacked, int64_t index) {
    HostArray out;
    out.shape.assign(stacked.shape.begin() + 1, stacked.shape.end());
    const int64_t size = out.count();
    out.values.assign(stacked.values.begin() + index * size, stacked.values.begin() + (index + 1) * size);
    return out;
}

// The inverse of the standard normal distribution function, by bisection on erfc.
double normalQuantile(double p) {
    double lo = -10.0, hi = 10.0;
    for (int i = 0; i < 200; ++i) {
        const double mid = 0.5 * (lo + hi);
        (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
}

}  // namespace

class TestStarts : public QObject {
    Q_OBJECT

private slots:
    void forkContinuesTheParentBitForBit_data();
    void forkContinuesTheParentBitForBit();
    void forkOntoAnotherPathStartsAtTheSameSnr();
    void strengthZeroKeepsTheImageAndOneIsPlainSampling();
    void imageStartNoisesAlongThePath();
    void newGridCoversTheRestWithAllItsSteps();
    void roundTripConvergesAtLeastAtTheSolversOrder_data();
    void roundTripConvergesAtLeastAtTheSolversOrder();
    void dopri5RecoversTheNoiseThatMadeTheSample();
    void normalityFiguresOnKnownValues();
    void badStartsAreRefusedInWords();
};

void TestStarts::forkContinuesTheParentBitForBit_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("solver");
    for (const char* solver : {"euler", "heun", "midpoint", "rk4", "ddim", "dpm++2m", "dopri5", "ddpm", "euler-a"}) {
        QTest::newRow((std::string("8gaussians ") + solver).c_str()) << "gmm:8gaussians" << solver;
    }
    for (const char* solver : {"euler", "heun", "dpm++2m", "dopri5", "ddpm"}) {
        QTest::newRow((std::string("fashion-mnist ") + solver).c_str()) << "fashion-mnist:300" << solver;
    }
}

// Unchanged settings from the parent's state at step k: the child takes the parent's remaining
// steps with the same numbers (grid times, DPM-Solver++'s previous x̂0, dopri5's next step size,
// the stochastic solvers' generators), so its final samples are the parent's to the last bit.
void TestStarts::forkContinuesTheParentBitForBit() {
    QFETCH(QString, model);
    QFETCH(QString, solver);
    Engine engine;
    SampleRequest parent = mixtureRun(solver.toStdString(), 8);
    parent.model = model.toStdString();
    parent.batch = model.startsWith("gmm") ? 6 : 2;
    const SampleResult parentRun = engine.sample(parent);
    QVERIFY2(parentRun.ok(), parentRun.error.c_str());
    const int frames = static_cast<int>(parentRun.times.size());
    QVERIFY(frames >= 4);
    for (const int step : {1, frames / 2, frames - 2}) {
        SampleRequest child = parent;
        child.start = Engine::forkStart(parent, parentRun, step, child);
        const SampleResult childRun = engine.sample(child);
        QVERIFY2(childRun.ok(), childRun.error.c_str());
        QVERIFY2(identical(childRun.final, parentRun.final),
                 qPrintable(QString("fork at step %1: max difference %2").arg(step).arg(maxAbsDiff(childRun.final, parentRun.final))));
        QCOMPARE(childRun.times, std::vector<double>(parentRun.times.begin() + step, parentRun.times.end()));
    }
}

// A linear-path state at t moved to vp: alpha'/sigma' = t/(1-t) = r gives alpha' = r/sqrt(1+r^2),
// sigma' = 1/sqrt(1+r^2), and t' from vp's alpha in closed form (a quadratic in s = 1 - t').
void TestStarts::forkOntoAnotherPathStartsAtTheSameSnr() {
    Engine engine;
    SampleRequest parent = mixtureRun("euler", 8);
    const SampleResult parentRun = engine.sample(parent);
    QVERIFY2(parentRun.ok(), parentRun.error.c_str());
    const int step = 4;
    const double t = parentRun.times[step];
    QCOMPARE(t, 0.5);
    SampleRequest child = parent;
    child.path = "vp";
    child.solver = "heun";
    child.start = Engine::forkStart(parent, parentRun, step, child);
    const SampleResult forked = engine.sample(child);
    QVERIFY2(forked.ok(), forked.error.c_str());

    const double r = t / (1.0 - t);
    const double sigmaVp = 1.0 / std::sqrt(1.0 + r * r);
    const double alphaVp = r * sigmaVp;
    const double b0 = 0.1, b1 = 20.0;
    const double s = (-b0 / 2.0 + std::sqrt(b0 * b0 / 4.0 - (b1 - b0) * std::log(alphaVp))) / ((b1 - b0) / 2.0);
    SampleRequest direct = child;
    direct.start = {};
    direct.start.kind = RunStart::Kind::State;
    direct.start.time = 1.0 - s;
    direct.start.state = slice(parentRun.trajectory, step);
    for (float& value : direct.start.state.values) value = float(value * (sigmaVp / (1.0 - t)));
    const SampleResult started = engine.sample(direct);
    QVERIFY2(started.ok(), started.error.c_str());
    QVERIFY2(std::abs(forked.times.front() - (1.0 - s)) < 1e-9, qPrintable(QString::number(forked.times.front())));
    QCOMPARE(forked.times.size(), started.times.size());
    QVERIFY2(maxAbsDiff(forked.initial, started.initial) < 1e-5, qPrintable(QString::number(maxAbsDiff(forked.initial, started.initial))));
    QVERIFY2(maxAbsDiff(forked.final, started.final) < 1e-4, qPrintable(QString::number(maxAbsDiff(forked.final, started.final))));
}

void TestStarts::strengthZeroKeepsTheImageAndOneIsPlainSampling() {
    Engine engine;
    SampleRequest plain;
    plain.model = "fashion-mnist:300";
    plain.steps = 6;
    plain.batch = 2;
    plain.seed = 5;
    const SampleResult plainRun = engine.sample(plain);
    QVERIFY2(plainRun.ok(), plainRun.error.c_str());
    const HostArray image = slice(plainRun.final, 0);  // [1, 28, 28]: one image for every sample

    SampleRequest request = plain;
    request.start.kind = RunStart::Kind::Image;
    request.start.image = image;
    request.start.image.shape.insert(request.start.image.shape.begin(), 1);
    request.start.time = 1.0;  // strength 0
    const SampleResult kept = engine.sample(request);
    QVERIFY2(kept.ok(), kept.error.c_str());
    QCOMPARE(kept.nfe, 0);
    QCOMPARE(kept.steps, 0);
    QCOMPARE(slice(kept.final, 1).values, image.values);

    request.start.time = 0.0;  // strength 1
    const SampleResult fresh = engine.sample(request);
    QVERIFY2(fresh.ok(), fresh.error.c_str());
    QVERIFY(identical(fresh.final, plainRun.final));
    QCOMPARE(fresh.nfe, plainRun.nfe);
}

// x = alpha x_image + sigma eps with the seed's eps (on the linear path t0 = 0 and sigma = 1, so a
// plain run's first state is eps itself); the cut grid keeps the schedule's times after t_start.
void TestStarts::imageStartNoisesAlongThePath() {
    Engine engine;
    SampleRequest plain = mixtureRun("euler", 10);
    const SampleResult plainRun = engine.sample(plain);
    QVERIFY2(plainRun.ok(), plainRun.error.c_str());
    SampleRequest request = plain;
    request.start.kind = RunStart::Kind::Image;
    request.start.imageIsData = true;
    request.start.image = {{2}, {1.5f, -0.5f}};
    request.start.time = 0.35;
    const SampleResult run = engine.sample(request);
    QVERIFY2(run.ok(), run.error.c_str());
    QCOMPARE(run.times.front(), 0.35);
    QCOMPARE(run.times.size(), size_t(8));  // 0.35, then 0.4 .. 1
    QVERIFY(std::abs(run.times[1] - 0.4) < 1e-15);
    HostArray expected = plainRun.initial;
    for (size_t i = 0; i < expected.values.size(); ++i) {
        expected.values[i] = float(0.35 * request.start.image.values[i % 2] + 0.65 * double(expected.values[i]));
    }
    QVERIFY(maxAbsDiff(run.initial, expected) < 1e-6);
}

void TestStarts::newGridCoversTheRestWithAllItsSteps() {
    Engine engine;
    SampleRequest request = mixtureRun("euler", 5);
    request.start.time = 0.5;
    request.start.newGrid = true;
    const SampleResult run = engine.sample(request);
    QVERIFY2(run.ok(), run.error.c_str());
    QCOMPARE(run.steps, 5);
    for (int i = 0; i <= 5; ++i) QVERIFY(std::abs(run.times[i] - (0.5 + 0.1 * i)) < 1e-12);
}

void TestStarts::roundTripConvergesAtLeastAtTheSolversOrder_data() {
    QTest::addColumn<QString>("solver");
    QTest::addColumn<double>("order");
    QTest::newRow("euler") << "euler" << 1.0;
    QTest::newRow("ddim") << "ddim" << 1.0;
    QTest::newRow("heun") << "heun" << 2.0;
    QTest::newRow("midpoint") << "midpoint" << 2.0;
    QTest::newRow("dpm++2m") << "dpm++2m" << 2.0;
    QTest::newRow("rk4") << "rk4" << 4.0;
}

// On the karras grid the first-order steps at sigma = 0 span 0.002 of VE noise, far below the
// solvers' own error at these step counts, so the round trip shows each solver's order (it may
// show more: the backward errors partly cancel the forward ones).
void TestStarts::roundTripConvergesAtLeastAtTheSolversOrder() {
    QFETCH(QString, solver);
    QFETCH(double, order);
    Engine engine;
    SampleRequest made = mixtureRun("dopri5", 8);
    made.dtype = "float64";
    made.rtol = made.atol = 1e-10;
    const SampleResult sample = engine.sample(made);
    QVERIFY2(sample.ok(), sample.error.c_str());
    std::vector<double> errors;
    for (const int steps : {32, 64}) {
        InvertRequest request;
        request.settings.model = made.model;
        request.settings.solver = solver.toStdString();
        request.settings.schedule = "karras";
        request.settings.steps = steps;
        request.settings.dtype = "float64";
        request.images = sample.final;
        request.imageIsData = true;
        const InvertResult result = engine.invert(request);
        QVERIFY2(result.ok(), result.error.c_str());
        QCOMPARE(result.steps, steps);
        errors.push_back(result.roundtripRmse);
    }
    const double measured = std::log2(errors[0] / errors[1]);
    QVERIFY2(measured > order - 0.3,
             qPrintable(QString("%1: errors %2, %3, order %4").arg(solver).arg(errors[0]).arg(errors[1]).arg(measured)));
}

// The sample's own noise (its first state: on the linear path sigma(0) = 1) comes back. What
// separates them: dopri5's tolerance (1e-9, relative), and the two first-order steps at sigma = 0
// of size sigma_a = 1e-3. For a component of std s = 0.25 the noise direction's slope there is
// about sigma_a / s^2, so the backward step misplaces x_a by about sigma_a * (sigma_a / s^2) *
// |x_N - x_a| <= sigma_a^3 |v| / s^2 ~ 1e-3^3 * 4 / 0.0625 ~ 6e-8, and the flow back to the
// noise stretches distances by at most about 1/s = 4: far below the 1e-5 allowed here.
void TestStarts::dopri5RecoversTheNoiseThatMadeTheSample() {
    Engine engine;
    SampleRequest made = mixtureRun("dopri5", 8);
    made.dtype = "float64";
    made.rtol = made.atol = 1e-9;
    const SampleResult sample = engine.sample(made);
    QVERIFY2(sample.ok(), sample.error.c_str());
    InvertRequest request;
    request.settings = made;
    request.settings.recordTrajectory = false;
    request.images = sample.final;
    request.imageIsData = true;
    const InvertResult result = engine.invert(request);
    QVERIFY2(result.ok(), result.error.c_str());
    QVERIFY2(maxAbsDiff(result.noise, sample.initial) < 1e-5, qPrintable(QString::number(maxAbsDiff(result.noise, sample.initial))));
    QVERIFY(result.roundtripRmse < 1e-6);
    QVERIFY(result.nfe > 0 && result.roundtripNfe > 0);
}

void TestStarts::normalityFiguresOnKnownValues() {
    QCOMPARE(standardNormalCdf(0.0), 0.5);
    // The 5% critical value of Kolmogorov's distribution is 1.3581.
    QVERIFY(std::abs(kolmogorovTail(1.3581) - 0.05) < 1e-4);
    // n exact quantiles at (i + 1/2)/n: the distance is 1/(2n), the moments those of N(0, 1).
    const int n = 4000;
    std::vector<double> quantiles;
    for (int i = 0; i < n; ++i) quantiles.push_back(normalQuantile((i + 0.5) / n));
    const NormalityFigures normal = normalityOf(quantiles);
    QVERIFY(std::abs(normal.distance - 0.5 / n) < 1e-9);
    QVERIFY(normal.p > 0.999);
    QVERIFY(std::abs(normal.mean) < 1e-9 && std::abs(normal.skewness) < 1e-6);
    QVERIFY(std::abs(normal.std - 1.0) < 2e-3 && std::abs(normal.kurtosis) < 0.1);
    // Evenly spread on [-1, 1]: excess kurtosis -6/5, and far from Gaussian.
    std::vector<double> uniform;
    for (int i = 0; i < n; ++i) uniform.push_back(-1.0 + (2.0 * i + 1.0) / n);
    const NormalityFigures flat = normalityOf(uniform);
    QVERIFY(std::abs(flat.kurtosis + 1.2) < 1e-5);
    QVERIFY(std::abs(flat.std - 1.0 / std::sqrt(3.0)) < 1e-6);
    QVERIFY(flat.p < 1e-6);
}

void TestStarts::badStartsAreRefusedInWords() {
    Engine engine;
    SampleRequest request = mixtureRun("euler", 4);
    request.start.time = 1.0;
    SampleResult result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(result.error.find("t_start") != std::string::npos, result.error.c_str());

    request.start.time = 0.0;
    request.start.noise = {{3}, {0.f, 1.f, 2.f}};
    result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(result.error.find("[2]") != std::string::npos, result.error.c_str());

    SampleRequest image;
    image.model = "fashion-mnist:300";
    image.start.kind = RunStart::Kind::Image;
    image.start.image = {{1, 1, 32, 32}, std::vector<float>(32 * 32, 0.f)};
    image.start.time = 0.5;
    result = engine.sample(image);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(result.error.find("[1, 28, 28]") != std::string::npos, result.error.c_str());

    InvertRequest invert;
    invert.settings.model = "gmm:8gaussians";
    invert.settings.solver = "ddpm";
    invert.images = {{1, 2}, {1.f, 1.f}};
    invert.imageIsData = true;
    const InvertResult inverted = engine.invert(invert);
    QCOMPARE(inverted.failure, Failure::InvalidRequest);
    QVERIFY2(inverted.error.find("deterministic") != std::string::npos, inverted.error.c_str());

    const SampleRequest parent = mixtureRun("euler", 4);
    const SampleResult parentRun = engine.sample(parent);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, Engine::forkStart(parent, parentRun, 4, parent));
}

QTEST_GUILESS_MAIN(TestStarts)
#include "tst_starts.moc"
