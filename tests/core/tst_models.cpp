// Denoisers against closed forms: a one-component mixture is Gaussian conditioning; the
// empirical denoiser is the mean at zero signal and the nearest image at vanishing noise; the
// fused single pass equals the two-matrix-product form; a network re-timed from its native path
// reproduces the exact denoiser on every other path.
#include <cmath>

#include <QtTest/QtTest>
#include <torch/torch.h>

#include "core/api/Errors.h"
#include "core/models/EmpiricalDenoiser.h"
#include "core/models/GaussianMixture.h"
#include "core/models/ModelSpec.h"
#include "core/models/NetworkDenoiser.h"
#include "core/sampling/Parameterization.h"
#include "tests/TestSupport.h"

using namespace flowscope::core;
using flowscope::test::maxAbsDiff;

class TestModels : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void singleGaussianIsGaussianConditioning();
    void eightGaussiansMatchesDesign();
    void mixtureIsSmoothAtZeroNoise();
    void empiricalIsMeanWithoutSignal();
    void empiricalIsNearestImageAtLowNoise();
    void empiricalMatchesBruteForce();
    void fusedPassEqualsMatrixProducts();
    void chunkedProductsEqualWholeDataset();
    void bfloat16StorageIsDenoiserOfRoundedData();
    void retimedNetworkEqualsExactDenoiser_data();
    void retimedNetworkEqualsExactDenoiser();
    void retimingClampsAndSaysSo();
    void velocityRowsAreTheNetworksOwnOnItsPath();
    void vPredictionNeedsVpNativePath();
    void unknownMixtureListsNames();
    void fashionMnistSpecForms();
};

void TestModels::singleGaussianIsGaussianConditioning() {
    auto options = torch::TensorOptions().dtype(torch::kFloat64);
    GaussianMixture mixture("one", torch::tensor({{0.5, -1.0}}, options), torch::tensor({0.7}, options),
                            torch::tensor({1.0}, options));
    const auto x = torch::tensor({{0.3, 0.2}, {-2.0, 1.5}}, options);
    for (double alpha : {0.0, 0.3, 0.9}) {
        const double sigma = std::sqrt(1 - alpha * alpha) + 0.01;
        // x0 ~ N(m, s^2 I), x = alpha x0 + sigma eps: E[x0|x] = m + alpha s^2 (x - alpha m)/(alpha^2 s^2 + sigma^2).
        const auto m = torch::tensor({0.5, -1.0}, options);
        const double s2 = 0.49;
        const auto expected = m + alpha * s2 * (x - alpha * m) / (alpha * alpha * s2 + sigma * sigma);
        QVERIFY(maxAbsDiff(mixture.denoise(x, alpha, sigma), expected) < 1e-12);
    }
}

void TestModels::eightGaussiansMatchesDesign() {
    const auto mixture = GaussianMixture::named("8gaussians");
    QCOMPARE(mixture->means().size(0), 8);
    for (int k = 0; k < 8; ++k) {
        QVERIFY(std::abs(mixture->means()[k][0].item<double>() - 2 * std::cos(k * M_PI / 4)) < 1e-12);
        QVERIFY(std::abs(mixture->means()[k][1].item<double>() - 2 * std::sin(k * M_PI / 4)) < 1e-12);
        QCOMPARE(mixture->stds()[k].item<double>(), 0.25);
        QVERIFY(std::abs(mixture->weights()[k].item<double>() - 0.125) < 1e-15);
    }
    // Far out along a mean's direction at low noise, the posterior sits at that mean.
    const auto x = torch::tensor({{2.0, 0.0}}, torch::kFloat64);
    QVERIFY(maxAbsDiff(mixture->denoise(x, 1.0, 1e-4), x) < 1e-6);
}

void TestModels::mixtureIsSmoothAtZeroNoise() {
    for (const auto& name : GaussianMixture::names()) {
        const auto mixture = GaussianMixture::named(name);
        const auto x = torch::randn({16, 2}, torch::kFloat64) * 2;
        // sigma -> 0 with alpha = 1: the data point itself (the mixture has positive width).
        QVERIFY(maxAbsDiff(mixture->denoise(x, 1.0, 1e-7), x) < 1e-6);
        QVERIFY(torch::isfinite(mixture->denoise(x, 1.0, 1e-12)).all().item<bool>());
    }
}

