// Guidance (DESIGN.md section 6) against independent computations and exact special cases: cfg's
// end points and its sameness in every parameterization, APG's reduction to cfg and its momentum
// and threshold, rescale's end points, CFG-Zero*'s scale on hand-made vectors and its frozen first
// steps, and the interval switching exactly at its ends.
#include <array>
#include <cmath>
#include <limits>

#include <QtTest/QtTest>
#include <torch/torch.h>

#include "core/api/Engine.h"
#include "core/api/Errors.h"
#include "core/models/Datasets.h"
#include "core/models/EmpiricalDenoiser.h"
#include "core/models/GaussianMixture.h"
#include "core/models/LabelledDenoiser.h"
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

// One 8gaussians component's posterior mean, written out: m + alpha s^2 (x - alpha m) / (alpha^2 s^2 + sigma^2).
double componentMean(double x, double m, double alpha, double sigma) {
    const double s2 = 0.25 * 0.25;
    return m + alpha * s2 * (x - alpha * m) / (alpha * alpha * s2 + sigma * sigma);
}

// The 8gaussians denoiser by hand, for one 2-D point: class c's single Gaussian, or (c = -1) the
// equal-weight mixture of all eight by their responsibilities.
std::array<double, 2> mixtureMean(const double* x, double alpha, double sigma, int c) {
    std::array<double, 2> out{0.0, 0.0};
    double logits[8], largest = -1e300;
    for (int k = 0; k < 8; ++k) {
        const double mx = 2.0 * std::cos(k * M_PI / 4.0), my = 2.0 * std::sin(k * M_PI / 4.0);
        const double var = alpha * alpha * 0.0625 + sigma * sigma;
        const double dx = x[0] - alpha * mx, dy = x[1] - alpha * my;
        logits[k] = (c < 0 || c == k) ? -std::log(var) - (dx * dx + dy * dy) / (2.0 * var) : -1e300;
        largest = std::max(largest, logits[k]);
    }
    double total = 0.0;
    for (int k = 0; k < 8; ++k) {
        if (logits[k] <= -1e299) continue;
        const double weight = std::exp(logits[k] - largest);
        total += weight;
        out[0] += weight * componentMean(x[0], 2.0 * std::cos(k * M_PI / 4.0), alpha, sigma);
        out[1] += weight * componentMean(x[1], 2.0 * std::sin(k * M_PI / 4.0), alpha, sigma);
    }
    out[0] /= total;
    out[1] /= total;
    return out;
}

// Rows of a [B, 2] tensor through mixtureMean.
torch::Tensor mixtureMeans(const torch::Tensor& x, const PathPoint& p, int c) {
    torch::Tensor out = torch::empty_like(x);
    const torch::Tensor xs = x.contiguous();
    for (int64_t b = 0; b < x.size(0); ++b) {
        const auto mean = mixtureMean(xs.data_ptr<double>() + 2 * b, p.alpha, p.sigma, c);
        out[b][0] = mean[0];
        out[b][1] = mean[1];
    }
    return out;
}

// The guided x̂0 of DESIGN.md section 6 for 2-D rows, written out per row from D_c and D_u.
torch::Tensor guidedByHand(const GuidanceSettings& s, const torch::Tensor& dc, const torch::Tensor& du,
                           const torch::Tensor& x, const PathPoint& p) {
    const double tau = 1.0 / (1.0 + p.sigma / p.alpha);
    if (tau < s.intervalLow || tau > s.intervalHigh) return dc.clone();
    torch::Tensor out = torch::empty_like(dc);
    for (int64_t b = 0; b < dc.size(0); ++b) {
        const double c0 = dc[b][0].item<double>(), c1 = dc[b][1].item<double>();
        const double u0 = du[b][0].item<double>(), u1 = du[b][1].item<double>();
        double d0 = 0.0, d1 = 0.0;
        if (s.method == GuidanceMethod::Cfg) {
            d0 = u0 + s.scale * (c0 - u0);
            d1 = u1 + s.scale * (c1 - u1);
            if (s.rescale > 0.0) {
                // Population std of the two elements is |a - b| / 2.
                const double ratio = std::abs(c0 - c1) / std::abs(d0 - d1);
                d0 = s.rescale * ratio * d0 + (1.0 - s.rescale) * d0;
                d1 = s.rescale * ratio * d1 + (1.0 - s.rescale) * d1;
            }
        } else if (s.method == GuidanceMethod::Apg) {
            const double e0 = c0 - u0, e1 = c1 - u1;
            const double along = (e0 * c0 + e1 * c1) / (c0 * c0 + c1 * c1);
            const double par0 = along * c0, par1 = along * c1;
            d0 = c0 + (s.scale - 1.0) * ((e0 - par0) + s.apgEta * par0);
            d1 = c1 + (s.scale - 1.0) * ((e1 - par1) + s.apgEta * par1);
        } else if (s.method == GuidanceMethod::CfgZero) {
            const double x0 = x[b][0].item<double>(), x1 = x[b][1].item<double>();
            auto vel = [&](double d, double xi) { return p.alphaDot * d + p.sigmaDot * (xi - p.alpha * d) / p.sigma; };
            const double vc0 = vel(c0, x0), vc1 = vel(c1, x1), vu0 = vel(u0, x0), vu1 = vel(u1, x1);
            const double k = (vc0 * vu0 + vc1 * vu1) / (vu0 * vu0 + vu1 * vu1);
            const double v0 = k * vu0 + s.scale * (vc0 - k * vu0), v1 = k * vu1 + s.scale * (vc1 - k * vu1);
            const double denominator = p.alphaDot * p.sigma - p.sigmaDot * p.alpha;
            d0 = (p.sigma * v0 - p.sigmaDot * x0) / denominator;
            d1 = (p.sigma * v1 - p.sigmaDot * x1) / denominator;
        }
        out[b][0] = d0;
        out[b][1] = d1;
    }
    return out;
}

