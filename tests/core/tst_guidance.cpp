// Guidance (DESIGN.md section 6) against independent computations and exact special cases: cfg's
// end points and its sameness in every parameterization, APG's reduction to cfg and its momentum
// and threshold, rescale's end points, CFG-Zero*'s scale on hand-made vectors and its frozen first
// steps, and the interval switching exactly at its ends.
#include <cmath>
#include <limits>

#include <QtTest/QtTest>
#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/sampling/Guidance.h"
#include "core/sampling/ProbabilityPath.h"

using namespace flowscope::core;

namespace {

double maxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

torch::Tensor randomBatch(int64_t seed) {
    torch::manual_seed(seed);
    return torch::randn({3, 2, 4, 4}, torch::kFloat64);
}

GuidanceSettings method(GuidanceMethod kind, double scale) {
    GuidanceSettings settings;
    settings.method = kind;
    settings.scale = scale;
    return settings;
}

// v = alpha' D + sigma' (x - alpha D) / sigma, written out element by element.
torch::Tensor velocity(const torch::Tensor& data, const torch::Tensor& x, const PathPoint& p) {
    torch::Tensor out = torch::empty_like(x);
    auto d = data.flatten(), xs = x.flatten(), o = out.flatten();
    for (int64_t i = 0; i < x.numel(); ++i) {
        const double di = d[i].item<double>(), xi = xs[i].item<double>();
        o[i] = p.alphaDot * di + p.sigmaDot * (xi - p.alpha * di) / p.sigma;
    }
    return out;
}

}  // namespace

class TestGuidance : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void cfgEndsAreTheTwoModels();
    void cfgIsTheSameInEveryParameterization();
    void apgWithoutItsPartsIsCfg();
    void apgMomentumAndThreshold();
    void rescaleEnds();
    void cfgZeroScaleOnHandMadeVectors();
    void cfgZeroHoldsTheFirstSteps();
    void intervalSwitchesExactlyAtItsEnds();
    void badSettingsAreRefused();
};

void TestGuidance::cfgEndsAreTheTwoModels() {
    const auto dc = randomBatch(1), du = randomBatch(2), x = randomBatch(3);
    const PathPoint p = makePath("linear")->at(0.4);
    Guidance one(method(GuidanceMethod::Cfg, 1.0)), zero(method(GuidanceMethod::Cfg, 0.0));
    QVERIFY(maxAbsDiff(one.guide(dc, du, x, p, 0), dc) < 1e-15);
    QVERIFY(maxAbsDiff(zero.guide(dc, du, x, p, 0), du) < 1e-15);
    Guidance five(method(GuidanceMethod::Cfg, 5.0));
    const auto guided = five.guide(dc, du, x, p, 0);
    for (int64_t i = 0; i < dc.numel(); i += 7) {
        const double expected = du.flatten()[i].item<double>() + 5.0 * (dc.flatten()[i].item<double>() - du.flatten()[i].item<double>());
        QVERIFY(std::abs(guided.flatten()[i].item<double>() - expected) < 1e-12);
    }
}

void TestGuidance::cfgIsTheSameInEveryParameterization() {
    // Every parameterization is affine in x̂0 at fixed (x, t): guiding velocities gives the velocity
    // of the guided x̂0.
    const auto dc = randomBatch(4), du = randomBatch(5), x = randomBatch(6);
    for (const char* name : {"linear", "vp", "cosine"}) {
        const PathPoint p = makePath(name)->at(0.3);
        Guidance cfg(method(GuidanceMethod::Cfg, 3.0));
        const auto guided = cfg.guide(dc, du, x, p, 0);
        const auto vc = velocity(dc, x, p), vu = velocity(du, x, p);
        QVERIFY2(maxAbsDiff(velocity(guided, x, p), vu + 3.0 * (vc - vu)) < 1e-10, name);
    }
}