void TestModels::empiricalIsMeanWithoutSignal() {
    const auto data = torch::randn({50, 3, 4, 4});
    EmpiricalDenoiser denoiser("test", data);
    const auto x = torch::randn({2, 3, 4, 4});
    const auto expected = data.mean(0, true).expand({2, 3, 4, 4});
    QVERIFY(maxAbsDiff(denoiser.denoise(x, 0.0, 1.0), expected) < 1e-5);
}

void TestModels::empiricalIsNearestImageAtLowNoise() {
    torch::manual_seed(3);
    const auto data = torch::rand({20, 1, 6, 6}) * 2 - 1;
    EmpiricalDenoiser denoiser("test", data);
    const auto x = data.narrow(0, 7, 1) + 0.01 * torch::randn({1, 1, 6, 6});
    QVERIFY(maxAbsDiff(denoiser.denoise(x, 1.0, 0.01), data.narrow(0, 7, 1)) < 1e-5);
}

void TestModels::empiricalMatchesBruteForce() {
    torch::manual_seed(4);
    const auto data = torch::randn({30, 5}, torch::kFloat64);
    EmpiricalDenoiser denoiser("test", data);
    const auto x = torch::randn({3, 5}, torch::kFloat64);
    const double alpha = 0.6, sigma = 0.8;
    // softmax_i(-|x - alpha d_i|^2 / (2 sigma^2)) d_i, computed directly.
    const auto distances = (x.unsqueeze(1) - alpha * data.unsqueeze(0)).pow(2).sum(-1);
    const auto expected = torch::softmax(-distances / (2 * sigma * sigma), 1).mm(data);
    QVERIFY(maxAbsDiff(denoiser.denoise(x, alpha, sigma), expected) < 1e-6);  // data stored as float32
}

void TestModels::fusedPassEqualsMatrixProducts() {
    torch::manual_seed(5);
    const auto data = torch::rand({5000, 1, 28, 28}) * 2 - 1;
    EmpiricalDenoiser denoiser("test", data);
    for (int64_t batch : {1, 3, 4}) {
        const auto x = torch::randn({batch, 784});
        for (auto [alpha, sigma] : {std::pair{0.0, 1.0}, std::pair{0.5, 0.5}, std::pair{0.95, 0.05}}) {
            const auto fused = denoiser.denoiseFused(x, alpha, sigma);
            const auto matmul = denoiser.denoiseMatmul(x, alpha, sigma);
            // Both run in float32, where logits of a few hundred carry ~1e-5 rounding; the exact
            // answer comes from the same formula in float64.
            const auto flat = data.reshape({5000, 784}).to(torch::kFloat64);
            const auto logits = (alpha / (sigma * sigma)) * x.to(torch::kFloat64).mm(flat.t()) -
                                (alpha * alpha / (2 * sigma * sigma)) * flat.pow(2).sum(1).unsqueeze(0);
            const auto exact = torch::softmax(logits, 1).mm(flat);
            const QString label = QString("batch %1 alpha %2").arg(batch).arg(alpha);
            QVERIFY2(maxAbsDiff(fused, exact) < 1e-4, qPrintable(label + QString(": fused %1").arg(maxAbsDiff(fused, exact))));
            QVERIFY2(maxAbsDiff(matmul, exact) < 1e-4, qPrintable(label + QString(": matmul %1").arg(maxAbsDiff(matmul, exact))));
        }
    }
}

void TestModels::chunkedProductsEqualWholeDataset() {
    // The online softmax across chunks of the dataset is exact arithmetic rearranged: in float64
    // it agrees with the softmax over the whole dataset to rounding, also where one image
    // dominates (low noise) and for a last chunk shorter than the others.
    torch::manual_seed(6);
    const auto data = torch::rand({1003, 64}) * 2 - 1;
    EmpiricalDenoiser denoiser("test", data);
    denoiser.prepare(torch::kCPU, torch::kFloat64);
    const auto x = torch::randn({5, 64}, torch::kFloat64);
    for (auto [alpha, sigma] : {std::pair{0.0, 1.0}, std::pair{0.5, 0.5}, std::pair{0.99, 0.01}}) {
        const auto whole = denoiser.denoiseMatmul(x, alpha, sigma);
        for (int64_t chunk : {1, 7, 100, 1002}) {
            const double difference = maxAbsDiff(denoiser.denoiseMatmul(x, alpha, sigma, chunk), whole);
            QVERIFY2(difference < 1e-12, qPrintable(QString("alpha %1 chunk %2: %3").arg(alpha).arg(chunk).arg(difference)));
        }
    }
}

