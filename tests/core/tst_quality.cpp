// The offline quality measure: the Frechet distance against closed forms (diagonal, 2 x 2 and
// rotated covariances), the feature classifier (learns, round-trips exactly, refuses foreign
// files) and the shipped classifier telling real images from noise.
#include <cmath>
#include <filesystem>

#include <QtTest/QtTest>

#include <torch/torch.h>

#include "core/io/SafeTensors.h"
#include "core/models/Datasets.h"
#include "core/train/Quality.h"
#include "tests/TestSupport.h"

using namespace flowscope::core;

namespace {

GaussianStatistics gaussian(const torch::Tensor& mean, const torch::Tensor& covariance) {
    return {mean.to(torch::kFloat64), covariance.to(torch::kFloat64), 1000};
}

torch::Tensor matrix2(double a, double b, double c, double d) {
    return torch::tensor({a, b, c, d}, torch::kFloat64).reshape({2, 2});
}

}  // namespace

class TestQuality : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void identicalStatisticsAreAtDistanceZero() {
        at::Generator generator = at::detail::createCPUGenerator(3);
        const torch::Tensor a = torch::randn({6, 6}, generator, torch::kFloat64);
        const torch::Tensor covariance = a.matmul(a.transpose(0, 1)) + torch::eye(6, torch::kFloat64);
        const auto statistics = gaussian(torch::randn({6}, generator, torch::kFloat64), covariance);
        QVERIFY(frechetDistance(statistics, statistics) < 1e-9);
    }

    void diagonalCovariancesMatchTheClosedForm() {
        // Commuting covariances: |m1 - m2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
        const torch::Tensor a = torch::tensor({1.0, 4.0, 0.25, 9.0}, torch::kFloat64);
        const torch::Tensor b = torch::tensor({4.0, 1.0, 0.25, 0.0}, torch::kFloat64);
        const torch::Tensor m1 = torch::tensor({0.0, 1.0, 2.0, 3.0}, torch::kFloat64);
        const torch::Tensor m2 = torch::tensor({1.0, 1.0, 0.0, 3.0}, torch::kFloat64);
        const double expected = 1.0 + 4.0 + (1 - 2) * (1 - 2) + (2 - 1) * (2 - 1) + 0.0 + 9.0;
        QCOMPARE_LE(std::abs(frechetDistance(gaussian(m1, torch::diag(a)), gaussian(m2, torch::diag(b))) - expected),
                    1e-10);
        // Isotropic in D dimensions: D (1 - s)^2.
        const double s = 0.3;
        const int64_t d = 17;
        const auto f64 = torch::kFloat64;
        const double isotropic = frechetDistance(gaussian(torch::zeros({d}, f64), torch::eye(d, f64)),
                                                 gaussian(torch::zeros({d}, f64), s * s * torch::eye(d, f64)));
        QCOMPARE_LE(std::abs(isotropic - d * (1 - s) * (1 - s)), 1e-10);
    }

    void nonCommutingTwoByTwoMatchesTheClosedForm() {
        // For 2 x 2 matrices tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)), and C1^1/2 C2 C1^1/2 has the
        // eigenvalues of C1 C2, so tr sqrt = sqrt(tr(C1 C2) + 2 sqrt(det C1 det C2)).
        const torch::Tensor c1 = matrix2(2.0, 0.7, 0.7, 1.0);
        const torch::Tensor c2 = matrix2(0.5, -0.3, -0.3, 3.0);
        const double traceRoot =
            std::sqrt(c1.matmul(c2).trace().item<double>() +
                      2.0 * std::sqrt(torch::det(c1).item<double>() * torch::det(c2).item<double>()));
        const double expected = 0.5 * 0.5 + c1.trace().item<double>() + c2.trace().item<double>() - 2.0 * traceRoot;
        const double measured = frechetDistance(gaussian(torch::tensor({0.5, 0.0}, torch::kFloat64), c1),
                                                gaussian(torch::zeros({2}, torch::kFloat64), c2));
        QCOMPARE_LE(std::abs(measured - expected), 1e-12);
        // Symmetric in its arguments.
        const double swapped = frechetDistance(gaussian(torch::zeros({2}, torch::kFloat64), c2),
                                               gaussian(torch::tensor({0.5, 0.0}, torch::kFloat64), c1));
        QCOMPARE_LE(std::abs(measured - swapped), 1e-12);
    }

    void aRotationOfBothChangesNothing() {
        at::Generator generator = at::detail::createCPUGenerator(11);
        const torch::Tensor a = torch::randn({8, 8}, generator, torch::kFloat64);
        const torch::Tensor b = torch::randn({8, 8}, generator, torch::kFloat64);
        const torch::Tensor c1 = a.matmul(a.transpose(0, 1));
        const torch::Tensor c2 = b.matmul(b.transpose(0, 1)) + 0.1 * torch::eye(8, torch::kFloat64);
        const torch::Tensor m1 = torch::randn({8}, generator, torch::kFloat64);
        const torch::Tensor m2 = torch::randn({8}, generator, torch::kFloat64);
        const torch::Tensor q = std::get<0>(torch::linalg::qr(torch::randn({8, 8}, generator, torch::kFloat64)));
        const double plain = frechetDistance(gaussian(m1, c1), gaussian(m2, c2));
        const double rotated = frechetDistance(gaussian(q.matmul(m1), q.matmul(c1).matmul(q.transpose(0, 1))),
                                               gaussian(q.matmul(m2), q.matmul(c2).matmul(q.transpose(0, 1))));
        QVERIFY(plain > 1.0);
        QCOMPARE_LE(std::abs(plain - rotated), 1e-9 * plain);
    }

    void statisticsAreTheUnbiasedMoments() {
        const torch::Tensor samples = torch::tensor({1.0, 2.0, 3.0, 6.0, 5.0, 10.0}, torch::kFloat32).reshape({3, 2});
        const GaussianStatistics statistics = gaussianStatistics(samples);
        QCOMPARE(statistics.count, int64_t{3});
        QVERIFY(torch::allclose(statistics.mean, torch::tensor({3.0, 6.0}, torch::kFloat64)));
        // Column 0: 1, 3, 5 (variance 4); column 1: 2, 6, 10 (variance 16); covariance 8.
        QVERIFY(torch::allclose(statistics.covariance, matrix2(4.0, 8.0, 8.0, 16.0)));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, gaussianStatistics(torch::zeros({1, 4})));
    }

    void theClassifierLearnsAndRoundTripsExactly() {
        const torch::Tensor images = loadFashionMnist(true, 3000);
        const torch::Tensor labels = loadFashionMnistLabels(true, 3000);
        QCOMPARE(labels.size(0), int64_t{3000});
        QCOMPARE(labels.max().item<int64_t>(), int64_t{9});
        ClassifierSettings settings;
        settings.epochs = 1;
        settings.batch = 64;
        settings.seed = 4;
        auto classifier = trainFeatureClassifier(images, labels, settings);
        const torch::Tensor test = loadFashionMnist(false, 1000);
        const double accuracy = classifierAccuracy(*classifier, test, loadFashionMnistLabels(false, 1000));
        QVERIFY2(accuracy > 0.55, qPrintable(QString("accuracy %1 (chance 0.1)").arg(accuracy)));

        QTemporaryDir dir;
        const std::string path = dir.filePath("classifier.safetensors").toStdString();
        saveFeatureClassifier(*classifier, path, accuracy);
        double stored = 0.0;
        auto loaded = loadFeatureClassifier(path, &stored);
        QCOMPARE_LE(std::abs(stored - accuracy), 1e-5);
        torch::NoGradGuard noGrad;
        QVERIFY(torch::equal(classifier->features(test.narrow(0, 0, 50)), loaded->features(test.narrow(0, 0, 50))));
        // The same seed trains the same classifier.
        auto again = trainFeatureClassifier(images.narrow(0, 0, 256), labels.narrow(0, 0, 256), settings);
        auto twice = trainFeatureClassifier(images.narrow(0, 0, 256), labels.narrow(0, 0, 256), settings);
        QVERIFY(torch::equal(again->features(test.narrow(0, 0, 8)), twice->features(test.narrow(0, 0, 8))));
    }

    void foreignFilesAreRefusedWithTheReason() {
        QTemporaryDir dir;
        const std::string missing = dir.filePath("none.safetensors").toStdString();
        try {
            loadFeatureClassifier(missing);
            QFAIL("a missing classifier was accepted");
        } catch (const std::runtime_error& error) {
            QVERIFY(std::string(error.what()).find("flowscope-cli classifier") != std::string::npos);
        }
        const std::string other = dir.filePath("other.safetensors").toStdString();
        writeSafeTensors(other, {{"w", torch::zeros({2})}}, {{"format", "flowscope-net"}});
        try {
            loadFeatureClassifier(other);
            QFAIL("a network's weights were accepted as a classifier");
        } catch (const std::runtime_error& error) {
            QVERIFY(std::string(error.what()).find("not a FlowScope feature classifier") != std::string::npos);
        }
        const std::string wrongShape = dir.filePath("wrong.safetensors").toStdString();
        FeatureClassifier reference;
        std::vector<std::pair<std::string, torch::Tensor>> tensors;
        for (const auto& item : reference.named_parameters()) tensors.emplace_back(item.key(), item.value().detach());
        tensors.back().second = torch::zeros({3});
        writeSafeTensors(wrongShape, tensors, {{"format", "flowscope-classifier"}});
        try {
            loadFeatureClassifier(wrongShape);
            QFAIL("a tensor of the wrong shape was accepted");
        } catch (const std::runtime_error& error) {
            QVERIFY(std::string(error.what()).find("expected") != std::string::npos);
        }
    }

    void theShippedClassifierTellsImagesFromNoise() {
        const std::string path = FLOWSCOPE_SOURCE_DIR "/resources/models/fashion-classifier.safetensors";
        double accuracy = 0.0;
        auto classifier = loadFeatureClassifier(path, &accuracy);
        QVERIFY2(accuracy > 0.85, qPrintable(QString("stored test accuracy %1").arg(accuracy)));
        const torch::Tensor test = loadFashionMnist(false, 2000);
        QVERIFY(classifierAccuracy(*classifier, test, loadFashionMnistLabels(false, 2000)) > 0.85);
        const GaussianStatistics reference = featureStatistics(*classifier, test);
        const double real = frechetDistance(featureStatistics(*classifier, loadFashionMnist(true, 2000)), reference);
        at::Generator generator = at::detail::createCPUGenerator(1);
        const torch::Tensor noise = torch::randn({2000, 1, 28, 28}, generator, torch::kFloat32);
        const double fake = frechetDistance(featureStatistics(*classifier, noise), reference);
        // Blurred test images are closer than noise but clearly farther than real images.
        const torch::Tensor blurred = torch::avg_pool2d(test, 5, 1, 2);
        const double blurry = frechetDistance(featureStatistics(*classifier, blurred), reference);
        QVERIFY2(real * 10 < blurry && blurry < fake,
                 qPrintable(QString("real %1, blurred %2, noise %3").arg(real).arg(blurry).arg(fake)));
    }
};

QTEST_GUILESS_MAIN(TestQuality)
#include "tst_quality.moc"