double finalDistance(const SampleResult& a, const SampleResult& b) {
    double largest = 0.0;
    for (size_t i = 0; i < a.final.values.size(); ++i) {
        largest = std::max(largest, double(std::abs(a.final.values[i] - b.final.values[i])));
    }
    return largest;
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
    void guidedMixtureMatchesClosedForms();
    void oneBatchedCallEqualsTwoCalls();
    void labelledDenoiserConditionsEachRow();
    void scaleOneIsConditionalAndZeroUnconditional();
    void conditionalDenoiserLandsOnItsClass();
    void requestsAreRefusedInWords();
    void sweepRepeatsItsCellsPerScale();
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
    QVERIFY(parseGuidanceMethod("cfg-zero") == GuidanceMethod::CfgZero);
}

void TestGuidance::guidedMixtureMatchesClosedForms() {
    // One Gaussian per class: D_c in closed form, D_u the mixture, both by hand; every method's
    // guided x̂0 on every path (cfg-zero in each path's own velocity) against DESIGN's formulas.
    auto mixture = std::shared_ptr<GaussianMixture>(GaussianMixture::named("8gaussians"));
    QCOMPARE(mixture->classNames().size(), size_t{8});
    QCOMPARE(QString::fromStdString(mixture->classNames()[2]), QString("north"));
    mixture->prepare(torch::kCPU, torch::kFloat64);
    torch::manual_seed(5);
    const torch::Tensor x = 1.5 * torch::randn({6, 2}, torch::kFloat64);
    std::vector<GuidanceSettings> methods;
    methods.push_back(method(GuidanceMethod::Cfg, 3.0));
    methods.push_back(method(GuidanceMethod::Cfg, 0.0));
    methods.push_back(method(GuidanceMethod::Cfg, 4.0));
    methods.back().rescale = 0.7;
    methods.push_back(method(GuidanceMethod::Cfg, 2.5));
    methods.back().intervalLow = 0.4;
    methods.back().intervalHigh = 0.6;
    methods.push_back(method(GuidanceMethod::Apg, 3.0));
    methods.back().apgEta = 0.3;
    methods.push_back(method(GuidanceMethod::CfgZero, 3.0));
    for (const char* pathName : {"linear", "vp", "cosine", "ve"}) {
        const auto path = makePath(pathName);
        for (const double t : {0.3, 0.5, 0.8}) {
            const PathPoint p = path->at(t);
            const torch::Tensor dc = mixtureMeans(x, p, 2), du = mixtureMeans(x, p, -1);
            for (const GuidanceSettings& settings : methods) {
                GuidedModel guided(mixture, 2, settings, *path);
                const torch::Tensor got = guided.predict(x, p).data;
                const double error = maxAbsDiff(got, guidedByHand(settings, dc, du, x, p));
                QVERIFY2(error < 1e-9, qPrintable(QString("%1 t=%2 %3: %4").arg(pathName).arg(t)
                                                      .arg(QString::fromStdString(toString(settings.method))).arg(error)));
            }
        }
    }
}