void TestModels::bfloat16StorageIsDenoiserOfRoundedData() {
    // Kept in bfloat16, the denoiser is the float32 one of the rounded dataset: the same numbers
    // through the same operations in the fused pass, the same sums in another order in the
    // chunked products.
    torch::manual_seed(7);
    const auto data = torch::rand({3000, 1, 28, 28}) * 2 - 1;
    const auto rounded = data.to(torch::kBFloat16).to(torch::kFloat32);
    QVERIFY(maxAbsDiff(rounded, data) > 0.0);
    EmpiricalDenoiser stored("bf16", data, EmpiricalDenoiser::Storage::BFloat16);
    EmpiricalDenoiser reference("rounded", rounded);
    QVERIFY(stored.storage() == EmpiricalDenoiser::Storage::BFloat16);
    for (auto [alpha, sigma] : {std::pair{0.0, 1.0}, std::pair{0.5, 0.5}, std::pair{0.95, 0.05}}) {
        const QString label = QString("alpha %1").arg(alpha);
        const auto x1 = torch::randn({3, 1, 28, 28});
        QVERIFY2(torch::equal(stored.denoise(x1, alpha, sigma), reference.denoise(x1, alpha, sigma)),
                 qPrintable(label + ": fused pass"));
        const auto x16 = torch::randn({16, 1, 28, 28});
        const double products = maxAbsDiff(stored.denoise(x16, alpha, sigma), reference.denoise(x16, alpha, sigma));
        QVERIFY2(products < 1e-4, qPrintable(label + QString(": products %1").arg(products)));
        const auto x64 = x16.to(torch::kFloat64);
        const double wide = maxAbsDiff(stored.denoise(x64, alpha, sigma), reference.denoise(x64, alpha, sigma));
        QVERIFY2(wide < 1e-10, qPrintable(label + QString(": float64 %1").arg(wide)));
    }
    // A level per row (a sweep's lanes) goes through the chunked products as well.
    const auto x = torch::randn({4, 1, 28, 28}, torch::kFloat64);
    const std::vector<double> alpha{0.0, 0.3, 0.7, 0.95}, sigma{1.0, 0.7, 0.3, 0.05};
    QVERIFY(maxAbsDiff(stored.denoiseRows(x, alpha, sigma), reference.denoiseRows(x, alpha, sigma)) < 1e-10);
    // At low noise both return the nearest (rounded) image.
    const auto near = rounded.narrow(0, 11, 1) + 1e-3 * torch::randn({1, 1, 28, 28});
    QVERIFY(maxAbsDiff(stored.denoise(near, 1.0, 0.01), rounded.narrow(0, 11, 1)) < 1e-5);
}

void TestModels::retimedNetworkEqualsExactDenoiser_data() {
    QTest::addColumn<QString>("native");
    QTest::addColumn<QString>("prediction");
    QTest::addColumn<QString>("timeInput");
    QTest::newRow("linear velocity t") << "linear" << "velocity" << "t";
    QTest::newRow("linear velocity sigma") << "linear" << "velocity" << "sigma";
    QTest::newRow("vp epsilon timestep1000") << "vp" << "epsilon" << "timestep1000";
    QTest::newRow("cosine v t") << "cosine" << "v" << "t";
    QTest::newRow("ve data sigma") << "ve" << "data" << "sigma";
    QTest::newRow("vp data t") << "vp" << "data" << "t";
}