void TestGuidance::apgWithoutItsPartsIsCfg() {
    const auto dc = randomBatch(7), du = randomBatch(8), x = randomBatch(9);
    const PathPoint p = makePath("vp")->at(0.6);
    GuidanceSettings apg = method(GuidanceMethod::Apg, 4.0);
    apg.apgEta = 1.0;
    Guidance a(apg), c(method(GuidanceMethod::Cfg, 4.0));
    QVERIFY(maxAbsDiff(a.guide(dc, du, x, p, 0), c.guide(dc, du, x, p, 0)) < 1e-12);
    // eta = 0 keeps only the part of D_c - D_u orthogonal to D_c.
    Guidance orthogonal(method(GuidanceMethod::Apg, 4.0));
    const auto guided = orthogonal.guide(dc, du, x, p, 0);
    const auto change = (guided - dc).reshape({3, -1});
    QVERIFY((change * dc.reshape({3, -1})).sum(1).abs().max().item<double>() < 1e-10);
}

void TestGuidance::apgMomentumAndThreshold() {
    const auto dc = randomBatch(10), du1 = randomBatch(11), du2 = randomBatch(12), x = randomBatch(13);
    const PathPoint p = makePath("linear")->at(0.5);
    GuidanceSettings settings = method(GuidanceMethod::Apg, 2.0);
    settings.apgEta = 1.0;
    settings.apgMomentum = 0.5;
    Guidance apg(settings);
    apg.guide(dc, du1, x, p, 0);
    // Second step: m = Delta_2 + 0.5 Delta_1; with eta = 1 the update is (w - 1) m.
    const auto expected = dc + 1.0 * ((dc - du2) + 0.5 * (dc - du1));
    QVERIFY(maxAbsDiff(apg.guide(dc, du2, x, p, 1), expected) < 1e-12);
    // A threshold r caps |Delta'| at r per sample.
    settings.apgMomentum = 0.0;
    settings.apgNorm = 0.25;
    Guidance capped(settings);
    const auto change = (capped.guide(dc, du1, x, p, 0) - dc).reshape({3, -1}).norm(2, 1);
    QVERIFY(maxAbsDiff(change, torch::full({3}, 0.25, torch::kFloat64)) < 1e-12);
}

void TestGuidance::rescaleEnds() {
    const auto dc = randomBatch(14), du = randomBatch(15), x = randomBatch(16);
    const PathPoint p = makePath("linear")->at(0.5);
    GuidanceSettings settings = method(GuidanceMethod::Cfg, 6.0);
    Guidance plain(settings);
    settings.rescale = 1.0;
    Guidance full(settings);
    const auto guided = full.guide(dc, du, x, p, 0);
    // phi = 1: the guided prediction, scaled to D_c's spread.
    QVERIFY(maxAbsDiff(guided.reshape({3, -1}).std(1, false), dc.reshape({3, -1}).std(1, false)) < 1e-12);
    // ... which is cfg's prediction times a number per sample.
    const auto g = plain.guide(dc, du, x, p, 0);
    const auto factor = (dc.reshape({3, -1}).std(1, false) / g.reshape({3, -1}).std(1, false)).reshape({3, 1, 1, 1});
    QVERIFY(maxAbsDiff(guided, factor * g) < 1e-12);
    // phi = 0: cfg itself.
    settings.rescale = 0.0;
    Guidance none(settings);
    QVERIFY(maxAbsDiff(none.guide(dc, du, x, p, 0), g) == 0.0);
}

void TestGuidance::cfgZeroScaleOnHandMadeVectors() {
    const auto vc = torch::tensor({1.0, 0.0, 3.0, 4.0, 1.0, 1.0}, torch::kFloat64).reshape({3, 2});
    const auto vu = torch::tensor({2.0, 0.0, 0.0, 0.0, -1.0, 1.0}, torch::kFloat64).reshape({3, 2});
    // <(1,0),(2,0)>/4 = 0.5; |v_u| = 0 gives 1; <(1,1),(-1,1)>/2 = 0.
    QVERIFY(maxAbsDiff(cfgZeroScale(vc, vu), torch::tensor({0.5, 1.0, 0.0}, torch::kFloat64)) < 1e-15);
}