void TestGuidance::oneBatchedCallEqualsTwoCalls() {
    auto mixture = std::shared_ptr<GaussianMixture>(GaussianMixture::named("rings"));
    mixture->prepare(torch::kCPU, torch::kFloat64);
    torch::manual_seed(6);
    const torch::Tensor x = torch::randn({5, 2}, torch::kFloat64);
    const auto path = makePath("vp");
    const PathPoint p = path->at(0.55);
    GuidanceSettings settings = method(GuidanceMethod::Cfg, 5.0);
    GuidedModel guided(mixture, 1, settings, *path);
    const torch::Tensor batched = guided.predict(x, p).data;
    QCOMPARE(guided.forwardPasses(), int64_t{1});
    mixture->setRowClasses(std::vector<int64_t>(5, 1));
    const torch::Tensor dc = mixture->denoise(x, p.alpha, p.sigma);
    mixture->setRowClasses({});
    const torch::Tensor du = mixture->denoise(x, p.alpha, p.sigma);
    QVERIFY(maxAbsDiff(batched, cfgPrediction(dc, du, 5.0)) < 1e-12);
    // The unconditional model is the whole mixture: the model with no classes set.
    QVERIFY(maxAbsDiff(du, mixture->denoise(x, p.alpha, p.sigma)) == 0.0);
    // Outside the interval a step asks for the conditional prediction only.
    settings.intervalLow = 0.9;
    GuidedModel late(mixture, 1, settings, *path);
    QVERIFY(maxAbsDiff(late.predict(x, p).data, dc) == 0.0);
}

void TestGuidance::labelledDenoiserConditionsEachRow() {
    // Two classes of three items each: D_c is the empirical denoiser of that class's items alone.
    torch::manual_seed(7);
    const torch::Tensor data = torch::randn({6, 1, 2, 2});
    const std::vector<int64_t> labels{0, 1, 0, 1, 1, 0};
    LabelledDenoiser model(std::make_shared<EmpiricalDenoiser>("six", data), labels, {"even", "odd"});
    model.prepare(torch::kCPU, torch::kFloat64);
    EmpiricalDenoiser even("even", data.index_select(0, torch::tensor({0, 2, 5}))),
        odd("odd", data.index_select(0, torch::tensor({1, 3, 4}))), all("all", data);
    for (auto* m : {&even, &odd, &all}) m->prepare(torch::kCPU, torch::kFloat64);
    const torch::Tensor x = torch::randn({4, 1, 2, 2}, torch::kFloat64);
    model.setRowClasses({1, Model::kNullClass, 0, 1});
    const torch::Tensor got = model.denoise(x, 0.6, 0.8);
    model.setRowClasses({});
    const auto row = [&](int64_t b) { return x.narrow(0, b, 1); };
    QVERIFY(maxAbsDiff(got.narrow(0, 0, 1), odd.denoise(row(0), 0.6, 0.8)) < 1e-12);
    QVERIFY(maxAbsDiff(got.narrow(0, 1, 1), all.denoise(row(1), 0.6, 0.8)) < 1e-12);
    QVERIFY(maxAbsDiff(got.narrow(0, 2, 1), even.denoise(row(2), 0.6, 0.8)) < 1e-12);
    QVERIFY(maxAbsDiff(got.narrow(0, 3, 1), odd.denoise(row(3), 0.6, 0.8)) < 1e-12);
}

void TestGuidance::scaleOneIsConditionalAndZeroUnconditional() {
    Engine engine;
    SampleRequest request;
    request.model = "gmm:8gaussians";
    request.solver = "heun";
    request.steps = 12;
    request.batch = 64;
    request.seed = 11;
    const SampleResult unconditional = engine.sample(request);
    request.condition = "north";
    const SampleResult conditional = engine.sample(request);
    QVERIFY2(conditional.ok(), conditional.error.c_str());
    QCOMPARE(conditional.forwardPasses, conditional.nfe);
    request.guidance = method(GuidanceMethod::Cfg, 1.0);
    const SampleResult one = engine.sample(request);
    QCOMPARE(finalDistance(one, conditional), 0.0);
    request.guidance.scale = 0.0;
    const SampleResult zero = engine.sample(request);
    QVERIFY2(zero.ok(), zero.error.c_str());
    QVERIFY(finalDistance(zero, unconditional) < 1e-5);
    // One batched call per evaluation: as many forward passes as evaluations.
    QCOMPARE(zero.forwardPasses, zero.nfe);
    // The conditional samples sit near the north component (0, 2); w = 4 pushes them past it.
    request.guidance.scale = 4.0;
    const SampleResult pushed = engine.sample(request);
    double meanY = 0.0, pushedY = 0.0;
    for (int b = 0; b < 64; ++b) {
        meanY += conditional.final.values[size_t(2 * b + 1)] / 64.0;
        pushedY += pushed.final.values[size_t(2 * b + 1)] / 64.0;
    }
    QVERIFY2(std::abs(meanY - 2.0) < 0.15, qPrintable(QString::number(meanY)));
    QVERIFY2(pushedY > meanY + 0.1, qPrintable(QString("%1 vs %2").arg(pushedY).arg(meanY)));
}