void TestModels::retimedNetworkEqualsExactDenoiser() {
    QFETCH(QString, native);
    QFETCH(QString, prediction);
    QFETCH(QString, timeInput);
    auto exact = GaussianMixture::named("8gaussians");
    auto nativePath = makePath(native.toStdString());
    const ProbabilityPath* nativeRef = nativePath.get();
    const auto kind = parseParameterization(prediction.toStdString());
    const auto input = parseTimeInput(timeInput.toStdString());
    // A "network" that is the exact mixture expressed in the native path's own terms.
    auto forward = [&, nativeRef](const torch::Tensor& x, const torch::Tensor& time, const torch::Tensor&) {
        const double value = time[0].item<double>();
        double t = value;
        if (input == TimeInput::Timestep1000) t = 1.0 - value / 999.0;
        if (input == TimeInput::Sigma) {
            // Invert sigma(t) by bisection: the network is only told sigma.
            double lo = 0.0, hi = 1.0;
            for (int i = 0; i < 200; ++i) {
                const double mid = 0.5 * (lo + hi);
                (nativeRef->sigma(mid) > value ? lo : hi) = mid;
            }
            t = 0.5 * (lo + hi);
        }
        const PathPoint p = nativeRef->at(t);
        return dataToPrediction(kind, exact->denoise(x, p.alpha, p.sigma), x, p);
    };
    NetworkDenoiser network("net", forward, {2}, std::move(nativePath), kind, input);
    const auto x = torch::randn({6, 2}, torch::kFloat64) * 1.5;
    for (const auto& target : pathNames()) {
        const auto path = makePath(target);
        for (double t : {0.1, 0.4, 0.7, 0.95, 0.9995}) {
            const PathPoint p = path->at(t);
            // Beyond the native range's clean end (VE-equivalent noise 0.002) the network is
            // evaluated there; the exact answer then is the denoiser at that noise level.
            // The denoiser is invariant to scaling x, alpha and sigma together, so that is the
            // target's alpha with sigma = 0.002 alpha.
            const double lambda = std::log(p.alpha / p.sigma);
            const double sigma = lambda > -std::log(0.002) ? p.alpha * 0.002 : p.sigma;
            const auto expected = exact->denoise(x, p.alpha, sigma);
            const auto got = network.denoise(x, p.alpha, p.sigma);
            QVERIFY2(maxAbsDiff(got, expected) < 1e-6,
                     qPrintable(QString("%1 at t=%2: %3").arg(target.c_str()).arg(t).arg(maxAbsDiff(got, expected))));
            // predict gives the same x̂0, and a velocity network on its own path (unclamped) its
            // output as the velocity: what the velocity derived from x̂0 is, to rounding.
            const auto predicted = network.predict(x, p);
            QVERIFY(maxAbsDiff(predicted.data, got) < 1e-12);
            const bool ownVelocity = target == native.toStdString() && kind == Parameterization::Velocity && sigma == p.sigma;
            QCOMPARE(predicted.velocity.defined(), ownVelocity);
            if (ownVelocity) {
                const auto derived = velocityFromData(got, x, p);
                QVERIFY2(maxAbsDiff(predicted.velocity, derived) < 1e-9 * (1.0 + derived.abs().max().item<double>()),
                         qPrintable(QString("velocity at t=%1").arg(t)));
            }
        }
    }
}