void TestGuidance::cfgZeroHoldsTheFirstSteps() {
    const auto dc = randomBatch(17), du = randomBatch(18), x = randomBatch(19);
    const PathPoint p = makePath("vp")->at(0.2);
    GuidanceSettings settings = method(GuidanceMethod::CfgZero, 3.0);
    settings.cfgZeroSteps = 2;
    Guidance zero(settings);
    QVERIFY(velocity(zero.guide(dc, du, x, p, 1), x, p).abs().max().item<double>() < 1e-10);
    // After them: v = s v_u + w (v_c - s v_u) with s per sample.
    const auto vc = velocity(dc, x, p), vu = velocity(du, x, p);
    const auto s = cfgZeroScale(vc, vu).reshape({3, 1, 1, 1});
    QVERIFY(maxAbsDiff(velocity(zero.guide(dc, du, x, p, 2), x, p), s * vu + 3.0 * (vc - s * vu)) < 1e-9);
}

void TestGuidance::intervalSwitchesExactlyAtItsEnds() {
    const auto dc = randomBatch(20), du = randomBatch(21), x = randomBatch(22);
    GuidanceSettings settings = method(GuidanceMethod::Cfg, 4.0);
    settings.intervalLow = 0.25;
    settings.intervalHigh = 0.75;
    Guidance cfg(settings);
    const auto linear = makePath("linear");
    // On the linear path tau = t.
    for (const double t : {0.25, 0.5, 0.75}) {
        QVERIFY(cfg.needsUnconditional(linear->at(t), 0));
        QVERIFY(maxAbsDiff(cfg.guide(dc, du, x, linear->at(t), 0), dc) > 0.1);
    }
    for (const double t : {std::nextafter(0.25, 0.0), std::nextafter(0.75, 1.0)}) {
        QVERIFY(!cfg.needsUnconditional(linear->at(t), 0));
        QVERIFY(maxAbsDiff(cfg.guide(dc, du, x, linear->at(t), 0), dc) == 0.0);
    }
    // The same noise levels on another path: tau = 1 / (1 + sigma/alpha).
    const auto vp = makePath("vp");
    const double t = vp->timeForLambda(0.0);  // alpha = sigma: tau = 1/2
    QVERIFY(std::abs(noiseLevelCoordinate(vp->alpha(t), vp->sigma(t)) - 0.5) < 1e-9);
    QVERIFY(cfg.needsUnconditional(vp->at(t), 0));
}

void TestGuidance::badSettingsAreRefused() {
    const auto refused = [](GuidanceSettings settings) {
        try {
            checkGuidance(settings);
        } catch (const InvalidRequestError&) {
            return true;
        }
        return false;
    };
    GuidanceSettings s = method(GuidanceMethod::Cfg, -0.5);
    QVERIFY(refused(s));
    s.scale = std::numeric_limits<double>::infinity();
    QVERIFY(refused(s));
    s = method(GuidanceMethod::Cfg, 2.0);
    s.intervalLow = 0.8;
    s.intervalHigh = 0.2;
    QVERIFY(refused(s));
    s.intervalLow = -0.1;
    s.intervalHigh = 0.5;
    QVERIFY(refused(s));
    s = method(GuidanceMethod::Cfg, 2.0);
    s.rescale = 1.5;
    QVERIFY(refused(s));
    QVERIFY(!refused(method(GuidanceMethod::Apg, 7.5)));
    QVERIFY_THROWS_EXCEPTION(UnknownNameError, parseGuidanceMethod("pag"));
    QCOMPARE(parseGuidanceMethod("cfg-zero"), GuidanceMethod::CfgZero);
}

QTEST_APPLESS_MAIN(TestGuidance)
#include "tst_guidance.moc"