void TestGuidance::conditionalDenoiserLandsOnItsClass() {
    if (!Engine::info().fashionMnistInstalled) QSKIP("the Fashion-MNIST dataset is not installed");
    Engine engine;
    SampleRequest request;
    request.model = "fashion-mnist:600";
    request.solver = "heun";
    request.steps = 30;
    request.batch = 6;
    request.seed = 3;
    request.condition = "Trouser";
    const SampleResult result = engine.sample(request);
    QVERIFY2(result.ok(), result.error.c_str());
    const torch::Tensor images = loadFashionMnist(true, 600).reshape({600, -1});
    const torch::Tensor labels = loadFashionMnistLabels(true, 600);
    const torch::Tensor samples = torch::tensor(result.final.values).reshape({6, -1});
    // Each sample is (nearly) a training image, and that image is a trouser.
    const torch::Tensor distances = torch::cdist(samples, images);
    const auto [nearest, index] = distances.min(1);
    for (int b = 0; b < 6; ++b) {
        QCOMPARE(labels[index[b].item<int64_t>()].item<int64_t>(), int64_t{1});
        QVERIFY(nearest[b].item<double>() / std::sqrt(784.0) < 0.05);
    }
}

void TestGuidance::requestsAreRefusedInWords() {
    Engine engine;
    SampleRequest request;
    request.model = "points:moons";
    request.condition = "0";
    SampleResult result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(result.error.find("unconditional") != std::string::npos, result.error.c_str());
    request.model = "gmm:8gaussians";
    request.condition = "up";
    result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(result.error.find("'north-east'") != std::string::npos, result.error.c_str());
    request.condition = "8";
    QCOMPARE(engine.sample(request).failure, Failure::InvalidRequest);
    request.condition = "7";
    QVERIFY(engine.sample(request).ok());
    request.condition.clear();
    request.guidance = method(GuidanceMethod::Cfg, 3.0);
    result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    QVERIFY2(result.error.find("--class") != std::string::npos, result.error.c_str());
    request.condition = "west";
    request.guidance = method(GuidanceMethod::CfgZero, 3.0);
    request.guidance.cfgZeroSteps = 2;
    request.solver = "dopri5";
    result = engine.sample(request);
    QCOMPARE(result.failure, Failure::InvalidRequest);
    request.solver = "euler";
    QVERIFY(engine.sample(request).ok());
    QCOMPARE(Engine::describeModel("fashion-mnist").classes.size(), size_t{10});
    QCOMPARE(QString::fromStdString(Engine::describeModel("fashion-mnist").classes[9]), QString("Ankle boot"));
    QCOMPARE(Engine::describeModel("gmm:rings").classes.size(), size_t{3});
    QVERIFY(Engine::describeModel("points:moons").classes.empty());
}

void TestGuidance::sweepRepeatsItsCellsPerScale() {
    Engine engine;
    SweepRequest request;
    request.model = "gmm:checkerboard";
    request.steps = {2, 4};
    request.batch = 8;
    request.condition = "south-west";
    request.guidance = method(GuidanceMethod::Cfg, 1.0);
    request.cfgs = {1.0, 3.0};
    const SweepResult result = engine.sweep(request);
    QVERIFY2(result.ok(), result.error.c_str());
    QCOMPARE(result.rows.size(), size_t{4});
    QCOMPARE(result.rows[0].cfg, 1.0);
    QCOMPARE(result.rows[3].cfg, 3.0);
    QCOMPARE(result.rows[3].steps, 4);
    // Each scale has its own reference: more steps, closer to it.
    QVERIFY(result.rows[3].rmse < result.rows[2].rmse);
    request.condition.clear();
    QCOMPARE(engine.sweep(request).failure, Failure::InvalidRequest);
}

QTEST_APPLESS_MAIN(TestGuidance)
#include "tst_guidance.moc"