void TestModels::velocityRowsAreTheNetworksOwnOnItsPath() {
    // A velocity network on `linear` (the exact mixture's velocity, row by row at each row's own
    // time), asked for rows on linear and on vp at once, as a sweep's lanes do: each row gets
    // what it would alone, the network's output as the velocity on linear, the velocity derived
    // from x̂0 on vp.
    auto exact = GaussianMixture::named("8gaussians");
    auto linear = makePath("linear");
    const ProbabilityPath* native = linear.get();
    auto forward = [&, native](const torch::Tensor& x, const torch::Tensor& time, const torch::Tensor&) {
        std::vector<torch::Tensor> rows;
        for (int64_t b = 0; b < x.size(0); ++b) {
            const PathPoint p = native->at(time[b].item<double>());
            const torch::Tensor row = x.narrow(0, b, 1);
            rows.push_back(dataToPrediction(Parameterization::Velocity, exact->denoise(row, p.alpha, p.sigma), row, p));
        }
        return torch::cat(rows, 0);
    };
    NetworkDenoiser network("net", forward, {2}, std::move(linear), Parameterization::Velocity, TimeInput::T);
    const auto x = torch::randn({6, 2}, torch::kFloat64);
    const PathPoint onLinear = makePath("linear")->at(0.4), onVp = makePath("vp")->at(0.7);
    std::vector<PathPoint> points(3, onLinear);
    points.insert(points.end(), 3, onVp);
    const auto together = network.predictRows(x, points);
    QVERIFY(together.velocity.defined());
    const auto first = network.predict(x.narrow(0, 0, 3), onLinear);
    const auto second = network.predict(x.narrow(0, 3, 3), onVp);
    QVERIFY(first.velocity.defined());
    QVERIFY(!second.velocity.defined());
    QVERIFY(maxAbsDiff(together.data.narrow(0, 0, 3), first.data) < 1e-12);
    QVERIFY(maxAbsDiff(together.data.narrow(0, 3, 3), second.data) < 1e-12);
    QVERIFY(maxAbsDiff(together.velocity.narrow(0, 0, 3), first.velocity) < 1e-12);
    QVERIFY(maxAbsDiff(together.velocity.narrow(0, 3, 3), velocityFromData(second.data, x.narrow(0, 3, 3), onVp)) < 1e-9);
    // All rows off the native path: no velocity, as from predict.
    QVERIFY(!network.predictRows(x, std::vector<PathPoint>(6, onVp)).velocity.defined());
}

void TestModels::retimingClampsAndSaysSo() {
    auto exact = GaussianMixture::named("8gaussians");
    // An epsilon network on vp cannot be asked about pure noise (alpha = 0 on the linear path at t = 0).
    NetworkDenoiser network(
        "net", [&](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&) { return torch::zeros_like(x); }, {2}, makePath("vp"),
        Parameterization::Epsilon, TimeInput::T);
    const auto out = network.denoise(torch::randn({2, 2}, torch::kFloat64), 0.0, 1.0);
    QVERIFY(torch::isfinite(out).all().item<bool>());
    const auto notes = network.takeNotes();
    QCOMPARE(int(notes.size()), 1);
    QVERIFY(QString::fromStdString(notes[0]).contains("clamped"));
    QVERIFY(network.takeNotes().empty());
}

void TestModels::vPredictionNeedsVpNativePath() {
    QVERIFY_THROWS_EXCEPTION(
        InvalidRequestError,
        NetworkDenoiser("net", [](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&) { return x; }, {2}, makePath("linear"),
                        Parameterization::V, TimeInput::T));
}

void TestModels::unknownMixtureListsNames() {
    try {
        GaussianMixture::named("9gaussians");
        QFAIL("no exception");
    } catch (const UnknownNameError& error) {
        QVERIFY(QString(error.what()).contains("gmm:8gaussians"));
        QVERIFY(QString(error.what()).contains("gmm:rings"));
    }
}

void TestModels::fashionMnistSpecForms() {
    const auto parsed = [](const char* spec) { return parseModelSpec(spec); };
    QCOMPARE(parsed("fashion-mnist").limit, int64_t(0));
    QVERIFY(!parsed("fashion-mnist").bfloat16);
    QCOMPARE(parsed("fashion-mnist:1000").limit, int64_t(1000));
    QVERIFY(parsed("fashion-mnist:bf16").bfloat16);
    QCOMPARE(parsed("fashion-mnist:bf16").limit, int64_t(0));
    QVERIFY(parsed("fashion-mnist:1000:bf16").bfloat16);
    QCOMPARE(parsed("fashion-mnist:1000:bf16").limit, int64_t(1000));
    for (const char* refused : {"fashion-mnist:", "fashion-mnist::bf16", "fashion-mnist:bf16:5", "fashion-mnist:0:bf16",
                                "fashion-mnist:bf16:bf16", "fashion-mnist:12x", "fashion-mnist:-3"}) {
        try {
            parseModelSpec(refused);
            QFAIL(qPrintable(QString("accepted '%1'").arg(refused)));
        } catch (const InvalidRequestError& error) {
            QVERIFY2(QString(error.what()).contains("fashion-mnist:1000:bf16"), error.what());
        }
    }
}

QTEST_GUILESS_MAIN(TestModels)
#include "tst_models.moc"
